"""The crisis outbox: crisis events that could not be stored yet.

Whenever any process shows crisis wording it records a crisis event
(``record``). When the referral store is down the event goes to a file under
``var/`` instead, one JSON line per event, and ``flush`` moves it into the
store once the store is back: before each submission, after each event that
was stored, and every minute from the web process. The event then counts
like any other: a referral sent from that conversation is banded
``emergency``, and one already sent is escalated.

A line holds what the store would hold (conversation id, level, subject,
categories, resource names, detector version, time), never the message,
sealed with the store's encryption keys; only a random event id is clear.
Every event is written to the outbox first and then moved to the store, so
nothing is lost if the store is down, slow, or fails half-way. Writers take
a short exclusive lock on the file; one process at a time flushes it. The
processes on one host share it (each host has its own var/).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

from bot import crypto, services
from bot.store.db import StoreUnavailable
from bot.store.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
OUTBOX_FILE = "crisis_outbox.jsonl"
STORED, QUEUED = "stored", "queued"
RECORD_TIMEOUT = 3.0  # seconds to wait for the store before leaving an event in the outbox


def path(var_dir: Path) -> Path:
    return Path(var_dir) / OUTBOX_FILE


@contextlib.contextmanager
def _locked(var_dir: Path) -> Iterator[object]:
    target = path(var_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def put(var_dir: Path, event: dict) -> None:
    """Keep an event for later; written and synced before this returns.

    Sealed with the store's keys (bot/crypto.py): nothing about the crisis is
    readable in the file, only the event's random id.
    """
    sealed = crypto.keyring().encrypt(json.dumps(event, sort_keys=True).encode())
    line = json.dumps({"id": event["id"], "sealed": sealed})
    with _locked(var_dir) as handle:
        handle.write(line + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def pending(var_dir: Path) -> list[dict]:
    """The events waiting in the outbox (tests and health)."""
    if not path(var_dir).exists():
        return []
    return [_open(line) for line in _lines(var_dir)]


def _open(line: str) -> dict:
    return json.loads(crypto.keyring().decrypt(json.loads(line)["sealed"]))


def event(
    conversation_id: str,
    level: str,
    subject: str,
    categories: list[str] | tuple[str, ...] = (),
    resources: list[dict] | None = None,
    detector_version: str = "",
    source: str = "assistant",
) -> dict:
    return {
        "id": uuid.uuid4().hex,
        "conversation_id": conversation_id,
        "level": level,
        "subject": subject,
        "categories": list(categories),
        "resources": [{"name": r.get("name")} for r in resources or []],
        "detector_version": detector_version,
        "source": source,
        "at": dt.datetime.now(dt.timezone.utc).isoformat(),
    }


def _store(uow: UnitOfWork, item: dict) -> None:
    services.record_crisis_event(
        uow,
        item["conversation_id"],
        item["level"],
        item["subject"],
        list(item.get("categories") or []),
        list(item.get("resources") or []),
        item.get("detector_version") or "",
        at=dt.datetime.fromisoformat(item["at"]) if item.get("at") else None,
    )


async def record(uow: UnitOfWork, var_dir: Path, item: dict, timeout: float = RECORD_TIMEOUT) -> str:
    """Keep a crisis event in the outbox, then move what the outbox holds into
    the store. Returns STORED, or QUEUED when the store could not take it yet.

    The event is on disk before the store is tried, so a store that is down,
    slow (``timeout`` seconds: the caller is showing someone crisis help) or
    failing half-way cannot lose it. Used by the actions and the gateway alike.
    """
    await asyncio.to_thread(put, var_dir, item)
    try:
        await asyncio.wait_for(asyncio.to_thread(flush, uow, var_dir), timeout=timeout)
    except asyncio.TimeoutError:
        log.error("crisis event kept in the outbox: the referral store did not answer in time")
        return QUEUED
    if any(e.get("id") == item["id"] for e in await asyncio.to_thread(pending, var_dir)):
        log.error("crisis event kept in the outbox: the referral store is unavailable")
        return QUEUED
    return STORED


def flush(uow: UnitOfWork, var_dir: Path) -> int:
    """Store what the outbox holds, oldest first; returns how many were stored.

    Stops at the first failure and keeps that event and the rest. One flusher
    at a time per outbox (another is skipped, not kept waiting); writers are
    never held up by a flush waiting on the store.
    """
    target = path(var_dir)
    if not target.exists() or target.stat().st_size == 0:
        return 0
    with open(Path(var_dir) / (OUTBOX_FILE + ".flushing"), "a") as flushing:
        try:
            fcntl.flock(flushing, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # another process is flushing now
        try:
            return _flush(uow, var_dir)
        finally:
            fcntl.flock(flushing, fcntl.LOCK_UN)


def _flush(uow: UnitOfWork, var_dir: Path) -> int:
    done: set[str] = set()
    stored = 0
    for line in _lines(var_dir):
        try:
            item = _open(line)
            key = item["id"]
        except (ValueError, KeyError, TypeError, crypto.DecryptError):
            log.error("an unreadable line in the crisis outbox was kept aside")
            _set_aside(var_dir, line)
            done.add(line)
            continue
        try:
            _store(uow, item)
        except StoreUnavailable as err:
            log.error("crisis event(s) kept in the outbox: the referral store is unavailable (%s)", err)
            break
        stored += 1
        done.add(key)
    if done:
        with _locked(var_dir) as handle:
            handle.seek(0)
            keep = [line for line in handle.read().splitlines() if line.strip() and _key(line) not in done]
            handle.seek(0)
            handle.truncate()
            handle.write("".join(line + "\n" for line in keep))
            handle.flush()
            os.fsync(handle.fileno())
    if stored:
        log.warning("%d crisis event(s) moved from the outbox to the store", stored)
    return stored


def _lines(var_dir: Path) -> list[str]:
    with _locked(var_dir) as handle:
        handle.seek(0)
        return [line for line in handle.read().splitlines() if line.strip()]


def _key(line: str) -> str:
    try:
        return json.loads(line)["id"]
    except (ValueError, KeyError, TypeError):
        return line


def _set_aside(var_dir: Path, line: str) -> None:
    with open(Path(var_dir) / (OUTBOX_FILE + ".unreadable"), "a", encoding="utf-8") as handle:
        handle.write(line + "\n")
