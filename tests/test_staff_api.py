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


# ---------------------------------------------------------------- sign-in limits and cookies


async def test_five_failed_sign_ins_stop_that_username_for_a_while(desk):
    for _ in range(5):
        wrong = await desk.post("/api/staff/login", json={"username": "tom", "password": "guess"})
        assert wrong.status == 401
    right = await sign_in(desk, "TOM ")  # the same account however it is typed
    assert right.status == 429 and await right.json() == {"error": "too_many_attempts"}
    assert 0 < int(right.headers["Retry-After"]) <= 15 * 60
    assert (await sign_in(desk, "ada", staff.totp(desk.admin_secret))).status == 200  # others still can

    page = await desk.post("/staff/login", data={"username": "tom", "password": PASSWORD})
    assert page.status == 429 and "Too many tries. Wait 15 minutes" in await page.text()


def test_the_sign_in_throttle_counts_per_user_and_per_address_and_forgets_after_the_window():
    from bot.web.staff import SignInThrottle

    throttle = SignInThrottle(per_user=2, per_address=3, window=60)
    throttle.failed("tom", "10.0.0.1", now=0)
    assert throttle.wait("tom", "10.0.0.2", now=1) == 0
    throttle.failed("Tom", "10.0.0.2", now=10)
    assert throttle.wait("tom", "10.0.0.3", now=11) == 49  # until the first failure is a minute old
    assert throttle.wait("tom", "10.0.0.3", now=60) == 0
    throttle.failed("amy", "10.0.0.2", now=20)
    throttle.failed("bob", "10.0.0.2", now=21)
    assert throttle.wait("cat", "10.0.0.2", now=22) > 0  # that address tried three accounts
    assert throttle.wait("cat", "10.0.0.9", now=22) == 0
    throttle.succeeded("amy")
    throttle.failed("amy", "10.0.0.5", now=23)
    assert throttle.wait("amy", "10.0.0.6", now=24) == 0  # a success started amy's count again


async def test_the_staff_cookie_is_secure_behind_a_tls_proxy(tmp_path):
    import dataclasses

    from aiohttp.test_utils import TestClient, TestServer

    from bot.config import Settings
    from bot.store.migrate import upgrade
    from bot.web.app import create_app

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    staff.add_staff(UnitOfWork(url), "tom", PASSWORD, "triage")
    settings = dataclasses.replace(
        Settings.from_env({"REFERRAL_VAR_DIR": str(tmp_path)}),
        database_url=url,
        public_origin="https://referrals.example.org",
    )
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        signed_in = await sign_in(client, "tom")
        assert signed_in.status == 200
        cookie = signed_in.headers["Set-Cookie"]
        assert "ra_staff=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    finally:
        await client.close()
