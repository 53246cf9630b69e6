"""Benchmark: training time, start-up time until the chat answers, and memory.

    .venv/bin/python bench/stack.py

Trains a fresh model into a temporary folder (so the figure is a real
training, not a cache hit), starts `referral-assistant run` on free ports,
times until the first chat reply, plays one full self-referral, and prints
each process's resident memory: RSS, and PSS, which counts a page shared by
several processes (the forked Rasa servers share the loaded model) once,
shared out among them. Loopback only; stops everything it started.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import yaml  # noqa: E402
from chat_client import ChatClient, play  # noqa: E402
from compare import pss_mb, rss_mb  # noqa: E402  (bench/compare.py, beside this file)
from conftest import Stack  # noqa: E402


def forked(pid: int) -> list[int]:
    """The Rasa servers forked by the rasa process (bot/rasa_ext/forks.py)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


def main() -> None:
    from bot import training

    work = Path(tempfile.mkdtemp(prefix="bench-"))
    os.environ["RASA_MODELS_DIR"] = str(work / "models")
    shutil.rmtree(ROOT / ".rasa", ignore_errors=True)  # Rasa's own training cache
    started = time.perf_counter()
    training.ensure_model(force=True)
    print(f"rasa train (no cache): {time.perf_counter() - started:.1f} s")

    stack = Stack(work / "var")
    stack.env["RASA_MODELS_DIR"] = str(work / "models")
    started = time.perf_counter()
    stack.start()
    client = ChatClient(stack.web_url)
    reply = client.start()
    assert reply.question, reply
    print(
        f"start-up until the chat answers (model trained, venv installed): "
        f"{time.perf_counter() - started:.1f} s"
    )
    try:
        persona = yaml.safe_load((ROOT / "tests" / "data" / "personas.yml").read_text())["self_referral"]
        sent = []
        say = client.say
        client.say = lambda text: sent.append(text) or say(text)
        turns_started = time.perf_counter()
        play(client, persona["answers"], first=reply)
        client.say("send")
        elapsed = time.perf_counter() - turns_started
        turns = len(sent)
        per_turn = 1000 * elapsed / turns
        print(f"one full self-referral: {turns} turns in {elapsed:.1f} s ({per_turn:.0f} ms/turn)")
        names = ["rasa", "actions", "web"]
        pids = dict(zip(names, stack.child_pids(), strict=True))
        rows = [(name, pid) for name, pid in pids.items()]
        rows[1:1] = [(f"rasa server {i}", pid) for i, pid in enumerate(forked(pids["rasa"]), start=1)]
        rows.append(("runner", stack.process.pid))
        for name, pid in rows:
            print(f"memory, {name}: RSS {rss_mb(pid):.0f} MB, PSS {pss_mb(pid):.0f} MB")
        print(
            f"memory, in all: RSS {sum(rss_mb(p) for _, p in rows):.0f} MB, "
            f"PSS {sum(pss_mb(p) for _, p in rows):.0f} MB"
        )
    finally:
        stack.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
