"""The staff API: sign-in, roles on every route, the queue order, the audit trail, idle expiry."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import PASSWORD
from test_triage import CRITERIA, routine

from bot import services, staff
from bot.store.models import Referral, StaffSession
from bot.store.unit_of_work import UnitOfWork

ROUTES = ["/api/staff/queue", "/api/staff/referrals/CMH-AAAA-BBBB", "/api/staff/audit"]


async def sign_in(client, username, code=None):
    """Sign in through the API; an admin needs ``code=staff.totp(client.admin_secret)``."""
    body = {"username": username, "password": PASSWORD, "code": code}
    return await client.post("/api/staff/login", json=body)


@pytest.mark.parametrize("path", ROUTES)
async def test_nothing_is_reachable_without_signing_in_and_errors_hold_no_data(desk, path):
    response = await desk.get(path)
    assert response.status == 401 and await response.json() == {"error": "not_signed_in"}


async def test_a_wrong_password_or_a_missing_second_factor_is_refused_alike(desk):
    bad = await desk.post("/api/staff/login", json={"username": "tom", "password": "not the password"})
    no_code = await sign_in(desk, "ada")
    for response in (bad, no_code):
        assert response.status == 401 and await response.json() == {"error": "sign_in_failed"}
    assert (await sign_in(desk, "ada", staff.totp(desk.admin_secret))).status == 200


async def test_the_triage_role_cannot_read_the_audit_trail(desk):
    await sign_in(desk, "tom")
    response = await desk.get("/api/staff/audit")
    assert response.status == 403 and await response.json() == {"error": "forbidden"}


async def test_the_queue_is_ordered_by_band_then_age_with_flags_visible(desk):
    cases = [
        ("old-routine", routine(), False),
        ("urgent", routine(recent_hospital_discharge=True), False),
        ("new-routine", routine(), False),
        ("emergency", routine(), True),
        ("same-day", routine(current_medications="I stopped my lithium"), False),
    ]
    for conversation, answers, crisis in cases:
        services.submit_referral(
            UnitOfWork(desk.url),
            services.Submission(conversation, "self", answers, crisis_flag=crisis, criteria=CRITERIA),
        )
    with UnitOfWork(desk.url) as uow:  # make the first routine one the oldest
        row = uow.session.query(Referral).filter_by(conversation_id="old-routine").one()
        row.submitted_at -= dt.timedelta(days=3)
        uow.commit()
        references = {r.conversation_id: r.reference for r in uow.session.query(Referral)}
    await sign_in(desk, "tom")
    body = await (await desk.get("/api/staff/queue")).json()
    order = [row["reference"] for row in body["referrals"]]
    expected = ["emergency", "same-day", "urgent", "old-routine", "new-routine"]
    assert order == [references[c] for c in expected]
    assert body["referrals"][0]["crisis_flag"] is True and body["referrals"][0]["band"] == "emergency"
    assert "never whether the person gets help" in body["note"]


async def test_every_view_is_in_the_audit_trail_with_who_and_when(desk):
    result = services.submit_referral(
        UnitOfWork(desk.url), services.Submission("audited", "self", routine(), criteria=CRITERIA)
    )
    await sign_in(desk, "tom")
    assert (await desk.get(f"/api/staff/referrals/{result.reference}")).status == 200
    await desk.get("/api/staff/queue")
    trail = staff.audit_trail(UnitOfWork(desk.url))
    assert [(e["who"], e["action"]) for e in trail] == [
        ("tom", "sign_in"),
        ("tom", "view_referral"),
        ("tom", "view_queue"),
    ]
    assert trail[1]["reference"] == result.reference and trail[1]["at"]


async def test_a_session_ends_after_15_minutes_idle_and_at_sign_out(desk):
    await sign_in(desk, "tom")
    assert (await desk.get("/api/staff/queue")).status == 200
    with UnitOfWork(desk.url) as uow:
        for session in uow.session.query(StaffSession):
            session.last_seen_at -= dt.timedelta(minutes=16)
        uow.commit()
    assert (await desk.get("/api/staff/queue")).status == 401
    await sign_in(desk, "tom")
    await desk.post("/api/staff/logout")
    assert (await desk.get("/api/staff/queue")).status == 401
