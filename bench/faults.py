"""Benchmark: how fast a person is told when part of the service is down.

    .venv/bin/python bench/faults.py [--samples 10]

Starts the processes with the runner's own Supervisor on free loopback ports
(a fresh var/ of its own), brings a conversation to the phone question, then
stops one part at a time and times the answers the person gets:

- the action server stopped: an ordinary answer ("paused") and a crisis
  message (the crisis wording first); the issue asks for both within 2 s;
- Rasa stopped: an ordinary answer ("not working for a moment").

Prints p50 and max per case. Stops everything it started.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import yaml  # noqa: E402
from chat_client import ChatClient, play  # noqa: E402
from conftest import supervised  # noqa: E402

ANSWERS = yaml.safe_load((ROOT / "tests" / "data" / "personas.yml").read_text())["self_referral"]["answers"]
CRISIS = "I am going to kill myself tonight"


def timed(client: ChatClient, text: str, expect: str) -> float:
    started = time.perf_counter()
    reply = client.say(text)
    seconds = time.perf_counter() - started
    if reply.status != 503 or reply.error != expect or "988" not in " ".join(reply.texts):
        sys.exit(f"FAILED: expected a 503 {expect} answer with 988, got {reply}")
    return seconds


def main() -> None:
    from bot.training import ensure_model

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()

    supervisor = supervised(Path(tempfile.mkdtemp(prefix="bench-faults-")), ensure_model()[0])
    results: dict[str, list[float]] = {}
    try:
        client = ChatClient(supervisor.web_url)
        play(client, ANSWERS, stop_at="phone")

        supervisor.stop_child("actions")
        results["action server stopped, an answer"] = [
            timed(client, ANSWERS["phone"], "actions_unavailable") for _ in range(args.samples)
        ]
        results["action server stopped, a crisis message"] = [
            timed(client, CRISIS, "actions_unavailable") for _ in range(args.samples)
        ]
        supervisor.stop_child("rasa")
        results["Rasa stopped, an answer"] = [
            timed(client, ANSWERS["phone"], "unavailable") for _ in range(args.samples)
        ]
    finally:
        supervisor.stop()

    print(f"faults: time until the person is told, {args.samples} samples each")
    for case, seconds in results.items():
        print(f"  {case}: p50 {statistics.median(seconds) * 1000:.0f} ms, max {max(seconds) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
