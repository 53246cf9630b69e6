"""Rasa servers forked from one loaded model (bot/rasa_ext/forks.py): each
port has one server, a stopped one is forked again, a failing one is given
up on, and a stop leaves none behind. The servers here are real forked
processes running a stand-in for Rasa; the stack runs the real ones
(tests/conftest.py forks two, and test_e2e_faults.py stops one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings
from bot.rasa_ext import forks

ROOT = Path(__file__).resolve().parent.parent

# The stand-in server: says which port it was given, then waits to be stopped
# (or, with FAIL set, stops at once with exit 3).
PARENT = textwrap.dedent(
    """
    import os, sys, time
    from bot.rasa_ext import forks

    out = sys.argv[1]

    def start():
        port = sys.argv[sys.argv.index("--port") + 1]
        with open(out, "a") as f:
            f.write(f"{port} {os.getpid()}\\n")
        if os.environ.get("FAIL"):
            sys.exit(3)
        while True:
            time.sleep(0.1)

    servers = forks.Servers(["run", "--port", "1"], (7001, 7002), start, pauses=(0.2,), limit=3)
    sys.exit(servers.run())
    """
)


def started(out: Path) -> list[tuple[int, int]]:
    if not out.exists():
        return []
    return [tuple(map(int, line.split())) for line in out.read_text().splitlines()]


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def parent(tmp_path: Path, **env) -> tuple[subprocess.Popen, Path]:
    out = tmp_path / "started"
    process = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(out)],
        cwd=ROOT,
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    return process, out


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive: its parent has not reaped it yet.
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_each_port_gets_a_server_and_a_stopped_one_is_forked_again(tmp_path):
    process, out = parent(tmp_path)
    try:
        first = wait_for(lambda: len(started(out)) == 2 and started(out))
        assert sorted(port for port, _ in first) == [7001, 7002]
        port, pid = first[0]
        os.kill(pid, signal.SIGKILL)
        again = wait_for(lambda: len(started(out)) == 3 and started(out))[2]
        assert again[0] == port and again[1] != pid
        assert alive(first[1][1])  # the other server carried on
        assert process.poll() is None
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=15)
    assert code == 0
    assert not any(alive(pid) for _, pid in started(out))


def test_a_server_that_keeps_stopping_is_given_up_and_the_others_are_stopped(tmp_path):
    process, out = parent(tmp_path, FAIL="1")
    code = process.wait(timeout=30)
    assert code == 1
    assert "stopping the others" in process.stderr.read()
    by_port = [port for port, _ in started(out)]
    assert 3 <= by_port.count(7001) <= 4 or 3 <= by_port.count(7002) <= 4
    assert not any(alive(pid) for _, pid in started(out))


def test_the_parent_dying_takes_its_servers_with_it(tmp_path):
    process, out = parent(tmp_path)
    servers = wait_for(lambda: len(started(out)) == 2 and started(out))
    process.kill()
    process.wait()
    wait_for(lambda: not any(alive(pid) for _, pid in servers))


def test_arguments_and_ports():
    assert forks.with_port(["run", "--port", "5005", "--model", "m"], 7) == [
        "run",
        "--model",
        "m",
        "--port",
        "7",
    ]
    assert forks.with_port(["run", "--port=5005"], 7) == ["run", "--port", "7"]
    assert forks.model_path(["run", "--model", "/m.tar.gz"]) == "/m.tar.gz"
    assert forks.ports({"RASA_FORK_PORTS": "5005,5006"}) == (5005, 5006)
    assert forks.ports({"RASA_FORK_PORTS": "5005"}) == ()
    assert forks.ports({}) == ()


def test_fork_settings(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert Settings.from_env({"RASA_PORT": "6000"}).rasa_fork_ports == (6000, 6001)
    assert Settings.from_env({"RASA_PORT": "6000"}).rasa_urls == (
        "http://127.0.0.1:6000",
        "http://127.0.0.1:6001",
    )
    assert Settings.from_env({"RASA_FORK_PORTS": "7000,7100"}).rasa_fork_ports == (7000, 7100)
    assert Settings.from_env({"RASA_FORKS": "1"}).rasa_fork_ports == ()
    assert Settings.from_env({"RASA_FORKS": "1"}).rasa_urls == (Settings.from_env({}).rasa_url,)
    # One core: nothing to gain from a second server.
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert Settings.from_env({}).rasa_fork_ports == ()
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    # Deployments: one server a process, HAProxy in front of the instances.
    assert Settings.from_env({"RASA_INSTANCES": "2"}).rasa_fork_ports == ()
    production = {"REFERRAL_PROFILE": "production"}
    assert Settings.from_env(production).rasa_fork_ports == ()
    for env, message in (
        ({"RASA_FORKS": "9"}, "from 1 to 8"),
        ({"RASA_FORKS": "2", "RASA_INSTANCES": "2"}, "cannot be used with RASA_INSTANCES"),
        ({"RASA_FORKS": "3", "RASA_FORK_PORTS": "7000,7001"}, "3 different ports"),
        ({"RASA_FORK_PORTS": "7000,7000"}, "different ports"),
    ):
        with pytest.raises(ConfigError, match=message):
            Settings.from_env(env)


def test_each_conversation_has_one_server_and_both_get_some():
    from bot.web.app import rasa_url_for

    settings = Settings.from_env({"RASA_FORK_PORTS": "7000,7001"})
    chosen = [rasa_url_for(settings, f"conversation-{i}") for i in range(200)]
    assert chosen == [rasa_url_for(settings, f"conversation-{i}") for i in range(200)]
    assert 60 <= chosen.count("http://127.0.0.1:7000") <= 140
    assert set(chosen) == set(settings.rasa_urls)
