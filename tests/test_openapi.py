"""The OpenAPI description (bot/web/openapi.yml, served at /api/openapi.json)
lists exactly the service's API routes, and answers match what it says."""

from __future__ import annotations

import re

import yaml
from test_desk_access import app_routes
from test_staff_api import sign_in
from test_triage import CRITERIA, routine

from bot import services
from bot.store.unit_of_work import UnitOfWork
from bot.web.app import OPENAPI

SPEC = yaml.safe_load(OPENAPI.read_text())
METHODS = {"get", "post", "put", "patch", "delete"}


def described() -> set[tuple[str, str]]:
    return {
        (method.upper(), path) for path, item in SPEC["paths"].items() for method in item if method in METHODS
    }


def api_routes(app) -> set[tuple[str, str]]:
    return {(m, p) for m, p in app_routes(app) if p.startswith("/api/") or p == "/healthz"}


async def test_the_description_lists_every_api_route_and_no_other(desk):
    assert described() == api_routes(desk.server.app)


async def test_it_is_served_at_a_stable_path(desk):
    response = await desk.get("/api/openapi.json")
    assert response.status == 200 and await response.json() == SPEC
    assert SPEC["openapi"].startswith("3.")


def test_every_reference_resolves():
    text = OPENAPI.read_text()
    for ref in re.findall(r'\$ref: "#/([^"]+)"', text):
        node = SPEC
        for part in ref.split("/"):
            node = node[part]


def test_every_path_parameter_is_declared():
    for path, item in SPEC["paths"].items():
        for name in re.findall(r"{(\w+)}", path):
            declared = item.get("parameters", []) + [
                p for op in item.values() if isinstance(op, dict) for p in op.get("parameters", [])
            ]
            names = [
                SPEC["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]["name"]
                if "$ref" in p
                else p["name"]
                for p in declared
            ]
            assert name in names, path


async def test_the_staff_answers_have_the_described_fields(desk):
    services.submit_referral(
        UnitOfWork(desk.url), services.Submission("openapi", "self", routine(), criteria=CRITERIA)
    )
    await sign_in(desk, "tom")
    schemas = SPEC["components"]["schemas"]
    queue = await (await desk.get("/api/staff/queue")).json()
    assert set(queue["referrals"][0]) == set(schemas["QueueItem"]["properties"])
    reference = queue["referrals"][0]["reference"]
    record = await (await desk.get(f"/api/staff/referrals/{reference}")).json()
    assert set(schemas["Referral"]["required"]) <= set(record)
    numbers = await (await desk.get("/api/staff/figures")).json()
    assert set(numbers) == set(schemas["Figures"]["required"])
    refused = await desk.get("/api/staff/referrals/NOPE")
    assert set(await refused.json()) == set(schemas["Error"]["required"])
