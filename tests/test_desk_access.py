"""Who may reach what: every route of the web service, found from its router.

A route added later is refused by default here until it is listed as public,
for any member of staff, or admin only, so nothing personal can become
reachable without signing in by accident. Refusals hold no personal data.
"""

from __future__ import annotations

import pytest
from test_staff_api import sign_in
from test_triage import CRITERIA, routine

from bot import services
from bot.store.unit_of_work import UnitOfWork

# Routes anyone may use: the chat (its own conversation only) and signing in.
PUBLIC = {
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/help-now"),
    ("POST", "/api/chat/start"),
    ("POST", "/api/chat/restart"),
    ("POST", "/api/chat/forget"),
    ("POST", "/api/chat/resume"),
    ("POST", "/api/chat"),
    ("POST", "/api/staff/login"),
    ("POST", "/api/staff/logout"),
    ("GET", "/staff/login"),
    ("POST", "/staff/login"),
    ("POST", "/staff/logout"),
    ("GET", "/staff"),  # only sends the browser on to the queue
}
ADMIN_ONLY = {("GET", "/api/staff/audit")}
SENTINEL = "Zebulon Quartermaine-Oyelaran"


def app_routes(app) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if path is None or route.method == "HEAD":  # static files: no data
            continue
        routes.add((route.method, path))
    return routes


@pytest.fixture
async def seeded(desk):
    result = services.submit_referral(
        UnitOfWork(desk.url),
        services.Submission("access", "self", routine(full_name=SENTINEL), criteria=CRITERIA),
    )
    desk.reference = result.reference
    return desk


def protected(desk) -> list[tuple[str, str]]:
    return sorted(app_routes(desk.server.app) - PUBLIC)


async def request(client, method: str, path: str):
    path = path.replace("{reference}", client.reference)
    if method == "POST" and path.startswith("/api/"):
        return await client.post(path, json={}, allow_redirects=False)
    if method == "POST":
        return await client.post(path, data={}, allow_redirects=False)
    return await client.get(path, allow_redirects=False)


async def test_the_route_list_is_complete(seeded):
    routes = protected(seeded)
    assert ("GET", "/staff/queue") in routes and ("GET", "/api/staff/queue") in routes
    assert ADMIN_ONLY <= set(routes)
    assert len(routes) >= 16


async def test_anonymous_requests_are_refused_everywhere_without_data(seeded):
    for method, path in protected(seeded):
        response = await request(seeded, method, path)
        body = await response.text()
        if path.startswith("/api/"):
            assert (response.status, await response.json()) == (401, {"error": "not_signed_in"}), path
        else:
            assert response.status == 303 and response.headers["Location"] == "/staff/login", path
        assert SENTINEL not in body and seeded.reference not in body, path


async def test_a_stale_or_forged_session_is_refused(seeded):
    seeded.session.cookie_jar.update_cookies({"ra_staff": "forged-token"})
    for method, path in protected(seeded):
        response = await request(seeded, method, path)
        assert response.status in (401, 303), path


async def test_the_triage_role_is_refused_admin_routes_without_data(seeded):
    await sign_in(seeded, "tom")
    for method, path in sorted(ADMIN_ONLY):
        response = await request(seeded, method, path)
        assert (response.status, await response.json()) == (403, {"error": "forbidden"})


async def test_every_staff_route_answers_a_signed_in_admin(seeded):
    await sign_in(seeded, "ada")
    for method, path in protected(seeded):
        response = await request(seeded, method, path)
        # Empty writes are refused as bad requests, never as not signed in or forbidden.
        assert response.status not in (401, 403, 500), (path, response.status)


async def test_not_found_and_bad_requests_hold_no_data(seeded):
    await sign_in(seeded, "tom")
    missing = await seeded.get("/api/staff/referrals/CMH-ZZZZ-ZZZZ")
    assert (missing.status, await missing.json()) == (404, {"error": "not_found"})
    bad = await seeded.post(f"/api/staff/referrals/{seeded.reference}/decision", json={"decision": SENTINEL})
    assert (bad.status, await bad.json()) == (400, {"error": "unknown_decision"})
    not_json = await seeded.post(f"/api/staff/referrals/{seeded.reference}/decision", data="decision=accept")
    assert (not_json.status, await not_json.json()) == (400, {"error": "bad_request"})
