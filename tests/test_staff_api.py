"""The staff API: sign-in, roles on every route, the queue order, the audit trail, idle expiry."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import PASSWORD, fresh_code
from test_triage import CRITERIA, routine

from bot import services, staff
from bot.store.models import Referral, StaffSession
from bot.store.unit_of_work import UnitOfWork

ROUTES = ["/api/staff/queue", "/api/staff/referrals/CMH-AAAA-BBBB", "/api/staff/audit"]


async def sign_in(client, username, code=None):
    """Sign in through the API, with a fresh authenticator code unless ``code`` is given."""
    code = fresh_code(client, username) if code is None else code
    body = {"username": username, "password": PASSWORD, "code": code}
    return await client.post("/api/staff/login", json=body)


@pytest.mark.parametrize("path", ROUTES)
async def test_nothing_is_reachable_without_signing_in_and_errors_hold_no_data(desk, path):
    response = await desk.get(path)
    assert response.status == 401 and await response.json() == {"error": "not_signed_in"}


async def test_a_wrong_password_or_a_missing_second_factor_is_refused_alike(desk):
    bad = await desk.post("/api/staff/login", json={"username": "tom", "password": "not the password"})
    no_code = await sign_in(desk, "ada", code="")
    for response in (bad, no_code):
        assert response.status == 401 and await response.json() == {"error": "sign_in_failed"}
    assert (await sign_in(desk, "ada")).status == 200


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
    trail = [e for e in staff.audit_trail(UnitOfWork(desk.url)) if e["who"] == "tom"]
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


async def test_failed_sign_ins_slow_that_account_down_but_never_lock_it(desk):
    for _ in range(3):
        wrong = await desk.post("/api/staff/login", json={"username": "tom", "password": "guess"})
        assert wrong.status == 401
    right = await sign_in(desk, "TOM ")  # the same account however it is typed
    assert right.status == 429 and await right.json() == {"error": "too_many_attempts"}
    assert 0 < int(right.headers["Retry-After"]) <= 2  # a short wait, growing with each failure
    assert (await sign_in(desk, "ada")).status == 200  # others still can

    page = await desk.post("/staff/login", data={"username": "tom", "password": PASSWORD})
    assert page.status == 429 and "Too many tries. Wait" in await page.text()
    audited = [e["action"] for e in staff.audit_trail(UnitOfWork(desk.url)) if e["who"] == "tom"]
    assert audited.count("sign_in_failed") == 3


def test_the_sign_in_delay_grows_per_account_and_the_address_limit_holds():
    from bot.web.limits import SignInThrottle

    throttle = SignInThrottle(per_address=6, window=15 * 60, free=3, max_delay=60)
    waits = []
    for n in range(9):
        waits.append(throttle.wait("tom", f"10.0.0.{n}", now=100 * n))
        throttle.failed("Tom", f"10.0.0.{n}", now=100 * n)
    assert waits == [0] * 9  # after a pause each try is allowed: the owner is never locked out
    assert throttle.wait("tom", "10.0.1.1", now=800) == 60  # 9 recent failures: the longest delay
    assert [throttle.delay(n) for n in range(2, 9)] == [0, 2, 4, 8, 16, 32, 60]
    assert throttle.wait("tom", "10.0.1.1", now=860) == 0
    assert throttle.wait("tom", "10.0.1.1", now=800 + 15 * 60) == 0
    for n in range(6):
        throttle.failed(f"user{n}", "192.0.2.9", now=2000)
    assert throttle.wait("ann", "192.0.2.9", now=2001) > 0  # that address tried six accounts
    assert throttle.wait("ann", "192.0.2.10", now=2001) == 0
    throttle.succeeded("user1")
    assert throttle.wait("user1", "192.0.2.11", now=2001) == 0


async def test_behind_a_trusted_proxy_the_address_comes_from_x_forwarded_for(tmp_path):
    import dataclasses

    from aiohttp.test_utils import TestClient, TestServer

    from bot.config import Settings
    from bot.store.migrate import upgrade
    from bot.web.app import create_app

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    env = {"REFERRAL_VAR_DIR": str(tmp_path), "TRUSTED_PROXIES": "127.0.0.0/8, ::1"}
    settings = dataclasses.replace(Settings.from_env(env), database_url=url)
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        for n in range(20):  # one client behind the proxy, trying many accounts
            headers = {"X-Forwarded-For": "203.0.113.50"}
            body = {"username": f"user{n}", "password": "guess"}
            assert (await client.post("/api/staff/login", json=body, headers=headers)).status == 401
        spoofed = {"X-Forwarded-For": "198.51.100.1, 203.0.113.50"}  # a client's own header is not believed
        body = {"username": "other", "password": "guess"}
        assert (await client.post("/api/staff/login", json=body, headers=spoofed)).status == 429
        other = {"X-Forwarded-For": "198.51.100.1"}  # everyone else behind the proxy is not held up
        assert (await client.post("/api/staff/login", json=body, headers=other)).status == 401
    finally:
        await client.close()


def test_x_forwarded_for_is_ignored_unless_the_connection_is_a_trusted_proxy():
    from aiohttp.test_utils import make_mocked_request

    from bot.web.limits import client_address, parse_networks

    def address(peer, forwarded, trusted):
        request = make_mocked_request("POST", "/", headers={"X-Forwarded-For": forwarded})
        return client_address(request.clone(remote=peer), parse_networks(trusted))

    assert address("203.0.113.9", "198.51.100.1", "") == "203.0.113.9"
    assert address("203.0.113.9", "198.51.100.1", "10.0.0.0/8") == "203.0.113.9"  # not our proxy
    assert address("10.0.0.2", "198.51.100.1", "10.0.0.0/8") == "198.51.100.1"
    assert address("10.0.0.2", "1.2.3.4, 198.51.100.1, 10.0.0.7", "10.0.0.0/8") == "198.51.100.1"
    with pytest.raises(ValueError):
        parse_networks("10.0.0.0/8, not-an-address")


async def test_the_staff_cookie_is_secure_behind_a_tls_proxy(tmp_path):
    import dataclasses

    from aiohttp.test_utils import TestClient, TestServer

    from bot.config import Settings
    from bot.store.migrate import upgrade
    from bot.web.app import create_app

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    secret = staff.add_staff(UnitOfWork(url), "tom", PASSWORD, "triage")
    settings = dataclasses.replace(
        Settings.from_env({"REFERRAL_VAR_DIR": str(tmp_path)}),
        database_url=url,
        public_origin="https://referrals.example.org",
    )
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        signed_in = await sign_in(client, "tom", staff.totp(secret))
        assert signed_in.status == 200
        cookie = signed_in.headers["Set-Cookie"]
        assert "ra_staff=" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    finally:
        await client.close()
