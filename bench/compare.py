"""Benchmark: this assistant against Rasa's own starter bot, on the same machine.

    .venv/bin/python bench/compare.py [--users 20] [--seconds 60]
    .venv/bin/python bench/compare.py --think 200 [--think-seconds 300]
    .venv/bin/python bench/compare.py --production ...   (TEST_POSTGRES_URL, TEST_REDIS_URL)

Saturation (the default): the `rasa init` starter bot (DIET + TED, REST
channel, no custom actions; made with `rasa init --no-prompt` once and cached
in var/bench/starter-<rasa version>/) is run alone and driven by ``--users``
closed-loop users with no think time for ``--seconds``; then this assistant
(`referral-assistant run`, a fresh var/ of its own) is driven the same way
through the web gateway, each user making full self-referrals. Prints each
one's messages per second, the ratio, and the resident memory of each
process after the run.

``--think N``: N conversations at once through the gateway, each pausing 5
to 15 s between turns, for ``--think-seconds`` (a conversation that finishes
its referral starts another). Prints turn latency p50/p95/p99, errors, empty
replies, the referrals stored (each exactly once), and latency by turn index
(the turn cost as a conversation grows).

``--production``: this assistant in the production profile instead, as
tests/test_e2e_production.py starts it: two Rasa instances behind HAProxy on
the atomic Redis lock, PostgreSQL stores (fresh databases beside
TEST_POSTGRES_URL's, dropped after), the lock on TEST_REDIS_URL.

Loopback only; it stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import yaml  # noqa: E402
from chat_client import ChatClient, Reply  # noqa: E402
from conftest import (  # noqa: E402
    Stack,
    _redis_url,
    drop_postgres_database,
    free_port,
    production_env,
)

ANSWERS = yaml.safe_load((ROOT / "tests" / "data" / "personas.yml").read_text())["self_referral"]["answers"]
# What a person says to the starter bot (its own stories: greet, mood, goodbye).
STARTER_SCRIPT = ["hello", "I am feeling great", "goodbye", "hi", "very sad", "yes", "bye"]


# ---------------------------------------------------------------- measuring


@dataclass
class Turns:
    lock: threading.Lock = field(default_factory=threading.Lock)
    seconds: list[float] = field(default_factory=list)
    by_index: dict[int, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    empty: int = 0
    ended: list[tuple[float, float, bool]] = field(default_factory=list)  # (when, seconds, failed)

    def add(self, seconds: float, index: int, problem: str | None = None, empty: bool = False) -> None:
        with self.lock:
            self.seconds.append(seconds)
            self.ended.append((time.monotonic(), seconds, bool(problem)))
            self.by_index.setdefault(index, []).append(seconds)
            if problem:
                self.errors[problem] = self.errors.get(problem, 0) + 1
            self.empty += empty


def percentile(values: list[float], share: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(share * 100) - 1]


def _proc_mb(pid: int, name: str, field: str) -> float:
    """A kB field of /proc/<pid>/<name>, in MB; 0 if the process has gone."""
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def rss_mb(pid: int) -> float:
    return _proc_mb(pid, "status", "VmRSS:")


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "?"


def descendants(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for c in found for p in (c, *map(str, descendants(int(c))))]


def process_name(pid: int) -> str:
    line = cmdline(pid)
    for needle, name in (
        ("bot.rasa_ext", "rasa"),
        ("referral-assistant run", "runner"),
        ("-m bot.runner", "runner"),
        ("-m actions", "actions"),
        ("rasa_sdk", "actions"),
        ("bot.web", "web"),
        ("haproxy", "haproxy"),
        ("rasa run", "rasa"),
    ):
        if needle in line:
            return name
    return line.split()[0].rsplit("/", 1)[-1] if line.strip() else "?"


def pss_mb(pid: int) -> float:
    """Proportional resident memory: each shared page counted once across the
    processes sharing it (Rasa's forked servers share the loaded model)."""
    return _proc_mb(pid, "smaps_rollup", "Pss:")


def memory(pids: list[int], measure=None) -> dict[str, float]:
    """Resident memory by process name (several processes of one name are added up)."""
    measure = measure or rss_mb
    table: dict[str, float] = {}
    for pid in pids:
        name = process_name(pid)
        if name in ("bash", "sh", "?"):
            continue
        table[name] = table.get(name, 0.0) + measure(pid)
    return table


def cpu_seconds(pids: list[int]) -> dict[str, float]:
    """CPU time (user + system) each process has used so far, by name."""
    tick = os.sysconf("SC_CLK_TCK")
    table: dict[str, float] = {}
    for pid in pids:
        name = process_name(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[name] = table.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return table


# ---------------------------------------------------------------- the starter bot


def starter_project(rasa: Path) -> Path:
    """`rasa init --no-prompt` once per Rasa version (it trains the model); cached."""
    version = subprocess.run(
        [str(rasa), "--version"], capture_output=True, text=True, env=_quiet_env()
    ).stdout
    tag = next((w for w in version.split() if w[:1].isdigit()), "unknown")
    folder = ROOT / "var" / "bench" / f"starter-{tag}"
    if not list((folder / "models").glob("*.tar.gz")):
        folder.mkdir(parents=True, exist_ok=True)
        print(f"making the starter bot in {folder} (rasa init --no-prompt: trains once)", flush=True)
        made = subprocess.run(
            [str(rasa), "init", "--no-prompt", "--init-dir", str(folder)],
            env=_quiet_env(),
            capture_output=True,
            text=True,
        )
        if made.returncode != 0 or not list((folder / "models").glob("*.tar.gz")):
            sys.exit(f"rasa init failed:\n{made.stdout[-2000:]}\n{made.stderr[-2000:]}")
    return folder


def _quiet_env() -> dict[str, str]:
    return {**os.environ, "RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "3"}


def run_starter(rasa: Path, folder: Path, users: int, seconds: float) -> tuple[float, Turns, dict]:
    port = free_port()
    process = subprocess.Popen(
        [str(rasa), "run", "-m", "models", "--port", str(port), "-i", "127.0.0.1"],
        cwd=folder,
        env=_quiet_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url + "/", process)
        turns = Turns()

        def user(n: int, stop: float) -> None:
            i = 0
            while time.monotonic() < stop:
                text = STARTER_SCRIPT[i % len(STARTER_SCRIPT)]
                body = json.dumps(
                    {"sender": f"user-{n}-{i // len(STARTER_SCRIPT)}", "message": text}
                ).encode()
                request = urllib.request.Request(
                    url + "/webhooks/rest/webhook", body, {"Content-Type": "application/json"}
                )
                started = time.perf_counter()
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        replies = json.loads(answer.read())
                    turns.add(time.perf_counter() - started, i % len(STARTER_SCRIPT), empty=not replies)
                except OSError as error:
                    turns.add(time.perf_counter() - started, i % len(STARTER_SCRIPT), type(error).__name__)
                i += 1

        rate = _closed_loop(user, users, seconds, turns)
        return rate, turns, memories([process.pid, *descendants(process.pid)])
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def _wait_until_up(url: str, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit("the starter bot stopped while starting")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(1)
    sys.exit("the starter bot did not start in time")


def _closed_loop(user, users: int, seconds: float, turns: Turns) -> float:
    """Run ``users`` threads for a warm-up, then count turns over ``seconds``."""
    warm = 10.0
    stop = time.monotonic() + warm + seconds
    threads = [threading.Thread(target=user, args=(n, stop), daemon=True) for n in range(users)]
    for thread in threads:
        thread.start()
    time.sleep(warm)
    with turns.lock:
        turns.seconds.clear()
        turns.by_index.clear()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    with turns.lock:
        counted = len(turns.seconds)
    return counted / (time.perf_counter() - started)


# ---------------------------------------------------------------- this assistant


class TimedClient(ChatClient):
    def __init__(self, url: str, turns: Turns, think: tuple[float, float] | None = None):
        super().__init__(url)
        self.turns, self.think, self.index = turns, think, 0

    def post(self, path, body, raw=None, content_type="application/json") -> Reply:
        if self.think:  # a person reads, then types (also before the first turn, and after "busy")
            time.sleep(random.uniform(*self.think))
        started = time.perf_counter()
        try:
            reply = super().post(path, body, raw, content_type)
        except Exception as error:  # noqa: BLE001 - counted as an error, the run goes on
            self.turns.add(time.perf_counter() - started, self.index, type(error).__name__)
            raise
        problem = None if reply.status == 200 else f"HTTP {reply.status}"
        self.turns.add(time.perf_counter() - started, self.index, problem, empty=not reply.messages)
        self.index += 1
        return reply


def referrals(url: str, turns: Turns, stop: float, sent: list, think=None) -> None:
    """Full self-referrals, one after another, until ``stop``."""
    while time.monotonic() < stop:
        client = TimedClient(url, turns, think)
        try:
            reply = client.start()
            while reply.question and reply.question["field"] != "review" and time.monotonic() < stop:
                reply = client.say(ANSWERS[reply.question["field"]])
            if reply.question and reply.question["field"] == "review":
                done = client.say("send")
                if done.submitted:
                    with turns.lock:
                        sent.append(done.submitted["reference"])
        except (AssertionError, OSError, ValueError, KeyError):
            continue


PRODUCTION_DATABASES = ("referral_bench_referrals", "referral_bench_tracker")


def run_assistant(
    users: int, seconds: float, think: tuple[float, float] | None = None, production: bool = False
):
    from bot.training import ensure_model

    ensure_model()
    env = None
    if production:
        if not os.environ.get("TEST_POSTGRES_URL") or _redis_url() is None:
            sys.exit("--production needs TEST_POSTGRES_URL and TEST_REDIS_URL (see .ci/run)")
        env = production_env(PRODUCTION_DATABASES, _redis_url())
    stack = Stack(Path(tempfile.mkdtemp(prefix="bench-compare-")), env)
    if production:
        migrate = stack.cli("migrate")
        if migrate.returncode != 0:
            sys.exit(migrate.stderr)
    stack.start()
    turns, sent = Turns(), []
    try:
        pids = [stack.process.pid, *descendants(stack.process.pid)]
        cpu_before = cpu_seconds(pids)
        if think:
            stop = time.monotonic() + seconds
            threads = [
                threading.Thread(
                    target=referrals, args=(stack.web_url, turns, stop, sent, think), daemon=True
                )
                for _ in range(users)
            ]
            for thread in threads:
                thread.start()
                time.sleep(0.05)  # people arrive over ten seconds, not all in one instant
            for thread in threads:
                thread.join()
            rate = len(turns.seconds) / seconds
        else:

            def user(n: int, stop: float) -> None:
                referrals(stack.web_url, turns, stop, sent)

            rate = _closed_loop(user, users, seconds, turns)
        cpu_after = cpu_seconds(pids)
        cpu = {name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after}
        mem = memories(pids)
        exported = stack.cli("referrals", "export", "--format", "jsonl")
        stored = [json.loads(line)["reference"] for line in exported.stdout.splitlines()]
    finally:
        stack.stop()
        if production:
            for name in PRODUCTION_DATABASES:
                drop_postgres_database(name)
    return rate, turns, mem, cpu, sent, stored


# ---------------------------------------------------------------- report


def memories(pids: list[int]) -> dict[str, dict[str, float]]:
    """Resident (RSS: a page shared by forked processes counted in each) and
    proportional (PSS: counted once, shared out) memory, by process name."""
    return {"resident, RSS": memory(pids), "proportional, PSS": memory(pids, pss_mb)}


def show_memory(label: str, tables: dict[str, dict[str, float]]) -> None:
    for kind, table in tables.items():
        parts = ", ".join(f"{name} {mb:.0f} MB" for name, mb in sorted(table.items()))
        print(f"  memory ({label}, {kind}): {parts}; total {sum(table.values()):.0f} MB")


def show_cpu(cpu: dict[str, float], turns: int) -> None:
    """CPU per turn from the processes' own accounting: steadier than turns/s
    from one run, which moves by about 20% from run to run."""
    each = 1000 / max(turns, 1)
    parts = ", ".join(f"{name} {seconds * each:.1f} ms" for name, seconds in sorted(cpu.items()))
    print(f"  CPU per turn: {parts}")


def show_latency(turns: Turns) -> None:
    s = sorted(turns.seconds)
    if not s:
        return
    p50, p95, p99 = (percentile(s, q) * 1000 for q in (0.50, 0.95, 0.99))
    print(f"  turn latency: p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms, max {s[-1] * 1000:.0f} ms")
    print(f"  errors: {sum(turns.errors.values())} {json.dumps(turns.errors) if turns.errors else ''}")
    print(f"  empty replies: {turns.empty}")


def show_by_index(turns: Turns) -> None:
    """Latency by turn index. With one closed-loop user (``--users 1``) a
    turn's latency is its cost alone, with no queue: how turn cost grows with
    the conversation. The last turn is the submission, which does more."""
    print("  latency by turn index (p50 / p95 ms, turns):")
    for index in sorted(turns.by_index):
        values = sorted(turns.by_index[index])
        if index % 5 == 0 or index < 3 or index == max(turns.by_index):
            p50, p95 = percentile(values, 0.5) * 1000, percentile(values, 0.95) * 1000
            print(f"    turn {index:3d}: {p50:6.0f} / {p95:6.0f}  ({len(values)})")


def show_timeline(turns: Turns, width: float = 30.0) -> None:
    """Turns ended in each ``width`` seconds of the run: a stall or a burst
    shows as one window's p95 and errors, where the run's own hide it."""
    if not turns.ended:
        return
    first = min(when for when, _, _ in turns.ended)
    windows: dict[int, list[tuple[float, bool]]] = {}
    for when, seconds, failed in turns.ended:
        windows.setdefault(int((when - first) // width), []).append((seconds, failed))
    print(f"  by time ({width:.0f} s windows: turns, p95 / max ms, errors):")
    for window in sorted(windows):
        values = sorted(seconds for seconds, _ in windows[window])
        failed = sum(f for _, f in windows[window])
        p95, most = percentile(values, 0.95) * 1000, values[-1] * 1000
        print(f"    {window * width:5.0f} s: {len(values):5d}, {p95:6.0f} / {most:6.0f}, {failed}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--think", type=int, default=0, help="conversations for the think-time run")
    parser.add_argument("--think-seconds", type=float, default=300)
    parser.add_argument("--skip-starter", action="store_true", help="measure this assistant only")
    parser.add_argument(
        "--production", action="store_true", help="two Rasa instances, Redis lock, PostgreSQL stores"
    )
    args = parser.parse_args()
    rasa = Path(sys.executable).with_name("rasa")

    if args.think:
        rate, turns, mem, cpu, sent, stored = run_assistant(
            args.think, args.think_seconds, think=(5.0, 15.0), production=args.production
        )
        once = sum(stored.count(r) == 1 for r in sent)
        print(f"think time: {args.think} conversations, 5-15 s between turns, {args.think_seconds:.0f} s")
        print(f"  turns: {len(turns.seconds)} ({rate:.1f}/s)")
        show_latency(turns)
        print(f"  referrals sent: {len(sent)}; stored exactly once: {once}; stored in all: {len(stored)}")
        show_by_index(turns)
        show_timeline(turns)
        show_cpu(cpu, len(turns.seconds))
        show_memory("assistant", mem)
        return

    if not args.skip_starter:
        folder = starter_project(rasa)
        starter_rate, starter_turns, starter_mem = run_starter(rasa, folder, args.users, args.seconds)
        print(f"rasa init starter bot: {args.users} closed-loop users, {args.seconds:.0f} s")
        print(f"  {starter_rate:.1f} messages/s")
        show_latency(starter_turns)
        show_memory("starter", starter_mem)
    rate, turns, mem, cpu, sent, stored = run_assistant(args.users, args.seconds, production=args.production)
    print(
        f"this assistant ({'production profile' if args.production else 'make run'}), "
        f"full referrals through the gateway: {args.users} closed-loop users, "
        f"{args.seconds:.0f} s"
    )
    print(f"  {rate:.1f} turns/s; referrals sent {len(sent)}, stored {len(stored)}")
    show_latency(turns)
    show_by_index(turns)
    show_cpu(cpu, len(turns.seconds))
    show_memory("assistant", mem)
    if not args.skip_starter:
        print(f"ratio (assistant / starter): {rate / starter_rate:.2f}")


if __name__ == "__main__":
    main()
