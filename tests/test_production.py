"""The production profile's parts, without Rasa: HAProxy in front of stand-in
instances, the settings, the runner's plan and its restarts.

The running profile (two Rasa instances, PostgreSQL, Redis) is tested end to
end in test_e2e_production.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web
from conftest import free_port

from bot import crypto, haproxy, runner
from bot.config import ConfigError, Settings


def _haproxy() -> str | None:
    try:
        return haproxy.executable()
    except haproxy.HAProxyMissing:
        return None


HAPROXY = _haproxy()
needs_haproxy = pytest.mark.skipif(
    HAPROXY is None and not os.environ.get("REQUIRE_HAPROXY"),
    reason="haproxy is not installed (REQUIRE_HAPROXY=1 makes this a failure)",
)


class Upstream:
    """A stand-in Rasa instance in a thread of its own: says who it is, counts
    what it was sent, and can be told to drop a turn after reading it."""

    def __init__(self, name: str):
        self.name, self.port, self.turns = name, free_port(), []
        self.drop = False
        self.loop = asyncio.new_event_loop()
        self.runner: web.AppRunner | None = None
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":  # HAProxy's health check
            return web.json_response({"status": "ok"})
        self.turns.append({"headers": dict(request.headers), "body": await request.read()})
        if self.drop:
            request.transport.close()  # the turn reached this instance, then the connection broke
            await asyncio.sleep(1)
        return web.json_response([{"text": self.name}])

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def start(self) -> Upstream:
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)
        return self

    def stop(self) -> None:
        if self.runner is not None:
            asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
            self.runner = None


@pytest.fixture
def balanced(tmp_path):
    """Real HAProxy, from deploy/haproxy/haproxy.cfg as the runner writes it,
    in front of two stand-in instances."""
    if HAPROXY is None:
        pytest.fail("haproxy is not installed: apt-get install haproxy")
    upstreams = [Upstream("rasa-1").start(), Upstream("rasa-2").start()]
    port = free_port()
    env = {
        "REFERRAL_VAR_DIR": str(tmp_path),
        "RASA_PORT": str(port),
        "RASA_INSTANCES": "2",
        "RASA_INSTANCE_PORTS": ",".join(str(u.port) for u in upstreams),
        "HAPROXY_STATS_PORT": str(free_port()),
    }
    settings = Settings.from_env(env)
    config = haproxy.write_config(settings)
    process = subprocess.Popen(
        haproxy.argv(config),
        env={**os.environ, **haproxy.environment(settings)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while not runner.healthy(url + haproxy.HEALTH_PATH, 0.5):
        assert time.monotonic() < deadline and process.poll() is None, process.stdout.read1().decode()
        time.sleep(0.1)
    yield url, upstreams, settings
    process.terminate()
    process.wait(10)
    for upstream in upstreams:
        upstream.stop()


def _turn(url: str, conversation: str) -> tuple[int, str]:
    """One turn as the web gateway sends it: (status, the instance that answered)."""
    request = urllib.request.Request(
        url + "/webhooks/gateway/webhook",
        data=json.dumps({"sender": conversation, "message": "hello"}).encode(),
        method="POST",
        headers={
            "Content-Type": "application/json",
            haproxy.ROUTING_HEADER: haproxy.routing_key(conversation),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.headers.get("X-Upstream", "")
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("X-Upstream", "")


@needs_haproxy
def test_haproxy_keeps_each_conversation_on_one_instance_and_spreads_conversations(balanced):
    url, upstreams, _ = balanced
    seen: dict[str, set[str]] = {}
    for i in range(40):
        conversation = f"conversation-{i}"
        seen[conversation] = {_turn(url, conversation)[1] for _ in range(5)}
    assert all(len(instances) == 1 for instances in seen.values()), seen
    spread = Counter(next(iter(instances)) for instances in seen.values())
    assert set(spread) == {"rasa-1", "rasa-2"} and min(spread.values()) >= 8, spread
    # The key is a hash, never the conversation id itself.
    assert all("conversation-" not in " ".join(t["headers"].values()) for u in upstreams for t in u.turns)


@needs_haproxy
def test_a_conversation_moves_only_while_its_instance_is_down(balanced):
    url, upstreams, _ = balanced
    conversation = "conversation-moves"
    status, home = _turn(url, conversation)
    assert status == 200
    home_upstream = next(u for u in upstreams if u.name == home)
    home_upstream.stop()  # connections to it are refused now
    moved = [_turn(url, conversation) for _ in range(5)]
    assert {instance for _, instance in moved} == {"rasa-1", "rasa-2"} - {home}, moved
    assert all(status == 200 for status, _ in moved)
    home_upstream.start()  # back: HAProxy's check sees it within a few seconds
    deadline = time.monotonic() + 15
    while _turn(url, conversation)[1] != home:
        assert time.monotonic() < deadline, "the conversation never went back to its own instance"
        time.sleep(0.5)


@needs_haproxy
def test_a_turn_that_reached_an_instance_is_never_sent_twice(balanced):
    url, upstreams, _ = balanced
    conversation = "conversation-dropped"
    _, home = _turn(url, conversation)
    home_upstream = next(u for u in upstreams if u.name == home)
    other = next(u for u in upstreams if u.name != home)
    home_upstream.drop = True
    before = (len(home_upstream.turns), len(other.turns))
    status, _ = _turn(url, conversation)
    assert status == 502  # the gateway says so; the person's message is not replayed
    assert (len(home_upstream.turns), len(other.turns)) == (before[0] + 1, before[1])


@needs_haproxy
def test_haproxy_health_fails_only_when_every_instance_is_down(balanced):
    url, upstreams, _ = balanced
    upstreams[0].stop()
    time.sleep(5)  # two failed checks, 2 s apart
    assert runner.healthy(url + haproxy.HEALTH_PATH)
    upstreams[1].stop()
    time.sleep(5)
    assert not runner.healthy(url + haproxy.HEALTH_PATH)


@needs_haproxy
def test_the_stats_page_is_on_loopback_only(balanced):
    _, _, settings = balanced
    text = (settings.var_dir / "haproxy" / "haproxy.cfg").read_text()
    assert 'bind "${HAPROXY_STATS_BIND}"' in text
    assert haproxy.environment(settings)["HAPROXY_STATS_BIND"].startswith("127.0.0.1:")
    page = f"http://127.0.0.1:{settings.haproxy_stats_port}/;csv"
    with urllib.request.urlopen(page, timeout=5) as response:
        rows = response.read().decode()
    assert "rasa,rasa-1," in rows and "rasa,rasa-2," in rows


def test_the_runner_writes_one_server_line_per_instance():
    three = haproxy.render(3)
    assert [line.split()[1] for line in three.splitlines() if line.strip().startswith("server ")] == [
        "rasa-1",
        "rasa-2",
        "rasa-3",
    ]
    assert three.replace("rasa-3", "").count("RASA_UPSTREAM_3") == 1
    assert haproxy.render(2) == haproxy.CONFIG.read_text()  # the committed file is the two-instance one


@needs_haproxy
def test_the_committed_config_passes_haproxy_check():
    env = {
        "HAPROXY_BIND": "127.0.0.1:5005",
        "HAPROXY_STATS_BIND": "127.0.0.1:8404",
        "RASA_UPSTREAM_1": "127.0.0.1:5006",
        "RASA_UPSTREAM_2": "127.0.0.1:5007",
        "RASA_MAXCONN": "8",
    }
    result = subprocess.run(
        [HAPROXY or "haproxy", "-c", "-f", str(haproxy.CONFIG)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout + result.stderr


def test_several_instances_without_haproxy_are_refused_with_the_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(haproxy.shutil, "which", lambda name: None)
    monkeypatch.setattr(haproxy, "Path", lambda p: Path(tmp_path / "nothing-here"))
    with pytest.raises(haproxy.HAProxyMissing, match="apt-get install haproxy"):
        haproxy.executable()


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


@needs_haproxy
def test_the_runner_puts_haproxy_in_front_of_several_instances(tmp_path):
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
    assert [c.name for c in plan] == ["rasa-1", "rasa-2", "haproxy", "actions", "web"]
    assert plan[0].argv[plan[0].argv.index("--port") + 1] == "6001"
    assert plan[0].argv[plan[0].argv.index("--endpoints") + 1] == "endpoints.production.yml"
    assert plan[2].health_url == "http://127.0.0.1:6000/haproxy/health"
    assert plan[2].argv[1:] == ["-W", "-db", "-f", str(tmp_path / "haproxy" / "haproxy.cfg")]
    shared = runner.process_env(settings, env)
    assert (shared["RASA_UPSTREAM_1"], shared["RASA_UPSTREAM_2"]) == ("127.0.0.1:6001", "127.0.0.1:6002")
    assert shared["HAPROXY_BIND"] == "127.0.0.1:6000"
    assert (shared["REDIS_HOST"], shared["REDIS_PORT"], shared["REDIS_DB"]) == ("cache.internal", "6380", "3")
    assert shared["REDIS_PASSWORD"] == "pa@ss" and shared["RASA_INSTANCES"] == "2"


# ---------------------------------------------------------------- restarts


def _supervisor(tmp_path, *programs: tuple[str, str]) -> runner.Supervisor:
    """The runner's Supervisor over small stand-in children (name, Python code)."""
    settings = Settings.from_env({"REFERRAL_VAR_DIR": str(tmp_path)})
    supervisor = runner.Supervisor(settings, Path("m"), out=io.StringIO())
    supervisor.children = [runner.Child(name, [sys.executable, "-c", code], "") for name, code in programs]
    supervisor.env = dict(os.environ)
    for child in supervisor.children:
        supervisor.start_child(child.name)
    return supervisor


