"""Shared fixtures: the real domain, tracker factory, stores, and the running stack."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).parent))  # chat_client, catalogue

# One encryption key for the test session and every stack it starts, so the
# tests can read what the processes stored. (The development key file is
# tested in test_crypto.py.)
if not os.environ.get("REFERRAL_ENCRYPTION_KEYS"):
    from cryptography.fernet import Fernet

    os.environ["REFERRAL_ENCRYPTION_KEYS"] = Fernet.generate_key().decode()


# ---------------------------------------------------------------- domain and trackers


@pytest.fixture(scope="session")
def domain() -> dict:
    """The real domain.yml, loaded once, as rasa-sdk actions receive it."""
    return yaml.safe_load((ROOT / "domain.yml").read_text())


@pytest.fixture
def dispatcher():
    from rasa_sdk.executor import CollectingDispatcher

    return CollectingDispatcher()


@pytest.fixture
def make_tracker(domain):
    from rasa_sdk import Tracker

    def make(
        slots=None,
        text=None,
        active_loop="referral_form",
        sender_id="test-conversation",
        set_this_turn=None,
        intent="inform",
    ):
        """A tracker whose latest user message is `text`.

        `set_this_turn` are slots the user's message filled (what the form's
        validation action is asked to check).
        """
        all_slots = {name: None for name in domain["slots"]}
        all_slots.update(slots or {})
        all_slots.update(set_this_turn or {})
        if set_this_turn and "requested_slot" not in (slots or {}):
            all_slots["requested_slot"] = next(iter(set_this_turn))  # the question just answered
        events = [{"event": "user", "text": text, "parse_data": {"intent": {"name": intent}}}]
        events += [{"event": "slot", "name": k, "value": v} for k, v in (set_this_turn or {}).items()]
        return Tracker(
            sender_id=sender_id,
            slots=all_slots,
            latest_message={"text": text, "intent": {"name": intent}},
            events=events,
            paused=False,
            followup_action=None,
            active_loop={"name": active_loop} if active_loop else {},
            latest_action_name="action_listen",
        )

    return make


# ---------------------------------------------------------------- stores


def _postgres_url() -> str | None:
    url = os.environ.get("TEST_POSTGRES_URL")
    if not url and os.environ.get("REQUIRE_POSTGRES"):
        pytest.fail("REQUIRE_POSTGRES is set but TEST_POSTGRES_URL is not")
    return url


def _redis_url() -> str | None:
    url = os.environ.get("TEST_REDIS_URL")
    if not url and os.environ.get("REQUIRE_REDIS"):
        pytest.fail("REQUIRE_REDIS is set but TEST_REDIS_URL is not")
    return url


def fresh_postgres_database(name: str) -> str:
    """A new, empty database beside TEST_POSTGRES_URL's (dropped first if it is left
    from an earlier run); returns its URL. Skips when PostgreSQL is not configured."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = _postgres_url()
    if url is None:
        pytest.skip("TEST_POSTGRES_URL not set")
    drop_postgres_database(name)
    admin = create_engine(url, future=True, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(url).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(name: str) -> None:
    """Drop a database fresh_postgres_database made, closing whatever is still connected."""
    from sqlalchemy import create_engine, text

    admin = create_engine(_postgres_url(), future=True, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _reset_postgres(url: str) -> None:
    """Drop every table the models define, Alembic's version table and the
    tracker's tables (test_retention.py keeps chats in the same test database)."""
    from sqlalchemy import text

    from bot.store.db import engine_for
    from bot.store.models import Base

    engine = engine_for(url)
    Base.metadata.drop_all(engine)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))
        connection.execute(text("DROP TABLE IF EXISTS events"))
        connection.execute(text("DROP TABLE IF EXISTS conversation_tombstones"))


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    """A freshly migrated store: a SQLite file, and PostgreSQL when configured."""
    from bot.store.migrate import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'referrals.db'}"
    else:
        url = _postgres_url()
        if url is None:
            pytest.skip("TEST_POSTGRES_URL not set")
        _reset_postgres(url)
    upgrade(url)
    return url


# ---------------------------------------------------------------- the running stack


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def local_env(var_dir: Path) -> dict[str, str]:
    """The environment of a stack of the tests' own: its var/, free loopback ports,
    and no store, Rasa or instance settings inherited from outside."""
    env = {
        **os.environ,
        "REFERRAL_VAR_DIR": str(var_dir),
        # The tests answer at machine speed; the limit itself is tested in test_gateway.py.
        "CHAT_MESSAGES_PER_MINUTE": "100000",
        **{name: str(free_port()) for name in ("WEB_PORT", "RASA_PORT", "ACTION_PORT")},
    }
    for key in ("DATABASE_URL", "TRACKER_DB", "TRACKER_URL", "RASA_URL", "RASA_INSTANCES"):
        env.pop(key, None)
    # Two Rasa servers forked from one model, as `make run` has on two cores
    # (bot/rasa_ext/forks.py), the others on free ports of their own;
    # RASA_FORKS=1 (a benchmark's baseline) runs one.
    forks = int(env.get("RASA_FORKS") or 2)
    ports = [env["RASA_PORT"], *(str(free_port()) for _ in range(forks - 1))]
    env["RASA_FORK_PORTS"] = ",".join(ports) if forks > 1 else ""
    return env


