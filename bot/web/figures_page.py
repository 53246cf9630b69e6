"""The audit figures page: headline numbers, SVG bar charts with a text
equivalent, and tables per band and per equity breakdown."""

from __future__ import annotations

from collections.abc import Mapping

from bot import decisions
from bot.web import pages
from bot.web.html import Markup, el


def render(numbers: dict, problem: str | None) -> Markup:
    period = numbers["period"]
    query = "&".join(f"{k}={v}" for k, v in period.items() if v)
    picker = el(
        "form",
        el("p", problem, role="alert", class_="problem") if problem else None,
        pages.field("From", "input", id="from", name="from", type="date", value=period["from"]),
        pages.field("To", "input", id="to", name="to", type="date", value=period["to"]),
        el("button", "Show", type="submit"),
        method="get",
        action="/staff/figures",
        class_="period",
    )
    complete = numbers["minimum_dataset_complete"]
    headline = el(
        "dl",
        [
            el("dt", "Referrals sent"),
            el("dd", numbers["referrals"]),
            el("dt", "Minimum dataset complete at first submission"),
            el("dd", f"{complete['count']} ({_percent(complete['share'])})"),
            el("dt", "Urgent escalations"),
            el("dd", numbers["urgent_escalations"]),
            el("dt", "Risk upgrades after first contact"),
            el("dd", numbers["risk_upgrades"]),
            el("dt", "Crisis signposting shown"),
            el(
                "dd",
                f"{numbers['crisis_signposting']['events']} times in "
                f"{numbers['crisis_signposting']['conversations']} conversations",
            ),
            el("dt", "Repeat referrals"),
            el("dd", numbers["repeat_referrals"]),
        ],
        class_="headline",
    )
    by_band = numbers["by_band"]
    times = pages.table(
        "Hours from sending to decision, and from decision to first contact, by band",
        (
            "Band",
            "Referrals",
            "To decision: median",
            "To decision: 90th percentile",
            "To first contact: median",
            "To first contact: 90th percentile",
        ),
        [
            (
                pages.BAND_LABELS[band],
                row["referrals"],
                _hours(row["submission_to_decision_hours"]["median"]),
                _hours(row["submission_to_decision_hours"]["p90"]),
                _hours(row["decision_to_first_contact_hours"]["median"]),
                _hours(row["decision_to_first_contact_hours"]["p90"]),
            )
            for band, row in by_band.items()
        ],
    )
    redirects = numbers["redirects"]
    outcome_rows = {
        "Redirected": redirects["redirected"],
        **{pages.OUTCOME_LABELS[k]: redirects[k] for k in decisions.REDIRECT_OUTCOMES},
        "No outcome yet": redirects["no_outcome_yet"],
    }
    drop = numbers["drop_off"]
    drop_rows = {pages.label(step): count for step, count in drop["by_step"].items()}
    return Markup(
        picker
        + el(
            "p",
            el(
                "a",
                "Download these figures as CSV",
                href="/api/staff/figures.csv" + (f"?{query}" if query else ""),
            ),
        )
        + el("section", el("h2", "Summary"), headline)
        + el(
            "section",
            el("h2", "Referrals by band"),
            _bar_chart(
                "Referrals by band",
                {pages.BAND_LABELS[b]: r["referrals"] for b, r in by_band.items()},
                "referrals",
            ),
        )
        + el(
            "section",
            el("h2", "Time to decision"),
            _bar_chart(
                "Median hours to decision by band",
                {
                    pages.BAND_LABELS[b]: r["submission_to_decision_hours"]["median"] or 0
                    for b, r in by_band.items()
                },
                "hours",
            ),
            times,
        )
        + el(
            "section",
            el("h2", "Redirect outcomes"),
            _bar_chart("Redirect outcomes", outcome_rows, "referrals"),
        )
        + el(
            "section",
            el("h2", "Where unsent conversations stopped"),
            el(
                "p", f"{drop['conversations']} conversations were not sent. The last question each was asked:"
            ),
            _bar_chart("Unsent conversations by last question", drop_rows, "conversations")
            if drop_rows
            else el("p", "None in this period."),
        )
        + el(
            "section",
            el("h2", "Repeat referrals (bounce list)"),
            el(
                "ul",
                [
                    el(
                        "li",
                        el("a", b["reference"], href=f"/staff/referrals/{b['reference']}"),
                        " – ",
                        pages.BAND_LABELS.get(b["band"] or "", "None"),
                        ", sent ",
                        pages.when(b["submitted_at"]),
                    )
                    for b in numbers["bounce_list"]
                ],
            )
            if numbers["bounce_list"]
            else el("p", "None."),
        )
        + el(
            "section",
            el("h2", "Equity"),
            [_equity(name, groups) for name, groups in numbers["equity"].items()],
        )
    )


EQUITY_TITLES = {
    "referrer_type": "By who referred",
    "preferred_language": "By preferred language",
    "interpreter_needed": "By interpreter need",
    "age_band": "By age at referral",
}


def _equity(name: str, groups: Mapping[str, dict]) -> Markup:
    def median_to_decision(numbers: dict) -> str:
        known = [
            f"{pages.BAND_LABELS[b]} {_hours(r['submission_to_decision_hours']['median'])}"
            for b, r in numbers["by_band"].items()
            if r["submission_to_decision_hours"]["median"] is not None
        ]
        return ", ".join(known) or "–"

    return pages.table(
        EQUITY_TITLES.get(name, name),
        (
            "Group",
            "Referrals",
            "Minimum dataset complete",
            "Median hours to decision",
            "Escalations",
            "Risk upgrades",
            "Redirected",
            "Repeat referrals",
        ),
        [
            (
                group,
                n["referrals"],
                _percent(n["minimum_dataset_complete"]["share"]),
                median_to_decision(n),
                n["urgent_escalations"],
                n["risk_upgrades"],
                n["redirects"]["redirected"],
                n["repeat_referrals"],
            )
            for group, n in groups.items()
        ],
        class_="equity",
    )


def _bar_chart(title: str, values: Mapping[str, float], unit: str) -> Markup:
    """A horizontal bar chart in SVG with a text equivalent (role=img and a table)."""
    width, bar, gap = 640, 22, 10
    # About 8 units a character at the chart's 14px type, so long labels are never cut off.
    label_width = min(320, 8 * max([len(label) for label in values] or [0]) + 16)
    biggest = max([v for v in values.values() if v] or [1])
    height = len(values) * (bar + gap) + gap
    bars = []
    for i, (label, value) in enumerate(values.items()):
        y = gap + i * (bar + gap)
        length = 0 if not value else max(2, round((width - label_width - 70) * value / biggest))
        bars += [
            el("text", label, x=label_width - 8, y=y + bar * 0.7, text_anchor="end", class_="chart-label"),
            el("rect", x=label_width, y=y, width=length, height=bar, class_="chart-bar"),
            el("text", _number(value), x=label_width + length + 6, y=y + bar * 0.7, class_="chart-value"),
        ]
    summary = ", ".join(f"{label}: {_number(value)} {unit}" for label, value in values.items())
    return el(
        "figure",
        el(
            "svg",
            el("title", title),
            bars,
            role="img",
            aria_label=f"{title}. {summary}",
            viewBox=f"0 0 {width} {height}",
            width="100%",
            preserveAspectRatio="xMinYMin meet",
        ),
        el("figcaption", title),
    )


def _number(value: float | None) -> str:
    if value is None:
        return "–"
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def _hours(value: float | None) -> str:
    return "–" if value is None else _number(value)


def _percent(share: float | None) -> str:
    return "–" if share is None else f"{round(share * 100)}%"