def _until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_a_child_that_stops_is_started_again_alone_after_a_pause(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "RESTART_BACKOFF", (0.2, 0.4))
    flag = tmp_path / "crashed-once"
    crash_once = (
        f"import pathlib, sys, time\np = pathlib.Path({str(flag)!r})\n"
        "if not p.exists(): p.touch(); sys.exit(3)\ntime.sleep(60)"
    )
    supervisor = _supervisor(tmp_path, ("flaky", crash_once), ("steady", "import time; time.sleep(60)"))
    steady = supervisor.child("steady").process.pid
    try:
        _until(lambda: supervisor.child("flaky").process.poll() is not None)
        now = time.monotonic()
        runner.supervise_once(supervisor, now)
        said = supervisor.out.getvalue()
        assert "flaky stopped unexpectedly (exit 3); starting it again in 0.2 s" in said
        assert supervisor.child("flaky").restart_at == pytest.approx(now + 0.2)
        runner.supervise_once(supervisor, now + 0.1)
        assert supervisor.child("flaky").process.poll() == 3  # not yet: the pause first
        runner.supervise_once(supervisor, now + 0.2)
        flaky = supervisor.child("flaky").process
        time.sleep(0.5)
        runner.supervise_once(supervisor, now + 1)
        assert flaky.poll() is None  # running again
        assert supervisor.child("steady").process.pid == steady  # the other was never touched
        assert "started flaky" in supervisor.out.getvalue().split("starting it again")[-1]
    finally:
        supervisor.stop()


