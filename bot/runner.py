"""Start and supervise the three processes: Rasa, the action server, the web service.

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


def process_env(settings: Settings) -> dict[str, str]:
    """Environment every child shares: endpoints.yml reads these.

    The shared tokens and the encryption key are settled here, once, before
    any child starts, so no two children generate different ones."""
    settings.encryption_keys()
    return {
        "ACTION_ENDPOINT_URL": f"http://127.0.0.1:{settings.action_port}/webhook",
        "ACTION_SERVER_TOKEN": settings.action_token(),
        "GATEWAY_TOKEN": settings.gateway_token(),
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
        "PYTHONUNBUFFERED": "1",
    }


def children(settings: Settings, model: Path) -> list[Child]:
    python = sys.executable
    return [
        Child(
            "rasa",
            [
                python,
                "-m",
                "bot.rasa_ext",
                "run",
                "--model",
                str(model),
                "--endpoints",
                "endpoints.yml",
                "--credentials",
                "credentials.yml",
                "--interface",
                "127.0.0.1",
                "--port",
                str(settings.rasa_port),
            ],
            f"http://127.0.0.1:{settings.rasa_port}/webhooks/gateway/",
        ),
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
    def __init__(self, settings: Settings, model: Path, out=sys.stdout):
        self.settings = settings
        self.children = children(settings, model)
        self.out = out
        self.stopping = False

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def start(self) -> None:
        env = {**os.environ, **process_env(self.settings)}
        logs = self.settings.var_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        for child in self.children:
            log_file = open(logs / f"{child.name}.log", "ab")  # noqa: SIM115 - lives with the child
            child.process = subprocess.Popen(
                child.argv,
                cwd=PROJECT_ROOT,
                env={**env, **child.env},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
            log_file.close()
            self.say(f"started {child.name} (pid {child.process.pid}), log: {logs / child.name}.log")

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
        for child in self.children:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for child in self.children:
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
