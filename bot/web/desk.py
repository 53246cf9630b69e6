"""The triage desk's web pages: sign in, the queue, one referral with the forms
to record a decision, first contact and a redirect's outcome, and the audit
figures with charts.

Pages are rendered on the server from :mod:`bot.web.html`, which escapes
everything, and use no script. Forms carry a token tied to the session, as
well as the SameSite=Strict cookie, so no other site can post them. Every
page needs a session; without one the browser is sent to sign in.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import math
from collections.abc import Mapping

from aiohttp import web

from bot import dataset, decisions, figures, services, staff, triage
from bot.config import ServiceConfig
from bot.store.unit_of_work import UnitOfWork
from bot.web import figures_page, pages
from bot.web.html import Markup, el
from bot.web.staff import COOKIE, TRIAGE, guard, parse_period, set_session_cookie, sign_in, uow

log = logging.getLogger(__name__)

PATHWAY_LABELS = {
    triage.ACCEPT: "Accept for assessment",
    triage.CLARIFY: "Needs clarification",
    triage.REDIRECT: "Redirect",
}
DECISION_LABELS = {"accept": "Accept", "needs_clarification": "Needs clarification", "redirect": "Redirect"}
MESSAGES = {
    "decision": "Decision recorded.",
    "first_contact": "First contact recorded.",
    "redirect_outcome": "Redirect outcome recorded.",
}
ERRORS = {
    "safety_action_required": (
        "A redirect needs the safety action you took. Say what you did so the person is safe."
    ),
    "unknown_alternative": "Choose the service you are redirecting to.",
    "band_can_only_go_up": "The band can only be raised here. Lowering it needs a clinical review.",
    "unknown_decision": "Choose a decision.",
    "unknown_band": "Choose a band from the list.",
    "time_out_of_range": "The contact time must be after the referral was sent, and not in the future.",
    "time_needs_zone": "Give the contact time as a date and time.",
    "already_recorded": "First contact is already recorded for this referral.",
    "decision_first": "Record a decision before the first contact.",
    "not_redirected": "This referral has not been redirected.",
    "unknown_outcome": "Choose an outcome.",
    "too_long": "A note can be at most 1000 characters.",
    "bad_request": "Something in the form was not right. Please try again.",
    "bad_form": "This form is out of date. Reload the page and try again.",
}


def routes(settings_key, secret_key, service_key) -> list[web.RouteDef]:
    def requires(*roles: str):
        return guard(settings_key, roles, pages.refuse_page)

    def store(request: web.Request) -> UnitOfWork:
        return uow(request, settings_key)

    def form_token(request: web.Request) -> str:
        session = request.cookies.get(COOKIE, "")
        return hmac.new(
            request.app[secret_key], b"staff-form:" + session.encode(), hashlib.sha256
        ).hexdigest()

    async def form(request: web.Request) -> Mapping[str, str] | None:
        data = await request.post()
        if not hmac.compare_digest(str(data.get("form_token", "")), form_token(request)):
            return None
        return {k: v for k, v in data.items() if isinstance(v, str)}

    async def home(request: web.Request) -> web.Response:
        return pages.see_other("/staff/queue")

    async def login_page(request: web.Request) -> web.Response:
        return pages.page("Sign in", _login_form(), status=200)

    async def login(request: web.Request) -> web.Response:
        data = await request.post()
        username, password, code = (str(data.get(k, "")) for k in ("username", "password", "code"))
        attempt = await sign_in(request, settings_key, username, password, code)
        if attempt.wait:
            count, unit = (
                (math.ceil(attempt.wait), "second")
                if attempt.wait < 60
                else (math.ceil(attempt.wait / 60), "minute")
            )
            wait = f"{count} {unit}{'s' if count != 1 else ''}"
            message = f"Too many tries. Wait {wait}, then try again."
            return pages.page("Sign in", _login_form(message), status=429)
        if attempt.unavailable:
            return pages.page("Sign in", _login_form(pages.UNAVAILABLE), status=503)
        if attempt.token is None:
            message = "That did not work. Check your username, password and the 6-digit code."
            return pages.page("Sign in", _login_form(message), status=401)
        response = pages.see_other("/staff/queue")
        set_session_cookie(request, response, attempt.token, request.app[settings_key])
        return response

    async def logout(request: web.Request) -> web.Response:
        await asyncio.to_thread(staff.end_session, store(request), request.cookies.get(COOKIE))
        response = pages.see_other("/staff/login")
        response.del_cookie(COOKIE, path="/")
        return response

    @requires(*TRIAGE)
    async def queue(request: web.Request, who: staff.SignedIn) -> web.Response:
        rows = await asyncio.to_thread(staff.queue, store(request))
        await asyncio.to_thread(staff.audit, store(request), who, "view_queue", count=len(rows))
        return pages.page(
            "Referral queue", _queue(rows), who=who, token=form_token(request), current="/staff/queue"
        )

    @requires(*TRIAGE)
    async def referral(request: web.Request, who: staff.SignedIn) -> web.Response:
        reference = request.match_info["reference"].upper()
        record = await asyncio.to_thread(services.find_referral, store(request), reference)
        if record is None:
            return pages.page(
                "Not found",
                el("p", "There is no referral with that reference."),
                who=who,
                token=form_token(request),
                status=404,
            )
        await asyncio.to_thread(staff.audit, store(request), who, "view_referral", reference)
        notice = MESSAGES.get(request.query.get("done", ""))
        problem = ERRORS.get(request.query.get("error", ""))
        body = _referral(record, request.app[service_key], form_token(request), notice, problem)
        return pages.page(f"Referral {reference}", body, who=who, token=form_token(request))

    def change(kind: str, record_change, read) -> web.RouteDef:
        @requires(*TRIAGE)
        async def handler(request: web.Request, who: staff.SignedIn) -> web.Response:
            reference = request.match_info["reference"].upper()
            back = f"/staff/referrals/{reference}"
            data = await form(request)
            if data is None:
                return pages.see_other(f"{back}?error=bad_form#record")
            try:
                values = read(data, request)
                await asyncio.to_thread(record_change, store(request), reference, who.username, **values)
            except decisions.DecisionError as err:
                if err.code == "not_found":
                    return pages.page(
                        "Not found",
                        el("p", "There is no referral with that reference."),
                        who=who,
                        token=form_token(request),
                        status=404,
                    )
                return pages.see_other(f"{back}?error={err.code}#record")
            except ValueError:
                return pages.see_other(f"{back}?error=bad_request#record")
            return pages.see_other(f"{back}?done={kind}#record")

        return web.post(f"/staff/referrals/{{reference}}/{kind.replace('_', '-')}", handler)

    def read_decision(data: Mapping[str, str], request: web.Request) -> dict:
        return {
            "decision": data.get("decision", ""),
            "band": data.get("band") or None,
            "redirect_to": data.get("redirect_to") or None,
            "safety_action": data.get("safety_action"),
            "note": data.get("note"),
            "alternatives": request.app[service_key].criteria.alternatives,
        }

    def read_contact(data: Mapping[str, str], request: web.Request) -> dict:
        when = data.get("contacted_at") or ""
        return {
            "contacted_at": (
                dt.datetime.fromisoformat(when).replace(tzinfo=dt.timezone.utc) if when else None
            ),
            "risk_band": data.get("risk_band") or None,
            "note": data.get("note"),
        }

    def read_outcome(data: Mapping[str, str], request: web.Request) -> dict:
        return {"outcome": data.get("outcome", "")}

    @requires(*TRIAGE)
    async def figures_view(request: web.Request, who: staff.SignedIn) -> web.Response:
        try:
            period = parse_period(request.query)
        except ValueError:
            period, problem = figures.Period(), "Give dates as year-month-day, with the start before the end."
        else:
            problem = None
        numbers = await asyncio.to_thread(
            figures.compute, store(request), request.app[settings_key].tracker_url, period
        )
        await asyncio.to_thread(staff.audit, store(request), who, "view_figures", **period.as_dict())
        return pages.page(
            "Audit figures",
            figures_page.render(numbers, problem),
            who=who,
            token=form_token(request),
            current="/staff/figures",
        )

    return [
        web.get("/staff", home),
        web.get("/staff/login", login_page),
        web.post("/staff/login", login),
        web.post("/staff/logout", logout),
        web.get("/staff/queue", queue),
        web.get("/staff/figures", figures_view),
        web.get("/staff/referrals/{reference}", referral),
        change("decision", decisions.record_decision, read_decision),
        change("first_contact", decisions.record_first_contact, read_contact),
        change("redirect_outcome", decisions.record_redirect_outcome, read_outcome),
    ]


def _login_form(problem: str | None = None) -> Markup:
    return el(
        "form",
        el("p", problem, role="alert", class_="problem") if problem else None,
        pages.field(
            "Username", "input", id="username", name="username", autocomplete="username", required=True
        ),
        pages.field(
            "Password",
            "input",
            id="password",
            name="password",
            type="password",
            autocomplete="current-password",
            required=True,
        ),
        pages.field(
            "6-digit code from your authenticator app",
            "input",
            id="code",
            name="code",
            inputmode="numeric",
            autocomplete="one-time-code",
            pattern="[0-9 ]*",
            maxlength="8",
            required=True,
        ),
        el("button", "Sign in", type="submit"),
        method="post",
        action="/staff/login",
    )


def _flags(row: Mapping) -> list[Markup]:
    flags = [
        ("crisis_flag", "Crisis", "crisis"),
        ("needs_clarification", "Needs clarification", "clarify"),
        ("repeat_referral", "Repeat referral", "repeat"),
    ]
    return [el("span", label, class_=f"flag flag-{css}") for key, label, css in flags if row.get(key)]


def _queue(rows: list[dict]) -> Markup:
    note = el("p", services.TRIAGE_NOTE, class_="note")
    if not rows:
        return Markup(note + el("p", "There are no referrals in the queue."))
    table = pages.table(
        f"{len(rows)} referrals, most urgent first, then oldest first",
        ("Reference", "Band", "Sent", "Referred by", "Flags", "Suggested pathway", "Status"),
        [
            (
                el("a", r["reference"], href=f"/staff/referrals/{r['reference']}"),
                pages.band(r["band"]),
                pages.when(r["submitted_at"]),
                r["referrer_type"],
                _flags(r) or "None",
                PATHWAY_LABELS.get(r["pathway"] or "", r["pathway"] or ""),
                r["status"].replace("_", " "),
            )
            for r in rows
        ],
        class_="queue",
    )
    return Markup(note + table + el("p", el("a", "Download the queue as CSV", href="/api/staff/queue.csv")))


def _referral(
    record: Mapping, config: ServiceConfig, token: str, notice: str | None, problem: str | None
) -> Markup:
    reference = record["reference"]
    alternatives = config.criteria.alternatives
    suggestion = el(
        "section",
        el("h2", "Triage suggestion"),
        el("p", services.TRIAGE_NOTE, class_="note"),
        el(
            "dl",
            [
                el("dt", "Band"),
                el("dd", pages.band(record["urgency_band"])),
                el("dt", "Suggested pathway"),
                el("dd", PATHWAY_LABELS.get(record["pathway"] or "", record["pathway"] or "None")),
                el("dt", "Status"),
                el("dd", record["status"].replace("_", " ")),
                el("dt", "Flags"),
                el("dd", _flags(record) or "None"),
                el("dt", "Sent"),
                el("dd", pages.when(record["submitted_at"])),
                el("dt", "Criteria version"),
                el("dd", record["criteria_version"] or "None"),
                *(
                    [
                        el("dt", "Suggested service"),
                        el(
                            "dd",
                            alternatives[record["redirect_to"]].name
                            if record["redirect_to"] in alternatives
                            else record["redirect_to"],
                        ),
                    ]
                    if record["redirect_to"]
                    else []
                ),
            ],
        ),
        el("h3", "Reasons"),
        el("ul", [el("li", reason) for reason in record["triage_reasons"]])
        if record["triage_reasons"]
        else el("p", "No rule fired: the routine band."),
    )
    status = []
    if notice:
        status.append(el("p", notice, role="status", class_="notice"))
    if problem:
        status.append(el("p", problem, role="alert", class_="problem"))
    forms = el(
        "section",
        el("h2", "Record", id="record"),
        status,
        _decision_form(reference, record, alternatives, token),
        _contact_form(reference, token),
        _outcome_form(reference, token) if record["status"] == "redirected" else None,
    )
    return Markup(
        el(
            "p",
            el("a", "Back to the queue", href="/staff/queue"),
            " · ",
            el("a", "Download as FHIR (JSON)", href=f"/api/staff/referrals/{reference}/fhir"),
        )
        + suggestion
        + forms
        + _collected(record)
        + _history(record["events"])
    )


def _choices(name: str, options: Mapping[str, str], legend: str) -> Markup:
    return el(
        "fieldset",
        el("legend", legend),
        [
            el(
                "p",
                el(
                    "input",
                    type="radio",
                    name=name,
                    value=value,
                    id=f"{name}-{value}",
                    required=True,
                ),
                el("label", label, for_=f"{name}-{value}"),
                class_="choice",
            )
            for value, label in options.items()
        ],
    )


def _select(name: str, label: str, options: Mapping[str, str], empty: str) -> Markup:
    return pages.field(
        label,
        "select",
        el("option", empty, value=""),
        [el("option", text, value=v) for v, text in options.items()],
        id=name,
        name=name,
    )


def _decision_form(reference: str, record: Mapping, alternatives: Mapping, token: str) -> Markup:
    raisable = {
        b: pages.BAND_LABELS[b] for b in triage.BANDS if decisions.more_urgent(b, record["urgency_band"])
    }
    return pages.form(
        "Decision",
        f"/staff/referrals/{reference}/decision",
        token,
        _choices("decision", DECISION_LABELS, "What is your decision?"),
        _select("band", "Raise the band (optional)", raisable, "Keep the current band") if raisable else None,
        _select(
            "redirect_to",
            "If you redirect: which service?",
            {k: a.name for k, a in alternatives.items()},
            "The suggested service",
        ),
        pages.field(
            "Safety action taken (needed for a redirect)",
            "textarea",
            id="safety_action",
            name="safety_action",
            rows="3",
            maxlength="1000",
        ),
        pages.field(
            "Note (optional)", "textarea", id="decision-note", name="note", rows="2", maxlength="1000"
        ),
        button="Record the decision",
    )


def _contact_form(reference: str, token: str) -> Markup:
    return pages.form(
        "First contact",
        f"/staff/referrals/{reference}/first-contact",
        token,
        pages.field(
            "When the person was first reached (UTC; leave empty for now)",
            "input",
            id="contacted_at",
            name="contacted_at",
            type="datetime-local",
        ),
        _select(
            "risk_band",
            "Risk after the contact: raise the band to (optional)",
            pages.BAND_LABELS,
            "No change",
        ),
        pages.field(
            "Note (optional)", "textarea", id="contact-note", name="note", rows="2", maxlength="1000"
        ),
        button="Record first contact",
    )


def _outcome_form(reference: str, token: str) -> Markup:
    return pages.form(
        "Redirect outcome",
        f"/staff/referrals/{reference}/redirect-outcome",
        token,
        _choices("outcome", pages.OUTCOME_LABELS, "What happened after the redirect?"),
        button="Record the outcome",
    )


def _collected(record: Mapping) -> Markup:
    fields = dataset.load()
    referrer = record.get("referrer") or {}
    sections: dict[str, list[Markup]] = {}
    for spec in fields.fields:
        value = referrer.get(spec.name) if spec.section == "referrer" else record.get(spec.name)
        if value is None:
            continue
        sections.setdefault(spec.section, []).extend(
            [el("dt", spec.label or spec.name), el("dd", pages.answer(value))]
        )
    not_given = [
        (label, record.get(key) or [])
        for key, label in (
            ("declined_fields", "Declined"),
            ("skipped_fields", "Skipped"),
            ("unknown_fields", "Not known"),
            ("missing_fields", "Missing minimum information"),
        )
    ]
    measures = [
        (label, record.get(f"{m}_score"), record.get(f"{m}_severity"))
        for m, label in (("phq9", "PHQ-9"), ("gad7", "GAD-7"))
    ]
    return el(
        "section",
        el("h2", "Everything collected"),
        el("p", f"Referred by: {record['referrer_type']}. Channel: {record['channel']}."),
        [
            Markup(el("h3", section.replace("_", " ").capitalize()) + el("dl", items))
            for section, items in sections.items()
        ],
        el("h3", "Standard measures"),
        el(
            "ul",
            [
                el("li", f"{label}: {score} ({severity})" if score is not None else f"{label}: not done")
                for label, score, severity in measures
            ],
        ),
        el("h3", "Not given"),
        el(
            "dl",
            [
                Markup(el("dt", label) + el("dd", ", ".join(pages.label(n) for n in names) or "None"))
                for label, names in not_given
            ],
        ),
    )


def _history(events: list[Mapping]) -> Markup:
    def detail(event: Mapping) -> str:
        shown = {k: v for k, v in event["detail"].items() if k not in ("reasons", "reasons_text", "rules")}
        return "; ".join(f"{k.replace('_', ' ')}: {pages.answer(v)}" for k, v in shown.items())

    return el(
        "section",
        el("h2", "History"),
        pages.table(
            "What happened to this referral, oldest first",
            ("When", "What", "Details"),
            [(pages.when(e["at"]), e["kind"].replace("_", " "), detail(e)) for e in events],
            row_headers=False,
        ),
    )
