"""The triage desk: recording decisions, first contact and redirect outcomes
(API and pages), the staff pages themselves, and escaping on every page."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from conftest import PASSWORD, fresh_code
from test_staff_api import sign_in
from test_triage import CRITERIA, routine

from bot import dataset, services, staff
from bot.store.models import Referral
from bot.store.unit_of_work import UnitOfWork


def submit(desk, conversation: str, **answers) -> str:
    result = services.submit_referral(
        UnitOfWork(desk.url),
        services.Submission(conversation, "self", routine(**answers), criteria=CRITERIA),
    )
    return result.reference


def events(desk, reference: str) -> list[dict]:
    return services.find_referral(UnitOfWork(desk.url), reference)["events"]


async def decide(desk, reference: str, **body):
    response = await desk.post(f"/api/staff/referrals/{reference}/decision", json=body)
    return response.status, await response.json()


async def test_a_redirect_needs_the_safety_action_and_is_stored_as_an_event(desk):
    reference = submit(desk, "redirect")
    await sign_in(desk, "tom")
    assert await decide(desk, reference, decision="redirect", redirect_to="substance_use_service") == (
        400,
        {"error": "safety_action_required"},
    )
    assert await decide(desk, reference, decision="redirect", redirect_to="nowhere", safety_action="x") == (
        400,
        {"error": "unknown_alternative"},
    )
    status, body = await decide(
        desk,
        reference,
        decision="redirect",
        redirect_to="substance_use_service",
        safety_action="Gave 988 and the crisis team's number; checked they can call today.",
    )
    assert status == 200 and body["status"] == "redirected"
    [decision] = [e for e in events(desk, reference) if e["kind"] == "decision"]
    assert decision["detail"]["by"] == "tom" and decision["detail"]["redirect_to"] == "substance_use_service"
    assert "Gave 988" in decision["detail"]["safety_action"]
    assert dt.datetime.fromisoformat(decision["at"])


async def test_redirect_outcome_only_after_a_redirect(desk):
    reference = submit(desk, "outcome")
    await sign_in(desk, "tom")
    url = f"/api/staff/referrals/{reference}/redirect-outcome"
    refused = await desk.post(url, json={"outcome": "engaged"})
    assert (refused.status, await refused.json()) == (400, {"error": "not_redirected"})
    await decide(
        desk, reference, decision="redirect", redirect_to="substance_use_service", safety_action="Safety plan"
    )
    wrong = await desk.post(url, json={"outcome": "maybe"})
    assert (wrong.status, await wrong.json()) == (400, {"error": "unknown_outcome"})
    assert (await desk.post(url, json={"outcome": "engaged"})).status == 200
    assert [e["detail"]["outcome"] for e in events(desk, reference) if e["kind"] == "redirect_outcome"] == [
        "engaged"
    ]


async def test_raising_the_band_is_an_escalation_and_lowering_it_is_refused(desk):
    reference = submit(desk, "escalate")
    await sign_in(desk, "tom")
    status, body = await decide(desk, reference, decision="accept", band="urgent")
    assert status == 200 and body["band"] == "urgent"
    [escalated] = [e for e in events(desk, reference) if e["kind"] == "escalated"]
    assert escalated["detail"] == {"by": "tom", "at_step": "decision", "from": "routine", "to": "urgent"}
    assert await decide(desk, reference, decision="accept", band="routine") == (
        400,
        {"error": "band_can_only_go_up"},
    )


async def test_first_contact_after_a_decision_once_and_a_risk_upgrade(desk):
    reference = submit(desk, "contact")
    await sign_in(desk, "tom")
    url = f"/api/staff/referrals/{reference}/first-contact"
    early = await desk.post(url, json={})
    assert (early.status, await early.json()) == (400, {"error": "decision_first"})
    await decide(desk, reference, decision="accept")
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).isoformat()
    assert (await (await desk.post(url, json={"contacted_at": future})).json()) == {
        "error": "time_out_of_range"
    }
    naive = await desk.post(url, json={"contacted_at": "2026-01-01T10:00"})
    assert await naive.json() == {"error": "time_needs_zone"}
    ok = await desk.post(url, json={"risk_band": "same_day", "note": "More at risk than the form said."})
    assert ok.status == 200 and (await ok.json())["band"] == "same_day"
    kinds = [e["kind"] for e in events(desk, reference)]
    assert kinds[-3:] == ["decision", "risk_upgraded", "first_contact"]
    again = await desk.post(url, json={})
    assert await again.json() == {"error": "already_recorded"}


async def test_every_change_is_in_the_audit_trail(desk):
    reference = submit(desk, "audit-change")
    await sign_in(desk, "tom")
    await decide(desk, reference, decision="needs_clarification", note="Ask for a phone number")
    await desk.post(f"/api/staff/referrals/{reference}/first-contact", json={})
    await desk.get(f"/api/staff/referrals/{reference}/fhir")
    trail = staff.audit_trail(UnitOfWork(desk.url), reference)
    assert [(e["who"], e["action"]) for e in trail] == [
        ("tom", "record_decision"),
        ("tom", "record_first_contact"),
        ("tom", "export_fhir"),
    ]
    with UnitOfWork(desk.url) as uow:
        row = uow.session.query(Referral).filter_by(reference=reference).one()
        assert row.needs_clarification is True and row.status == "needs_clarification"


# ---------------------------------------------------------------- pages


async def sign_in_page(desk, username: str = "tom") -> None:
    code = fresh_code(desk, username)
    response = await desk.post(
        "/staff/login", data={"username": username, "password": PASSWORD, "code": code}, allow_redirects=False
    )
    assert response.status == 303 and response.headers["Location"] == "/staff/queue"


def form_token(html: str) -> str:
    return re.search(r'name="form_token" value="([^"]+)"', html).group(1)


async def test_signing_in_on_the_page_wrong_then_right(desk):
    wrong = await desk.post("/staff/login", data={"username": "tom", "password": "nope nope nope"})
    text = await wrong.text()
    assert wrong.status == 401 and "That did not work" in text and "tom" not in text
    admin_without_code = await desk.post("/staff/login", data={"username": "ada", "password": PASSWORD})
    assert admin_without_code.status == 401
    await sign_in_page(desk, "ada")
    queue = await desk.get("/staff/queue")
    assert queue.status == 200 and "Sign out (ada)" in await queue.text()
    assert queue.headers["Cache-Control"] == "no-store"


async def test_the_queue_page_lists_by_band_then_age(desk):
    routine_first = submit(desk, "page-routine")
    urgent = submit(desk, "page-urgent", recent_hospital_discharge=True)
    await sign_in_page(desk)
    text = await (await desk.get("/staff/queue")).text()
    assert text.index(urgent) < text.index(routine_first)
    assert services.TRIAGE_NOTE in text and "/api/staff/queue.csv" in text


async def test_the_referral_page_shows_everything_collected_and_records_a_decision(desk):
    answers = routine(preferred_language="Spanish", interpreter_needed=True)
    reference = services.submit_referral(
        UnitOfWork(desk.url), services.Submission("page-ref", "self", answers, criteria=CRITERIA)
    ).reference
    await sign_in_page(desk)
    page = await (await desk.get(f"/staff/referrals/{reference}")).text()
    for name, value in answers.items():
        if isinstance(value, str) and not value.startswith("__") and name in dataset.load().names:
            assert value.replace("'", "&#x27;") in page, name
    assert services.TRIAGE_NOTE in page and "Triage suggestion" in page
    token = form_token(page)
    forged = await desk.post(
        f"/staff/referrals/{reference}/decision", data={"decision": "accept"}, allow_redirects=False
    )
    assert forged.headers["Location"].endswith("error=bad_form#record")
    missing_safety = await desk.post(
        f"/staff/referrals/{reference}/decision",
        data={"form_token": token, "decision": "redirect"},
        allow_redirects=False,
    )
    assert "error=safety_action_required" in missing_safety.headers["Location"]
    shown = await (await desk.get(missing_safety.headers["Location"])).text()
    assert "A redirect needs the safety action you took" in shown
    done = await desk.post(
        f"/staff/referrals/{reference}/decision", data={"form_token": token, "decision": "accept"}
    )
    text = await done.text()
    assert "Decision recorded." in text and "accepted" in text


PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>"\'&'


@pytest.mark.parametrize("page", ["/staff/queue", "/staff/referrals/{reference}", "/staff/figures"])
async def test_html_and_script_in_every_field_are_shown_as_text(desk, page):
    answers = {
        spec.name: PAYLOAD
        for spec in dataset.load().fields
        if spec.type == "text" and spec.section != "referrer"
    }
    reference = services.submit_referral(
        UnitOfWork(desk.url),
        services.Submission("payload", "self", {**routine(), **answers}, criteria=CRITERIA),
    ).reference
    await sign_in_page(desk)
    status, body = await decide_page(desk, reference)
    assert status == 303
    text = await (await desk.get(page.replace("{reference}", reference))).text()
    assert "<script>alert" not in text and "<img src=x" not in text
    if "referrals" in page:
        assert text.count("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;") >= len(answers) + 1


async def decide_page(desk, reference: str):
    token = form_token(await (await desk.get(f"/staff/referrals/{reference}")).text())
    response = await desk.post(
        f"/staff/referrals/{reference}/decision",
        data={"form_token": token, "decision": "accept", "note": PAYLOAD},
        allow_redirects=False,
    )
    return response.status, response.headers.get("Location")
