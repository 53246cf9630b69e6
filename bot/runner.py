"""Start and supervise the processes: Rasa, the action server, the web service.

In the development profile on two or more cores, the Rasa process loads the
model once and forks a server for each of ``RASA_FORK_PORTS``
(bot/rasa_ext/forks.py); the web gateway keeps each conversation on one.

With ``RASA_INSTANCES`` above 1 (the production profile) there are several
Rasa servers, each on its own port, and HAProxy (bot/haproxy.py) on
``RASA_PORT`` in front of them, keeping each conversation on one instance.

Each child runs in its own process group and is told to die with the runner
(PR_SET_PDEATHSIG), so Ctrl-C, a kill or a crash of the runner leaves no
orphans. If one child stops, the runner says which and starts that one
again, after a pause that doubles each time (RESTART_BACKOFF); a child that
stops RESTART_LIMIT times within RESTART_WINDOW seconds is not started
again, and the runner then stops the others and exits 1. The others go on
meanwhile: with several Rasa instances, HAProxy sends the stopped one's
conversations to the rest.

Each child's output goes to ``<var>/logs/<name>.log``, which is rotated at
LOG_BYTES (LOG_BACKUPS old files kept). Deployed forms (systemd, containers)
log to standard output instead (LOG_FORMAT=json, bot/logs.py).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bot import haproxy
from bot.config import PROJECT_ROOT, Settings

READY_TIMEOUT = 180.0
STOP_GRACE = 10.0
RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # seconds before each restart in a window
RESTART_LIMIT = 5  # restarts of one child within RESTART_WINDOW before the runner gives up
RESTART_WINDOW = 600.0
LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 3


@dataclass
class Child:
    name: str
    argv: list[str]
    health_url: str
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    ready: Callable[[], bool] | None = None  # readiness, where more than its health URL
    restarts: list[float] = field(default_factory=list)  # when it was last started again
    restart_at: float | None = None  # a restart is due at this time (monotonic)


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
        # Several servers forked from one loaded model (bot/rasa_ext/forks.py); empty: one.
        "RASA_FORK_PORTS": ",".join(map(str, settings.rasa_fork_ports)),
        **(haproxy.environment(settings) if settings.rasa_instances > 1 else {}),
        # endpoints.production.yml: the lock store several instances share.
        "REDIS_HOST": redis.hostname or "127.0.0.1",
        "REDIS_PORT": str(redis.port or 6379),
        "REDIS_DB": redis.path.strip("/") or "0",
        "REDIS_PASSWORD": urllib.parse.unquote(redis.password or ""),
        "REDIS_KEY_PREFIX": env.get("REDIS_KEY_PREFIX", "referral"),
        "PYTHONUNBUFFERED": "1",
        # One thread per process for NumPy's BLAS (the crisis detector's encoder):
        # its matrices are small, and OpenBLAS's extra threads spun on the other
        # core for about 40 ms of CPU a turn in the Rasa process, where the
        # other processes (or a second Rasa) need it; a turn took no longer.
        "OPENBLAS_NUM_THREADS": env.get("OPENBLAS_NUM_THREADS", "1"),
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1"),
    }


def children(settings: Settings, model: Path) -> list[Child]:
    python = sys.executable

    def rasa(name: str, port: int) -> Child:
        argv = [python, "-m", "bot.rasa_ext", "run", "--model", str(model)]
        argv += ["--endpoints", settings.rasa_endpoints, "--credentials", "credentials.yml"]
        argv += ["--interface", "127.0.0.1", "--port", str(port)]
        return Child(name, argv, f"http://127.0.0.1:{port}/webhooks/gateway/")

    if settings.rasa_fork_ports:
        # One process, a server forked on each port: ready when every one answers.
        urls = [f"{url}/webhooks/gateway/" for url in settings.rasa_urls]
        front = [rasa("rasa", settings.rasa_fork_ports[0])]
        front[0].health_url = urls[0]
        front[0].ready = lambda: all(healthy(url, 1.0) for url in urls)
    elif settings.rasa_instances == 1:
        front = [rasa("rasa", settings.rasa_port)]
    else:
        front = [rasa(f"rasa-{i}", port) for i, port in enumerate(settings.rasa_instance_ports, start=1)]
        config = settings.var_dir / "haproxy" / "haproxy.cfg"  # written by Supervisor.start
        front.append(
            Child(
                "haproxy",
                haproxy.argv(config),
                f"http://127.0.0.1:{settings.rasa_port}{haproxy.HEALTH_PATH}",
                ready=lambda: haproxy.all_up(settings),
            )
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


def _ready(child: Child) -> bool:
    return child.ready() if child.ready is not None else healthy(child.health_url, 1.0)


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
            haproxy.write_config(self.settings)
        for child in self.children:
            self.start_child(child.name)

    def child(self, name: str) -> Child:
        return next(c for c in self.children if c.name == name)

    def log_path(self, child: Child) -> Path:
        return self.settings.var_dir / "logs" / f"{child.name}.log"

    def start_child(self, name: str) -> None:
        child = self.child(name)
        log_path = self.log_path(child)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        child.process = subprocess.Popen(
            child.argv,
            cwd=PROJECT_ROOT,
            env={**self.env, **child.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        threading.Thread(
            target=_copy_rotating, args=(child.process.stdout, log_path), name=f"log-{name}", daemon=True
        ).start()
        self.say(f"started {child.name} (pid {child.process.pid}), log: {log_path}")

    def stop_child(self, name: str) -> None:
        """Stop one child (and whatever it started), as a crash or an operator would."""
        self._stop([self.child(name)])

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> bool:
        deadline = time.monotonic() + timeout
        pending = {c.name for c in self.children}
        while pending and time.monotonic() < deadline:
            for child in self.children:
                if child.name in pending and _ready(child):
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


def _copy_rotating(stream, path: Path, limit: int = LOG_BYTES, backups: int = LOG_BACKUPS) -> None:
    """A child's output into its log file, rotated at `limit` bytes (name.log.1 is the newest old one)."""
    out = path.open("ab")
    try:
        for line in iter(stream.readline, b""):
            if out.tell() + len(line) > limit:
                out.close()
                for i in range(backups - 1, 0, -1):
                    older = path.with_name(f"{path.name}.{i}")
                    if older.exists():
                        older.replace(path.with_name(f"{path.name}.{i + 1}"))
                path.replace(path.with_name(f"{path.name}.1"))
                out = path.open("ab")
            out.write(line)
            out.flush()
    finally:
        out.close()
        stream.close()


