"""Rasa's stored conversations (the tracker store): what a person typed.

Each event's data is encrypted (bot/rasa_ext/tracker_store.py); the sender
id, event type, time and, for slot events, the slot's name are in clear.
The store is a SQLite file by default and PostgreSQL in production
(``Settings.tracker_url``).

Deleting is safe while Rasa runs: Rasa only appends events it has not
stored yet, so it never writes deleted rows back; a conversation that goes
on after a purge simply starts again.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Collection
from pathlib import Path

from sqlalchemy import bindparam, create_engine, inspect, text
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
    if not conversation_ids or not _exists(tracker_url):
        return 0
    statement = text("DELETE FROM events WHERE sender_id IN :senders").bindparams(
        bindparam("senders", expanding=True)
    )
    try:
        with engine(tracker_url).begin() as connection:
            if not _has_events_table(connection):
                return 0
            removed = 0
            ids = list(conversation_ids)
            for start in range(0, len(ids), 500):
                removed += connection.execute(statement, {"senders": ids[start : start + 500]}).rowcount
            return removed
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
    Unix time). Reads only `requested_slot` events: never what anyone typed.
    """
    active = last_active(tracker_url)
    if not active:
        return {}
    keyring = crypto.keyring()
    steps: dict[str, str | None] = {}
    try:
        with engine(tracker_url).connect() as connection:
            for sender, data in connection.execute(
                text(
                    "SELECT sender_id, data FROM events "
                    "WHERE type_name = 'slot' AND action_name = 'requested_slot' ORDER BY id"
                )
            ):
                value = json.loads(keyring.decrypt(data)).get("value")
                if isinstance(value, str):
                    steps[sender] = value
    except SQLAlchemyError as err:
        raise StoreUnavailable(type(err).__name__) from err
    return {sender: (steps.get(sender), at) for sender, at in active.items()}
