"""Audit figures: is the criteria applied consistently, is urgent need seen
fast, are redirects safe? Computed from the referral store, the crisis events
and (for drop-off) the requested step of unsent conversations, never from
anything a person typed.

Definitions, so the numbers can be checked by hand:
- A referral is in a period when it was submitted in it (UTC dates, both ends
  included). Crisis events and unsent conversations count by their own time.
- Minimum dataset complete: no minimum field was missing at submission.
- Times are in hours. The band of a time is the band at the first decision.
  Median is the middle value (the mean of the two middle ones for an even
  count); p90 is the nearest-rank 90th percentile (the value at rank
  ceil(0.9 n) of the sorted times).
- Urgent escalation: the band was raised after submission, by a member of staff
  at the decision or by a crisis in the chat after submission.
- Risk upgrade: the band was raised at first contact.
- Equity breakdowns repeat the referral figures per referrer type, language,
  interpreter need and age band (at submission). The dataset has no other
  equality fields yet; a new one is added in ``BREAKDOWNS``.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from bot import decisions, transcripts, triage
from bot.store.models import CrisisEvent, Referral, as_utc
from bot.store.unit_of_work import UnitOfWork

NOT_GIVEN = "not given"
AGE_BANDS = ((18, "under 18"), (25, "18 to 24"), (65, "25 to 64"), (200, "65 and over"))


@dataclass(frozen=True)
class Period:
    start: dt.date | None = None
    end: dt.date | None = None

    def __post_init__(self):
        if self.start and self.end and self.start > self.end:
            raise ValueError("The start date is after the end date.")

    @property
    def since(self) -> dt.datetime | None:
        return _midnight(self.start) if self.start else None

    @property
    def until(self) -> dt.datetime | None:
        return _midnight(self.end + dt.timedelta(days=1)) if self.end else None

    def holds(self, moment: dt.datetime) -> bool:
        return (self.since is None or moment >= self.since) and (self.until is None or moment < self.until)

    def as_dict(self) -> dict:
        return {
            "from": self.start.isoformat() if self.start else None,
            "to": self.end.isoformat() if self.end else None,
        }


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class Facts:
    """What the figures need of one referral: no names, no answers in free text."""

    reference: str
    submitted_at: dt.datetime
    band: str | None  # at the first decision, else now
    minimum_complete: bool
    referrer_type: str
    language: str
    interpreter: str
    age_band: str
    decided_at: dt.datetime | None
    first_contact_at: dt.datetime | None
    escalated: bool
    risk_upgraded: bool
    redirected: bool
    redirect_outcome: str | None
    repeat: bool


BREAKDOWNS: dict[str, Callable[[Facts], str]] = {
    "referrer_type": lambda f: f.referrer_type,
    "preferred_language": lambda f: f.language,
    "interpreter_needed": lambda f: f.interpreter,
    "age_band": lambda f: f.age_band,
}


def compute(uow: UnitOfWork, tracker_url: str | None, period: Period = Period()) -> dict:
    with uow:
        query = select(Referral).options(selectinload(Referral.events)).order_by(Referral.submitted_at)
        if period.since:
            query = query.where(Referral.submitted_at >= period.since)
        if period.until:
            query = query.where(Referral.submitted_at < period.until)
        facts = [facts_of(row) for row in uow.session.scalars(query)]
        crisis = select(CrisisEvent.level, CrisisEvent.conversation_id)
        if period.since:
            crisis = crisis.where(CrisisEvent.at >= period.since)
        if period.until:
            crisis = crisis.where(CrisisEvent.at < period.until)
        crisis_rows = uow.session.execute(crisis).all()
        sent = set(uow.session.scalars(select(Referral.conversation_id)))
    return {
        "period": period.as_dict(),
        **summary(facts),
        "crisis_signposting": {
            "events": len(crisis_rows),
            "conversations": len({conversation for _, conversation in crisis_rows}),
            "by_level": dict(sorted(Counter(level for level, _ in crisis_rows).items())),
        },
        "bounce_list": [
            {"reference": f.reference, "submitted_at": f.submitted_at.isoformat(), "band": f.band}
            for f in facts
            if f.repeat
        ],
        "drop_off": drop_off(tracker_url, sent, period),
        "equity": {
            name: {group: summary(members) for group, members in _group(facts, key).items()}
            for name, key in BREAKDOWNS.items()
        },
    }


def summary(facts: list[Facts]) -> dict:
    complete = sum(f.minimum_complete for f in facts)
    redirected = [f for f in facts if f.redirected]
    outcomes = Counter(f.redirect_outcome for f in redirected if f.redirect_outcome)
    return {
        "referrals": len(facts),
        "minimum_dataset_complete": {
            "count": complete,
            "share": round(complete / len(facts), 3) if facts else None,
        },
        "by_band": {
            band: {
                "referrals": len(members),
                "submission_to_decision_hours": spread(_hours(f.submitted_at, f.decided_at) for f in members),
                "decision_to_first_contact_hours": spread(
                    _hours(f.decided_at, f.first_contact_at) for f in members
                ),
            }
            for band in triage.BANDS
            for members in [[f for f in facts if f.band == band]]
        },
        "urgent_escalations": sum(f.escalated for f in facts),
        "risk_upgrades": sum(f.risk_upgraded for f in facts),
        "redirects": {
            "redirected": len(redirected),
            **{outcome: outcomes.get(outcome, 0) for outcome in decisions.REDIRECT_OUTCOMES},
            "no_outcome_yet": sum(1 for f in redirected if not f.redirect_outcome),
        },
        "repeat_referrals": sum(f.repeat for f in facts),
    }


def spread(values: Iterable[float | None]) -> dict:
    """Count, median and nearest-rank 90th percentile of the known values."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return {"count": 0, "median": None, "p90": None}
    return {
        "count": len(known),
        "median": round(statistics.median(known), 2),
        "p90": round(known[math.ceil(0.9 * len(known)) - 1], 2),
    }


