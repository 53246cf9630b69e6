"""Benchmark: duplicate tickets from the conversation lock several Rasa instances share.

    TEST_REDIS_URL=redis://127.0.0.1:6379/1 .venv/bin/python bench/lock.py [--rounds 20] [--takers 16]

In each round, ``--takers`` threads take a ticket for one conversation at the
same moment, alternately from two lock-store objects (as two Rasa instances
would), on the real Redis. A ticket handed out twice lets two instances run
one conversation's turns at once. Prints the duplicates for Rasa's own
``RedisLockStore`` and for ``bot.rasa_ext.lock_store.AtomicRedisLockStore``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]


def _take(store, start: threading.Barrier, tickets: list[int]) -> None:
    start.wait()
    tickets.append(store.issue_ticket("conversation", 30))


def duplicates(store_class, settings: dict, rounds: int, takers: int) -> int:
    found = 0
    for _ in range(rounds):
        prefix = "bench" + uuid.uuid4().hex[:12]
        stores = [store_class(key_prefix=prefix, **settings) for _ in range(2)]
        tickets, start = [], threading.Barrier(takers)

        threads = [
            threading.Thread(target=_take, args=(stores[i % 2], start, tickets)) for i in range(takers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        found += len(tickets) - len(set(tickets))
        stores[0].delete_lock("conversation")
    return found


def main() -> None:
    from rasa.core.lock_store import RedisLockStore

    from bot.rasa_ext.lock_store import AtomicRedisLockStore

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--takers", type=int, default=16)
    args = parser.parse_args()
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        sys.exit("bench/lock.py needs TEST_REDIS_URL (for example redis://127.0.0.1:6379/1)")
    parts = urlsplit(url)
    settings = {"host": parts.hostname, "port": parts.port or 6379, "db": parts.path.strip("/") or 0}
    print(f"lock: {args.rounds} rounds of {args.takers} takers at once, from two store objects")
    for store_class in (RedisLockStore, AtomicRedisLockStore):
        found = duplicates(store_class, settings, args.rounds, args.takers)
        print(f"  {store_class.__name__}: {found} duplicate tickets")


if __name__ == "__main__":
    main()
