"""Rasa's stored conversations (the tracker store): what a person typed.

Each event's data is encrypted (bot/rasa_ext/tracker_store.py); only the
sender id, the event's type and its time are in clear (no intent, action or
slot name).
The store is a SQLite file by default and PostgreSQL in production
(``Settings.tracker_url``).

Deleting sticks while Rasa runs. Rasa appends the events it counts as not
yet stored, so a turn in flight when its conversation is deleted would
write the whole conversation back (the count is 0 after a delete). So a
delete leaves a tombstone (`conversation_tombstones`: the id and a time) in
the same transaction, and the tracker store writes nothing for a conversation
with a tombstone. Both take the conversation's lock first: a PostgreSQL
advisory lock; SQLite lets one writer at a time, and the tracker store checks
for a tombstone only once its own write has begun. A deleted conversation's
id is never used again: the browser gets a new one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Collection
from pathlib import Path

from sqlalchemy import (
    Column,
    Float,
    MetaData,
    String,
    Table,
    bindparam,
    create_engine,
    delete,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from bot import crypto
from bot.store.db import StoreUnavailable


@functools.lru_cache(maxsize=4)
def engine(tracker_url: str) -> Engine:
    # Rasa owns this database and its settings; no pragmas of ours are applied.
    if make_url(tracker_url).get_backend_name() == "sqlite":
        return create_engine(tracker_url, future=True, connect_args={"timeout": 15})
    return create_engine(tracker_url, future=True, pool_pre_ping=True, pool_size=2)


TOMBSTONES = Table(
    "conversation_tombstones",
    MetaData(),
    Column("sender_id", String(255), primary_key=True),
    Column("deleted_at", Float, nullable=False),
)
TOMBSTONE_DAYS = 30  # longer than any cookie or pause code that could name the conversation
_BATCH = 200


def ensure_tombstones(connection) -> None:
    TOMBSTONES.create(connection, checkfirst=True)


def lock_conversation(connection, conversation_id: str) -> None:
    """Hold the conversation's lock until the transaction ends (PostgreSQL;
    SQLite already lets only one writer in at a time)."""
    dialect = connection.dialect if hasattr(connection, "dialect") else connection.get_bind().dialect
    if dialect.name == "postgresql":
        digest = hashlib.sha256(b"conversation:" + conversation_id.encode()).digest()
        key = int.from_bytes(digest[:8], "big", signed=True)
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def is_deleted(connection, conversation_id: str) -> bool:
    query = select(TOMBSTONES.c.sender_id).where(TOMBSTONES.c.sender_id == conversation_id)
    found = connection.execute(query).first()
    return found is not None


def _exists(tracker_url: str) -> bool:
    """False for a SQLite file Rasa has not made yet (nothing stored)."""
    parsed = make_url(tracker_url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return True
    return Path(parsed.database).exists()


def _has_events_table(connection) -> bool:
    return inspect(connection).has_table("events")


def stored(tracker_url: str) -> bool:
    """Whether Rasa has stored any conversation there yet (its events table exists)."""
    if not _exists(tracker_url):
        return False
    try:
        with engine(tracker_url).connect() as connection:
            return _has_events_table(connection)
    except SQLAlchemyError as err:
        raise StoreUnavailable(type(err).__name__) from err


def delete_conversation(tracker_url: str, conversation_id: str) -> int:
    """Delete every stored event of one conversation; returns how many rows went."""
    return delete_conversations(tracker_url, [conversation_id])


def delete_conversations(tracker_url: str, conversation_ids: Collection[str]) -> int:
    """Delete every stored event of these conversations, each under its lock and
    with a tombstone, so a turn in flight writes nothing back. Returns the rows removed."""
    if not conversation_ids or not _exists(tracker_url):
        return 0
    statement = text("DELETE FROM events WHERE sender_id IN :senders").bindparams(
        bindparam("senders", expanding=True)
    )
    ids = sorted(set(conversation_ids))  # one lock order for every deleter
    now = time.time()
    removed = 0
    try:
        with engine(tracker_url).begin() as connection:
            ensure_tombstones(connection)
            has_events = _has_events_table(connection)
        for start in range(0, len(ids), _BATCH):
            batch = ids[start : start + _BATCH]
            with engine(tracker_url).begin() as connection:
                for conversation_id in batch:
                    lock_conversation(connection, conversation_id)
                connection.execute(delete(TOMBSTONES).where(TOMBSTONES.c.sender_id.in_(batch)))
                connection.execute(TOMBSTONES.insert(), [{"sender_id": i, "deleted_at": now} for i in batch])
                if has_events:
                    removed += connection.execute(statement, {"senders": batch}).rowcount
    except SQLAlchemyError as err:
        raise StoreUnavailable(type(err).__name__) from err
    return removed


def forget_tombstones(tracker_url: str, now: float | None = None) -> int:
    """Tombstones older than TOMBSTONE_DAYS: nothing can name their conversation any more."""
    if not _exists(tracker_url):
        return 0
    cutoff = (time.time() if now is None else now) - TOMBSTONE_DAYS * 86400
    try:
        with engine(tracker_url).begin() as connection:
            if not inspect(connection).has_table(TOMBSTONES.name):
                return 0
            return connection.execute(delete(TOMBSTONES).where(TOMBSTONES.c.deleted_at < cutoff)).rowcount
    except SQLAlchemyError as err:
        raise StoreUnavailable(type(err).__name__) from err


def count_events(tracker_url: str, conversation_id: str) -> int:
    """How many stored events a conversation has (tests and checks)."""
    if not _exists(tracker_url):
        return 0
    with engine(tracker_url).connect() as connection:
        return connection.execute(
            text("SELECT COUNT(*) FROM events WHERE sender_id = :sender"), {"sender": conversation_id}
        ).scalar_one()


def last_active(tracker_url: str) -> dict[str, float]:
    """Each stored conversation, with when it was last active (a Unix time)."""
    if not _exists(tracker_url):
        return {}
    try:
        with engine(tracker_url).connect() as connection:
            if not _has_events_table(connection):
                return {}
            rows = connection.execute(text("SELECT sender_id, MAX(timestamp) FROM events GROUP BY sender_id"))
            return {sender: float(at or 0) for sender, at in rows}
    except SQLAlchemyError as err:
        raise StoreUnavailable(type(err).__name__) from err


def last_steps(tracker_url: str) -> dict[str, tuple[str | None, float]]:
    """For each stored conversation: the last question its form asked (a field
    name, or None before the first question) and when it was last active (a
    Unix time). Reads only slot events, and of those only `requested_slot`:
    never what anyone typed. (The slot's name is inside the encrypted data:
    no plain column names a slot, intent or action.)
    """
    active = last_active(tracker_url)
    if not active:
        return {}
    keyring = crypto.keyring()
    steps: dict[str, str | None] = {}
    try:
        with engine(tracker_url).connect() as connection:
            for sender, data in connection.execute(
                text("SELECT sender_id, data FROM events WHERE type_name = 'slot' ORDER BY id")
            ):
                event = json.loads(keyring.decrypt(data))
                if event.get("name") == "requested_slot" and isinstance(event.get("value"), str):
                    steps[sender] = event["value"]
    except SQLAlchemyError as err:
        raise StoreUnavailable(type(err).__name__) from err
    return {sender: (steps.get(sender), at) for sender, at in active.items()}