def test_a_child_that_keeps_stopping_is_given_up_and_the_runner_says_why(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "RESTART_BACKOFF", (0.0,))
    monkeypatch.setattr(runner, "RESTART_LIMIT", 3)
    supervisor = _supervisor(tmp_path, ("broken", "import sys; sys.exit(2)"))
    try:
        now = time.monotonic()
        with pytest.raises(runner.GaveUp):
            for step in range(200):
                _until(lambda: supervisor.child("broken").process.poll() is not None)
                runner.supervise_once(supervisor, now + step)  # every look starts it again at once
        said = supervisor.out.getvalue()
        assert said.count("starting it again") == 3
        assert "started again 3 times in 10 minutes: not again. Stopping the others." in said
    finally:
        supervisor.stop()


def test_restarts_long_ago_do_not_count_against_a_child(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "RESTART_BACKOFF", (0.0,))
    monkeypatch.setattr(runner, "RESTART_LIMIT", 2)
    supervisor = _supervisor(tmp_path, ("rare", "import sys; sys.exit(1)"))
    try:
        child = supervisor.child("rare")
        child.restarts = [0.0, 1.0]  # two restarts, more than RESTART_WINDOW ago
        _until(lambda: child.process.poll() is not None)
        runner.supervise_once(supervisor, runner.RESTART_WINDOW + 100.0)
        assert child.restart_at is not None  # started again, not given up
    finally:
        supervisor.stop()


def test_a_child_log_is_rotated_and_keeps_its_newest_lines(tmp_path):
    path = tmp_path / "web.log"
    read, write = os.pipe()
    with os.fdopen(write, "wb") as out:
        out.write(b"".join(b"line %04d\n" % i for i in range(1000)))
    runner._copy_rotating(os.fdopen(read, "rb"), path, limit=2000, backups=2)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["web.log", "web.log.1", "web.log.2"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    assert path.read_bytes().endswith(b"line 0999\n")
    newest_old = (tmp_path / "web.log.1").read_bytes().splitlines()[-1]
    first_now = path.read_bytes().splitlines()[0]
    assert int(first_now.split()[1]) == int(newest_old.split()[1]) + 1  # nothing lost at the cut


@needs_haproxy
def test_the_runner_waits_until_haproxy_sees_every_instance_up(balanced):
    _, upstreams, settings = balanced
    _until(lambda: haproxy.all_up(settings), 10)  # checks pass 2 in a row, 2 s apart
    upstreams[1].stop()
    _until(lambda: haproxy.servers_up(settings) == {"rasa-1": True, "rasa-2": False}, 10)
    assert not haproxy.all_up(settings)


def test_migrate_in_production_refuses_what_run_refuses_and_says_each_problem(tmp_path):
    """A deployed form has no runner: its migration step makes the runner's checks."""
    cli = str(Path(sys.executable).with_name("referral-assistant"))
    env = {"PATH": os.environ["PATH"], "REFERRAL_VAR_DIR": str(tmp_path), "REFERRAL_PROFILE": "production"}
    result = subprocess.run([cli, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "DATABASE_URL must name a PostgreSQL database" in result.stderr
    assert "SESSION_SECRET" in result.stderr and "GATEWAY_TOKEN" in result.stderr
    assert list(tmp_path.iterdir()) == []  # nothing was made: no SQLite file in its place