def drop_off(tracker_url: str | None, sent: set[str], period: Period) -> dict:
    """Unsent conversations by the last question asked: counts per field, no content."""
    if tracker_url is None:
        return {"conversations": 0, "by_step": {}}
    steps = Counter()
    for conversation, (step, last_active) in transcripts.last_steps(tracker_url).items():
        if conversation in sent:
            continue
        if period.holds(dt.datetime.fromtimestamp(last_active, dt.timezone.utc)):
            steps[step or "before the first question"] += 1
    return {"conversations": sum(steps.values()), "by_step": dict(steps.most_common())}


def facts_of(row: Referral) -> Facts:
    events = list(row.events)
    decision = next((e for e in events if e.kind == "decision"), None)
    contact = next((e for e in events if e.kind == "first_contact"), None)
    outcomes = [e.detail.get("outcome") for e in events if e.kind == "redirect_outcome"]
    band = decision.detail.get("band") if decision is not None else None
    return Facts(
        reference=row.reference,
        submitted_at=as_utc(row.submitted_at),
        band=band or row.urgency_band,
        minimum_complete=not row.missing_fields,
        referrer_type=row.referrer_type,
        language=_language(row.preferred_language),
        interpreter={True: "yes", False: "no"}.get(row.interpreter_needed, NOT_GIVEN),
        age_band=age_band(row.date_of_birth, row.submitted_at.date()),
        decided_at=as_utc(decision.at) if decision is not None else None,
        first_contact_at=(
            dt.datetime.fromisoformat(contact.detail["contacted_at"]) if contact is not None else None
        ),
        escalated=any(e.kind == "escalated" for e in events),
        risk_upgraded=any(e.kind == "risk_upgraded" for e in events),
        redirected=row.status == decisions.STATUS["redirect"],
        redirect_outcome=outcomes[-1] if outcomes else None,
        repeat=bool(row.repeat_referral),
    )


def age_band(born: dt.date | None, on: dt.date) -> str:
    if born is None:
        return NOT_GIVEN
    age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    return next(name for below, name in AGE_BANDS if age < below)


def _language(value: str | None) -> str:
    value = " ".join((value or "").split())
    return value.capitalize() if value else NOT_GIVEN


def _group(facts: list[Facts], key: Callable[[Facts], str]) -> dict[str, list[Facts]]:
    groups: dict[str, list[Facts]] = {}
    for f in facts:
        groups.setdefault(key(f), []).append(f)
    return dict(sorted(groups.items()))


def _hours(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds() / 3600


# ---------------------------------------------------------------- CSV


def rows(figures: dict) -> list[tuple[str, str, str, object]]:
    """The figures flattened for CSV: (breakdown, group, measure, value).

    The whole service is breakdown "all", group "all". Nested names are joined
    with dots, e.g. ``by_band.urgent.submission_to_decision_hours.p90``.
    """
    out: list[tuple[str, str, str, object]] = [("period", "all", k, v) for k, v in figures["period"].items()]
    skip = {"period", "equity", "bounce_list"}
    out += [("all", "all", m, v) for m, v in _flatten({k: v for k, v in figures.items() if k not in skip})]
    out += [("bounce_list", "all", "reference", b["reference"]) for b in figures["bounce_list"]]
    for breakdown, groups in figures["equity"].items():
        for group, numbers in groups.items():
            out += [(breakdown, group, m, v) for m, v in _flatten(numbers)]
    return out


def _flatten(value, prefix: str = "") -> list[tuple[str, object]]:
    if isinstance(value, dict):
        out = []
        for key, inner in value.items():
            out += _flatten(inner, f"{prefix}.{key}" if prefix else str(key))
        return out
    return [(prefix, value)]
