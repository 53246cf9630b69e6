"""Benchmark: crisis detector latency (p50/p99) and throughput.

    .venv/bin/python bench/crisis.py [--rounds N]

Each assessment is one message with three earlier turns of history, the way
the assistant calls it, through every layer: patterns, context rules and the
semantic layer (sentence encoder and heads). Messages are the dev set and the project's own cases,
made unique per round so the per-message cache never answers.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.crisis import assess, warm_up  # noqa: E402


def messages() -> list[str]:
    texts = []
    for path in (
        ROOT.parent / "shared" / "eval" / "crisis_dev.jsonl",
        ROOT / "tests" / "data" / "crisis_cases.jsonl",
    ):
        if path.exists():
            texts += [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    return texts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    started = time.perf_counter()
    warm_up()
    print(f"warm-up (pipelines, sentence encoder and heads): {time.perf_counter() - started:.2f} s")
    texts = messages()
    timings = []
    for round_number in range(args.rounds):
        for i, text in enumerate(texts):
            history = [f"{texts[i - k]} ({round_number})" for k in (1, 2, 3)]
            message = f"{text} ({round_number})"
            t0 = time.perf_counter()
            assess(message, history)
            timings.append(time.perf_counter() - t0)
    timings.sort()
    p = lambda q: 1000 * timings[min(len(timings) - 1, int(q * len(timings)))]  # noqa: E731
    print(f"assessments: {len(timings)} (message + 3 turns of history)")
    print(f"latency p50: {p(0.50):.2f} ms  p99: {p(0.99):.2f} ms  max: {1000 * timings[-1]:.2f} ms")
    print(f"throughput: {len(timings) / sum(timings):.0f} assessments/s (one core)")
    print(f"mean: {1000 * statistics.mean(timings):.2f} ms")


if __name__ == "__main__":
    main()