class GaveUp(Exception):
    """A child stopped too often to be started again."""


def supervise_once(supervisor: Supervisor, now: float) -> None:
    """One look at the children: a stopped one is started again after its
    pause, unless it stopped RESTART_LIMIT times within RESTART_WINDOW."""
    for child in supervisor.children:
        if child.restart_at is not None:
            if now >= child.restart_at:
                child.restart_at = None
                child.restarts.append(now)
                supervisor.start_child(child.name)
            continue
        if child.process is None or child.process.poll() is None:
            continue
        code = child.process.returncode
        log = supervisor.log_path(child)
        recent = [t for t in child.restarts if now - t < RESTART_WINDOW]
        child.restarts = recent
        if len(recent) >= RESTART_LIMIT:
            supervisor.say(
                f"{child.name} stopped unexpectedly (exit {code}), and it has been started again "
                f"{len(recent)} times in {RESTART_WINDOW / 60:.0f} minutes: not again. "
                f"Stopping the others. Its log: {log}"
            )
            raise GaveUp(child.name)
        pause = RESTART_BACKOFF[min(len(recent), len(RESTART_BACKOFF) - 1)]
        supervisor.say(
            f"{child.name} stopped unexpectedly (exit {code}); starting it again in {pause:g} s "
            f"(restart {len(recent) + 1} of at most {RESTART_LIMIT} in {RESTART_WINDOW / 60:.0f} minutes). "
            f"The others carry on. Its log: {log}"
        )
        _signal_group(child, signal.SIGKILL)  # whatever it started goes with it
        child.restart_at = now + pause


def run(settings: Settings, model: Path) -> int:
    """Start everything, print the address, and supervise until stopped."""
    try:
        supervisor = Supervisor(settings, model)
    except haproxy.HAProxyMissing as err:
        print(f"Could not start: {err}", flush=True)
        return 1

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
            try:
                supervise_once(supervisor, time.monotonic())
            except GaveUp:
                supervisor.stop()
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        supervisor.say("Stopping...")
        supervisor.stop()
        supervisor.say("Stopped.")
        return 0


def main(argv: list[str]) -> int:
    """`python -m bot.runner MODEL`: what `referral-assistant run` becomes once its
    checks have passed (bot/cli.py), with the settings from the same environment."""
    return run(Settings.from_env(), Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
