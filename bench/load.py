"""Benchmark: many people completing referrals at once.

    .venv/bin/python bench/load.py [--conversations 100] [--concurrency 25] [--production]

Starts `referral-assistant run` on free loopback ports (a fresh var/ of its
own), then plays one full self-referral per simulated person through the
chat API, at most ``--concurrency`` at a time, and sends it. Prints the turn
latency (p50, p95, max), throughput, errors, and checks that every completed
conversation produced exactly one stored referral.

``--production`` runs the production profile instead (two Rasa instances
behind the proxy, PostgreSQL and Redis), using TEST_POSTGRES_URL's server
and TEST_REDIS_URL. Loopback only; stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import yaml  # noqa: E402
from chat_client import ChatClient, Reply, play  # noqa: E402
from conftest import Stack, drop_postgres_database, production_env  # noqa: E402

DATABASES = ("referral_bench_referrals", "referral_bench_tracker")
ANSWERS = yaml.safe_load((ROOT / "tests" / "data" / "personas.yml").read_text())["self_referral"]["answers"]


@dataclass
class Timings:
    lock: threading.Lock = field(default_factory=threading.Lock)
    seconds: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, seconds: float, problem: str | None) -> None:
        with self.lock:
            self.seconds.append(seconds)
            if problem:
                self.errors[problem] = self.errors.get(problem, 0) + 1


@dataclass
class TimedClient(ChatClient):
    timings: Timings | None = None

    def post(self, path, body, raw=None, content_type="application/json") -> Reply:
        started = time.perf_counter()
        try:
            reply = super().post(path, body, raw, content_type)
        except Exception as error:  # noqa: BLE001 - counted as an error, the run goes on
            self.timings.add(time.perf_counter() - started, type(error).__name__)
            raise
        self.timings.add(
            time.perf_counter() - started, None if reply.status == 200 else f"HTTP {reply.status}"
        )
        return reply


def converse(url: str, timings: Timings) -> str | None:
    """One person's whole referral; their reference, or None if it did not complete."""
    client = TimedClient(url, timings=timings)
    try:
        play(client, ANSWERS)
        sent = client.say("send")
    except (AssertionError, OSError, ValueError):
        return None
    return sent.submitted["reference"] if sent.submitted else None


def percentile(values: list[float], share: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(share * 100) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=25)
    parser.add_argument("--production", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.concurrency <= 32:
        sys.exit("--concurrency must be from 1 to 32 (the gateway's in-flight cap)")

    from bot.training import ensure_model

    ensure_model()
    env = {}
    if args.production:
        if not os.environ.get("TEST_POSTGRES_URL") or not os.environ.get("TEST_REDIS_URL"):
            sys.exit("--production needs TEST_POSTGRES_URL and TEST_REDIS_URL")
        env = production_env(DATABASES, os.environ["TEST_REDIS_URL"])
    stack = Stack(Path(tempfile.mkdtemp(prefix="bench-load-")), env)
    if args.production:
        migrate = stack.cli("migrate")
        if migrate.returncode != 0:
            sys.exit(migrate.stderr)
    stack.start()
    timings = Timings()
    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
            references = list(pool.map(lambda _: converse(stack.web_url, timings), range(args.conversations)))
        elapsed = time.perf_counter() - started
        exported = stack.cli("referrals", "export", "--format", "jsonl")
        stored = [json.loads(line)["reference"] for line in exported.stdout.splitlines()]
    finally:
        stack.stop()
        if args.production:
            for name in DATABASES:
                drop_postgres_database(name)

    completed = [r for r in references if r]
    once = sum(stored.count(r) == 1 for r in completed)
    seconds = sorted(timings.seconds)
    profile = (
        "production (2 Rasa instances, PostgreSQL, Redis)" if args.production else "development (SQLite)"
    )
    print(f"load: {args.conversations} conversations, {args.concurrency} at a time, {profile}")
    print(f"  completed: {len(completed)}/{args.conversations}; stored exactly once: {once}/{len(completed)}")
    print(f"  referrals stored in all: {len(stored)}")
    print(f"  turns: {len(seconds)} in {elapsed:.1f} s = {len(seconds) / elapsed:.1f} turns/s")
    print(f"  referrals per minute: {len(completed) / elapsed * 60:.1f}")
    if seconds:
        p50, p95 = percentile(seconds, 0.50), percentile(seconds, 0.95)
        slowest = seconds[-1]
        print(
            f"  turn latency: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, max {slowest * 1000:.0f} ms"
        )
    print(f"  errors: {sum(timings.errors.values())} {json.dumps(timings.errors) if timings.errors else ''}")
    if once != len(completed) or len(stored) != len(completed) or len(completed) != args.conversations:
        sys.exit("FAILED: not every conversation completed with exactly one stored referral")


if __name__ == "__main__":
    main()
