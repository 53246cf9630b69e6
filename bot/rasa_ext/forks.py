"""Several Rasa servers forked from one loaded model: the second core, on one host.

A Rasa server does a turn's work on one Python thread, so under load it kept
one core busy while the other was half idle (issue 18). Two Rasa processes
would each import Rasa and TensorFlow, load the crisis detector and load the
model: about 875 MB and 10 s each. With ``RASA_FORK_PORTS`` naming more
than one port, ``python -m bot.rasa_ext run`` instead does all of that once,
freezes the heap (bot/heap.py), and forks one server per port. The servers
share those pages copy-on-write; each one's own memory is what it writes
afterwards.

Each conversation stays on one server. The web gateway chooses the server
from the conversation's routing key (``Settings.rasa_urls``,
``bot.web.app.rasa_url_for``) and never another one, even while that server
is down, so Rasa's in-memory lock store still keeps one conversation's turns
in order. (Several *instances*, which HAProxy can move a conversation
between, need the shared Redis lock store: bot/rasa_ext/__main__.py.) The
servers share the tracker database: SQLite in WAL mode waits for a lock
instead of failing (bot/rasa_ext/tracker_store.py), and a tracker kept in one
server's memory is used only while the database holds exactly its rows.

The parent does no work of its own: it waits for its servers. One that stops
is forked again from the loaded parent after a pause that doubles (the
runner's RESTART_BACKOFF). One that stops RESTART_LIMIT times within
RESTART_WINDOW is not: the parent stops the others and exits 1, and the
runner then starts the whole process again. The parent stops its servers on
SIGTERM, SIGINT or SIGHUP, and each server dies with the parent
(PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from collections.abc import Callable

from bot import heap
from bot.runner import RESTART_BACKOFF, RESTART_LIMIT, RESTART_WINDOW, _die_with_parent

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def ports(env: dict[str, str]) -> tuple[int, ...]:
    """The forked servers' ports, from RASA_FORK_PORTS (the runner sets it:
    Settings.rasa_fork_ports); none, or one, means Rasa runs as itself."""
    raw = env.get("RASA_FORK_PORTS", "")
    found = tuple(int(part) for part in raw.split(",") if part.strip())
    return found if len(found) > 1 else ()


def with_port(argv: list[str], port: int) -> list[str]:
    """``rasa run`` arguments with ``--port`` set to ``port``."""
    out, skip = [], False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in ("--port", "-p") and i + 1 < len(argv):
            skip = True
            continue
        if arg.startswith("--port="):
            continue
        out.append(arg)
    return [*out, "--port", str(port)]


def model_path(argv: list[str]) -> str | None:
    for flag in ("--model", "-m"):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            return argv[argv.index(flag) + 1]
    return None


class Servers:
    """The forked servers, by pid, and how often each port's has stopped."""

    def __init__(
        self,
        argv: list[str],
        ports: tuple[int, ...],
        start: Callable[[], None],
        pauses: tuple[float, ...] = RESTART_BACKOFF,
        limit: int = RESTART_LIMIT,
    ):
        self.argv = argv
        self.ports = ports
        self.start = start  # runs one Rasa server with sys.argv as set, in the child
        self.pauses = pauses
        self.limit = limit
        self.by_pid: dict[int, int] = {}
        self.stops: dict[int, list[float]] = {port: [] for port in ports}
        self.stopping = False

    @staticmethod
    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def fork(self, port: int) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the server
            code = 1
            try:
                for sig in STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                _die_with_parent()
                sys.argv = ["rasa", *with_port(self.argv, port)]
                self.start()
                code = 0
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            except BaseException:  # noqa: BLE001 - a server's crash must end only that server
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.by_pid[pid] = port
        self.say(f"Rasa server on port {port}: pid {pid}")
        return pid

    def stop(self, *_) -> None:
        self.stopping = True
        for pid in list(self.by_pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        """Fork every server and look after them until stopped; the exit code."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, self.stop)
        for port in self.ports:
            self.fork(port)
        while self.by_pid:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            port = self.by_pid.pop(pid, None)
            if port is None or self.stopping:
                continue
            now = time.monotonic()
            recent = [t for t in self.stops[port] if now - t < RESTART_WINDOW]
            self.stops[port] = [*recent, now]
            code = os.waitstatus_to_exitcode(status)
            if len(recent) >= self.limit:
                self.say(
                    f"Rasa server on port {port} stopped (exit {code}) {len(recent) + 1} times in "
                    f"{RESTART_WINDOW / 60:.0f} minutes: stopping the others"
                )
                self.stop()
                self._reap()
                return 1
            pause = self.pauses[min(len(recent), len(self.pauses) - 1)]
            self.say(f"Rasa server on port {port} stopped (exit {code}); forking it again in {pause:g} s")
            deadline = time.monotonic() + pause
            while not self.stopping and time.monotonic() < deadline:
                time.sleep(0.1)
            if not self.stopping:
                self.fork(port)
        return 0

    def _reap(self) -> None:
        while self.by_pid:
            try:
                pid, _ = os.waitpid(-1, 0)
            except ChildProcessError:
                return
            self.by_pid.pop(pid, None)


def serve(argv: list[str], ports: tuple[int, ...], start: Callable[[], None]) -> int:
    """Load the model once, then fork a Rasa server on each port (``start``
    runs one with ``sys.argv`` set); returns when they have all stopped."""
    from bot.rasa_ext import patches

    model = model_path(argv)
    if model is not None and os.path.isfile(model):
        patches.preload(model)  # each server's MessageProcessor takes it (patches._load_model_preloaded)
    heap.settle()  # what every server shares stays out of the collector's passes, and unwritten
    return Servers(argv, ports, start).run()
