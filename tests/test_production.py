"""The production profile's parts, without Rasa: the proxy, the settings, the runner's plan.

The running profile (two Rasa instances, PostgreSQL, Redis) is tested end to
end in test_e2e_production.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from conftest import free_port

from bot import crypto, proxy, runner
from bot.config import ConfigError, Settings


async def _upstream(name: str, delay: float = 0.0):
    """A stand-in Rasa instance (outside the proxy) that says who it is and what it was sent."""
    seen = []

    async def handle(request: web.Request) -> web.Response:
        seen.append({"path": request.path, "headers": dict(request.headers), "body": await request.read()})
        await asyncio.sleep(delay)
        return web.json_response([{"text": name}])

    app = web.Application()
    app.router.add_route("*", "/{path:.*}", handle)
    server = TestServer(app)
    await server.start_server()
    return server, seen


async def _proxy(urls: list[str], timeout: float = 10.0) -> TestClient:
    client = TestClient(TestServer(proxy.create_app(urls, timeout=timeout)))
    await client.start_server()
    return client


async def test_the_proxy_takes_turns_and_says_which_instance_answered():
    (one, _), (two, _) = await _upstream("one"), await _upstream("two")
    client = await _proxy([str(one.make_url("")), str(two.make_url(""))])
    try:
        answered = []
        for _ in range(4):
            response = await client.post("/webhooks/gateway/webhook", json={"sender": "s", "message": "hi"})
            answered.append(((await response.json())[0]["text"], response.headers["X-Upstream"]))
        assert answered == [("one", "rasa-1"), ("two", "rasa-2"), ("one", "rasa-1"), ("two", "rasa-2")]
        status = await (await client.get("/proxy/status")).json()
        assert [u["requests"] for u in status["upstreams"]] == [2, 2]
    finally:
        await client.close()
        await one.close()
        await two.close()


async def test_the_proxy_forwards_the_body_and_only_the_headers_rasa_needs():
    one, seen = await _upstream("one")
    client = await _proxy([str(one.make_url(""))])
    try:
        await client.post(
            "/webhooks/gateway/webhook",
            data=b'{"sender": "s", "message": "hi"}',
            headers={"Content-Type": "application/json", "X-Gateway-Token": "t", "Cookie": "ra_session=x"},
        )
        assert seen[0]["path"] == "/webhooks/gateway/webhook"
        assert seen[0]["body"] == b'{"sender": "s", "message": "hi"}'
        assert seen[0]["headers"]["X-Gateway-Token"] == "t"
        assert "Cookie" not in seen[0]["headers"]
    finally:
        await client.close()
        await one.close()


async def test_an_instance_that_is_down_is_skipped():
    one, _ = await _upstream("one")
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    client = await _proxy([down, str(one.make_url(""))])
    try:
        for _ in range(3):
            response = await client.post("/webhooks/gateway/webhook", json={})
            assert response.status == 200 and (await response.json())[0]["text"] == "one"
        status = await (await client.get("/proxy/status")).json()
        assert status["upstreams"][0]["refused"] >= 1 and status["upstreams"][1]["requests"] == 3
    finally:
        await client.close()
        await one.close()


async def test_a_slow_instance_is_answered_502_and_the_turn_is_never_sent_twice():
    (slow, seen_slow), (fast, seen_fast) = await _upstream("slow", delay=2.0), await _upstream("fast")
    client = await _proxy([str(slow.make_url("")), str(fast.make_url(""))], timeout=0.5)
    try:
        response = await client.post("/webhooks/gateway/webhook", json={})
        assert response.status == 502
        assert await response.json() == {"error": "upstream_failed"}
        assert len(seen_slow) == 1 and seen_fast == []
    finally:
        await client.close()
        await slow.close()
        await fast.close()


def test_the_proxy_needs_an_instance():
    with pytest.raises(ValueError, match="RASA_UPSTREAMS"):
        proxy.create_app([])


# ---------------------------------------------------------------- settings


def test_one_instance_listens_on_rasa_port_itself():
    settings = Settings.from_env({"RASA_PORT": "6000"})
    assert settings.rasa_instances == 1 and settings.rasa_instance_ports == ()


def test_several_instances_take_the_ports_after_rasa_port_unless_told():
    assert Settings.from_env({"RASA_PORT": "6000", "RASA_INSTANCES": "2"}).rasa_instance_ports == (6001, 6002)
    told = Settings.from_env(
        {"RASA_PORT": "6000", "RASA_INSTANCES": "2", "RASA_INSTANCE_PORTS": "7001, 7002"}
    )
    assert told.rasa_instance_ports == (7001, 7002)


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RASA_INSTANCES": "0"}, "from 1 to 8"),
        ({"RASA_INSTANCES": "9"}, "from 1 to 8"),
        ({"RASA_INSTANCES": "two"}, "must be a number"),
        ({"RASA_INSTANCES": "2", "RASA_INSTANCE_PORTS": "7001"}, "2 different ports"),
        ({"RASA_INSTANCES": "2", "RASA_INSTANCE_PORTS": "7001,7001"}, "2 different ports"),
        ({"RASA_INSTANCES": "2", "RASA_INSTANCE_PORTS": "5005,7001"}, "none of them RASA_PORT"),
        ({"RASA_INSTANCES": "2", "RASA_INSTANCE_PORTS": "7001,99999"}, "between 1 and 65535"),
    ],
)
def test_bad_instance_settings_are_named(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_production_uses_the_endpoints_file_with_the_shared_lock_store():
    assert Settings.from_env({}).rasa_endpoints == "endpoints.yml"
    assert Settings.from_env({"REFERRAL_PROFILE": "production"}).rasa_endpoints == "endpoints.production.yml"
    from bot.rasa_ext.__main__ import SHARED_LOCK_STORE, _lock_store_type

    assert _lock_store_type(["--endpoints", "endpoints.production.yml"]) == SHARED_LOCK_STORE


PRODUCTION_SECRETS = {
    "SESSION_SECRET": "s" * 32,
    "PERSON_KEY_SECRET": "p" * 32,
    "GATEWAY_TOKEN": "g" * 32,
    "ACTION_SERVER_TOKEN": "a" * 32,
    crypto.KEYS_VARIABLE: crypto.new_key(),
}


def test_production_refuses_files_and_missing_secrets(tmp_path):
    env = {"REFERRAL_PROFILE": "production", "REFERRAL_VAR_DIR": str(tmp_path)}
    problems = Settings.from_env(env).production_problems(env)
    assert any(p.startswith("DATABASE_URL must name a PostgreSQL database") for p in problems)
    assert any(p.startswith("TRACKER_URL must name a PostgreSQL database") for p in problems)
    for name in PRODUCTION_SECRETS:
        assert any(name in p for p in problems), name
    assert list(tmp_path.iterdir()) == []  # nothing was generated


def test_production_with_servers_and_secrets_has_no_problem(tmp_path):
    env = {
        "REFERRAL_PROFILE": "production",
        "REFERRAL_VAR_DIR": str(tmp_path),
        "DATABASE_URL": "postgresql://db.internal/referrals",
        "TRACKER_URL": "postgresql://db.internal/tracker",
        **PRODUCTION_SECRETS,
    }
    assert Settings.from_env(env).production_problems(env) == []
    assert Settings.from_env({}).production_problems({}) == []  # development has defaults


def test_the_runner_puts_a_proxy_in_front_of_several_instances(tmp_path):
    env = {
        "REFERRAL_VAR_DIR": str(tmp_path),
        "RASA_PORT": "6000",
        "RASA_INSTANCES": "2",
        "REFERRAL_PROFILE": "production",
        "REDIS_URL": "redis://:pa%40ss@cache.internal:6380/3",
        **PRODUCTION_SECRETS,
    }
    settings = Settings.from_env(env)
    plan = runner.children(settings, Path("model.tar.gz"))
    assert [c.name for c in plan] == ["rasa-1", "rasa-2", "proxy", "actions", "web"]
    assert plan[0].argv[plan[0].argv.index("--port") + 1] == "6001"
    assert plan[0].argv[plan[0].argv.index("--endpoints") + 1] == "endpoints.production.yml"
    assert plan[2].health_url == "http://127.0.0.1:6000/proxy/status"
    shared = runner.process_env(settings, env)
    assert shared["RASA_UPSTREAMS"] == "http://127.0.0.1:6001,http://127.0.0.1:6002"
    assert (shared["REDIS_HOST"], shared["REDIS_PORT"], shared["REDIS_DB"]) == ("cache.internal", "6380", "3")
    assert shared["REDIS_PASSWORD"] == "pa@ss" and shared["RASA_INSTANCES"] == "2"
