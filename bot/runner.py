"""Start and supervise the processes: Rasa, the action server, the web service.

With ``RASA_INSTANCES`` above 1 (the production profile) there are several
Rasa servers, each on its own port, and a small proxy (bot/proxy.py) on
``RASA_PORT`` that shares the turns among them.

Each child runs in its own process group and is told to die with the runner
(PR_SET_PDEATHSIG), so Ctrl-C, a kill or a crash of the runner leaves no
orphans. If one child stops, the runner says which and stops the others.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from bot.config import PROJECT_ROOT, Settings

READY_TIMEOUT = 180.0
STOP_GRACE = 10.0


@dataclass
class Child:
    name: str
    argv: list[str]
    health_url: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None


def process_env(settings: Settings, env: dict[str, str] | None = None) -> dict[str, str]:
    """Environment every child shares: endpoints.yml reads these.

    The shared tokens and the encryption key are settled here, once, before
    any child starts, so no two children generate different ones."""
    env = os.environ if env is None else env
    settings.encryption_keys(env)
    redis = urllib.parse.urlsplit(settings.redis_url)
    return {
        "ACTION_ENDPOINT_URL": f"http://127.0.0.1:{settings.action_port}/webhook",
        "ACTION_SERVER_TOKEN": settings.action_token(env),
        "GATEWAY_TOKEN": settings.gateway_token(env),
        "TRACKER_DB": str(settings.tracker_db),
        "TRACKER_URL": settings.tracker_url,
        "DATABASE_URL": settings.database_url,
        "REFERRAL_VAR_DIR": str(settings.var_dir),
        "RASA_URL": settings.rasa_url,
        "RASA_PORT": str(settings.rasa_port),
        "ACTION_PORT": str(settings.action_port),
        "WEB_PORT": str(settings.web_port),
        "RASA_TELEMETRY_ENABLED": "false",
        "SANIC_HOST": "127.0.0.1",  # rasa-sdk's action server binds here
        "RASA_INSTANCES": str(settings.rasa_instances),
        "RASA_UPSTREAMS": ",".join(f"http://127.0.0.1:{port}" for port in settings.rasa_instance_ports),
        # endpoints.production.yml: the lock store several instances share.
        "REDIS_HOST": redis.hostname or "127.0.0.1",
        "REDIS_PORT": str(redis.port or 6379),
        "REDIS_DB": redis.path.strip("/") or "0",
        "REDIS_PASSWORD": urllib.parse.unquote(redis.password or ""),
        "REDIS_KEY_PREFIX": env.get("REDIS_KEY_PREFIX", "referral"),
        "PYTHONUNBUFFERED": "1",
    }


def children(settings: Settings, model: Path) -> list[Child]:
    python = sys.executable

    def rasa(name: str, port: int) -> Child:
        argv = [python, "-m", "bot.rasa_ext", "run", "--model", str(model)]
        argv += ["--endpoints", settings.rasa_endpoints, "--credentials", "credentials.yml"]
        argv += ["--interface", "127.0.0.1", "--port", str(port)]
        return Child(name, argv, f"http://127.0.0.1:{port}/webhooks/gateway/")

    if settings.rasa_instances == 1:
        front = [rasa("rasa", settings.rasa_port)]
    else:
        front = [rasa(f"rasa-{i}", port) for i, port in enumerate(settings.rasa_instance_ports, start=1)]
        front.append(
            Child("proxy", [python, "-m", "bot.proxy"], f"http://127.0.0.1:{settings.rasa_port}/proxy/status")
        )
    return [
        *front,
        Child(
            "actions",
            [python, "-m", "actions", "--actions", "actions", "--port", str(settings.action_port)],
            f"http://127.0.0.1:{settings.action_port}/health",
        ),
        Child(
            "web",
            [python, "-m", "bot.web"],
            f"http://127.0.0.1:{settings.web_port}/healthz",
        ),
    ]


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


class Supervisor:
    def __init__(self, settings: Settings, model: Path, out=sys.stdout, env: dict[str, str] | None = None):
        self.settings = settings
        self.children = children(settings, model)
        self.out = out
        self.base_env = dict(os.environ if env is None else env)
        self.stopping = False

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def start(self) -> None:
        self.env = {**self.base_env, **process_env(self.settings, self.base_env)}
        if self.settings.rasa_instances > 1:
            # Several instances starting at once would race to create the table.
            from bot.rasa_ext.tracker_store import create_tables

            create_tables(self.settings.tracker_url)
        for child in self.children:
            self.start_child(child.name)

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def start_child(self, name: str) -> None:
        child = self.child(name)
        logs = self.settings.var_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{child.name}.log", "ab") as log_file:
            child.process = subprocess.Popen(
                child.argv,
                cwd=PROJECT_ROOT,
                env={**self.env, **child.env},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.say(f"started {child.name} (pid {child.process.pid}), log: {logs / child.name}.log")

    def stop_child(self, name: str) -> None:
        """Stop one child (and whatever it started), as a crash or an operator would."""
        self._stop([self.child(name)])

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        pending = {c.name for c in self.children}
        while pending and time.monotonic() < deadline:
            for child in self.children:
                if child.name in pending and healthy(child.health_url, 1.0):
                    pending.discard(child.name)
                    self.say(f"  {child.name}: healthy ({child.health_url})")
            if self.dead_child() is not None:
                return False
            time.sleep(0.5)
        return not pending

    def dead_child(self) -> Child | None:
        return next((c for c in self.children if c.process and c.process.poll() is not None), None)

    def stop(self) -> None:
        self.stopping = True
        self._stop(self.children)

    def _stop(self, children: list[Child]) -> None:
        for child in children:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for child in children:
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(child, signal.SIGKILL)
                child.process.wait()
            # Anything the child started itself in its group goes too.
            _signal_group(child, signal.SIGKILL)

    def status(self) -> dict[str, bool]:
        return {c.name: healthy(c.health_url) for c in self.children}


def _signal_group(child: Child, sig: int) -> None:
    if child.process is None:
        return
    try:
        os.killpg(child.process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run(settings: Settings, model: Path) -> int:
    """Start everything, print the address, and supervise until stopped."""
    supervisor = Supervisor(settings, model)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt

    # Set explicitly: a process started in the background inherits SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    supervisor.start()
    try:
        if not supervisor.wait_ready():
            dead = supervisor.dead_child()
            what = f"{dead.name} stopped (exit {dead.process.returncode})" if dead else "timed out"
            supervisor.say(f"Could not start: {what}. See the logs under {settings.var_dir / 'logs'}.")
            supervisor.stop()
            return 1
        supervisor.say(json.dumps({"ready": True, **supervisor.status()}))
        supervisor.say(f"\nWeb chat: http://127.0.0.1:{settings.web_port}/\nPress Ctrl-C to stop.")
        while True:
            dead = supervisor.dead_child()
            if dead is not None:
                supervisor.say(
                    f"{dead.name} stopped unexpectedly (exit {dead.process.returncode}); "
                    f"stopping the others. Its log: {settings.var_dir / 'logs' / dead.name}.log"
                )
                supervisor.stop()
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        supervisor.say("Stopping...")
        supervisor.stop()
        supervisor.say("Stopped.")
        return 0