def production_env(databases: tuple[str, str], redis_url: str) -> dict[str, str]:
    """What the production profile needs, on this machine's servers: two Rasa
    instances on free ports, fresh referral and tracker databases, lock keys of
    this run's own, and a new set of secrets (`referral-assistant secrets`)."""
    cli = str(Path(sys.executable).with_name("referral-assistant"))
    secrets = subprocess.run([cli, "secrets"], capture_output=True, text=True, check=True, cwd=ROOT)
    return {
        "REFERRAL_PROFILE": "production",
        "RASA_INSTANCES": "2",
        "RASA_INSTANCE_PORTS": f"{free_port()},{free_port()}",
        "RASA_FORK_PORTS": "",  # instances, each its own process
        "HAPROXY_STATS_PORT": str(free_port()),
        "DATABASE_URL": fresh_postgres_database(databases[0]),
        "TRACKER_URL": fresh_postgres_database(databases[1]),
        "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": "test" + uuid.uuid4().hex[:12],
        **dict(line.split("=", 1) for line in secrets.stdout.splitlines()),
    }


def supervised(var_dir: Path, model: Path):
    """The runner's own Supervisor over a stack of the tests' own, started and ready,
    so one process can be stopped and started while the others run. The caller stops it."""
    import io

    from bot import runner
    from bot.config import Settings
    from bot.store.migrate import upgrade

    env = local_env(var_dir)
    settings = Settings.from_env(env)
    upgrade(settings.database_url)
    supervisor = runner.Supervisor(settings, model, out=io.StringIO(), env=env)
    supervisor.start()
    if not supervisor.wait_ready():
        supervisor.stop()
        raise RuntimeError("the processes did not start:\n" + supervisor.out.getvalue())
    supervisor.web_url = f"http://127.0.0.1:{settings.web_port}"
    return supervisor


class Stack:
    """`referral-assistant run`, started exactly as `make run` starts it."""

    def __init__(self, var_dir: Path, env: dict[str, str] | None = None):
        self.var_dir = var_dir
        self.env = {**local_env(var_dir), **(env or {})}
        self.ports = {name: int(self.env[name]) for name in ("WEB_PORT", "RASA_PORT", "ACTION_PORT")}
        self.web_url = f"http://127.0.0.1:{self.ports['WEB_PORT']}"
        self.rasa_url = f"http://127.0.0.1:{self.ports['RASA_PORT']}"
        self.database_url = self.env.get("DATABASE_URL") or f"sqlite:///{var_dir / 'referrals.db'}"
        self.output: list[str] = []

    def start(self, timeout: float = 240) -> None:
        self.process = subprocess.Popen(
            [str(Path(sys.executable).with_name("referral-assistant")), "run"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                break
            self.output.append(line)
            if line.startswith("{") and json.loads(line).get("ready"):
                return
        self.stop()
        raise RuntimeError("stack did not start:\n" + "".join(self.output) + self.logs())

    def child_pids(self) -> list[int]:
        result = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        return [int(p) for p in result.stdout.split()]

    def logs(self) -> str:
        out = []
        for log in sorted((self.var_dir / "logs").glob("*.log")):
            out.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        return "\n".join(out)

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(Path(sys.executable).with_name("referral-assistant")), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.returncode


@pytest.fixture(scope="session")
def trained_model() -> Path:
    """The current model, trained once per session if its inputs changed, and the
    crisis detector's heads likewise (so the processes find them ready)."""
    from bot.crisis.semantic import ensure_heads
    from bot.training import ensure_model

    ensure_heads()
    return ensure_model()[0]


@pytest.fixture(scope="session")
def stack(trained_model, tmp_path_factory):
    running = Stack(tmp_path_factory.mktemp("stack"))
    running.start()
    yield running
    running.stop()


@pytest.fixture
def settings_env(monkeypatch, tmp_path):
    """The actions' settings read afresh from a var/ of the test's own (no DATABASE_URL)."""
    from actions import settings as action_settings

    monkeypatch.setenv("REFERRAL_VAR_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    action_settings.settings.cache_clear()
    yield
    action_settings.settings.cache_clear()


# ---------------------------------------------------------------- the triage desk

PASSWORD = "correct horse battery staple"


STAFF = {"tom": "triage", "ada": "admin"}


def fresh_code(client, username: str) -> str:
    """A code the account will accept now. Each code works once, and tests
    sign in more often than every 30 seconds, so the account's last accepted
    step is forgotten first (tests/test_staff.py tests that replays fail)."""
    from bot import staff
    from bot.store.models import StaffUser
    from bot.store.unit_of_work import UnitOfWork

    username = username.strip().lower()
    with UnitOfWork(client.url) as uow:
        uow.session.query(StaffUser).filter_by(username=username).update({"totp_last_step": None})
        uow.commit()
    return staff.totp(client.secrets[username])


@pytest.fixture
async def desk(tmp_path):
    """The web service on a fresh SQLite store, with a triage account (tom) and
    an admin (ada); ``desk.secrets`` holds their TOTP secrets (``fresh_code``
    makes a code). ``desk.url`` is the store and ``desk.settings`` the service's settings."""
    import dataclasses

    from aiohttp.test_utils import TestClient, TestServer

    from bot import staff
    from bot.config import Settings
    from bot.store.migrate import upgrade
    from bot.store.unit_of_work import UnitOfWork
    from bot.web.app import create_app

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    secrets = {name: staff.add_staff(UnitOfWork(url), name, PASSWORD, role) for name, role in STAFF.items()}
    settings = dataclasses.replace(Settings.from_env({"REFERRAL_VAR_DIR": str(tmp_path)}), database_url=url)
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    client.url, client.secrets, client.settings = url, secrets, settings
    yield client
    await client.close()
