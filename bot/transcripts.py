"""Rasa's stored conversations (the tracker store): what a person typed.

Only the web service deletes here, and only after Rasa has answered (and so
saved) the turn, so Rasa never writes the rows back.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from bot.store.db import StoreUnavailable


@functools.lru_cache(maxsize=4)
def _engine(tracker_db: Path) -> Engine:
    # Rasa owns this file and its settings; no pragmas of ours are applied.
    return create_engine(f"sqlite:///{tracker_db}", future=True, connect_args={"timeout": 15})


def delete_conversation(tracker_db: Path, conversation_id: str) -> int:
    """Delete every stored event of one conversation; returns how many rows went."""
    if not tracker_db.exists():
        return 0
    try:
        with _engine(tracker_db).begin() as connection:
            result = connection.execute(
                text("DELETE FROM events WHERE sender_id = :sender"), {"sender": conversation_id}
            )
            return result.rowcount
    except SQLAlchemyError as err:
        raise StoreUnavailable(type(err).__name__) from err


def count_events(tracker_db: Path, conversation_id: str) -> int:
    """How many stored events a conversation has (tests and checks)."""
    if not tracker_db.exists():
        return 0
    with _engine(tracker_db).connect() as connection:
        return connection.execute(
            text("SELECT COUNT(*) FROM events WHERE sender_id = :sender"), {"sender": conversation_id}
        ).scalar_one()


def last_steps(tracker_db: Path) -> dict[str, tuple[str | None, float]]:
    """For each stored conversation: the last question its form asked (a field
    name, or None before the first question) and when it was last active (a
    Unix time). Reads only `requested_slot` events: never what anyone typed.
    """
    if not tracker_db.exists():
        return {}
    steps: dict[str, str | None] = {}
    try:
        with _engine(tracker_db).connect() as connection:
            for sender, data in connection.execute(
                text(
                    "SELECT sender_id, data FROM events "
                    "WHERE type_name = 'slot' AND action_name = 'requested_slot' ORDER BY id"
                )
            ):
                value = json.loads(data).get("value")
                if isinstance(value, str):
                    steps[sender] = value
            last_active = {
                sender: at
                for sender, at in connection.execute(
                    text("SELECT sender_id, MAX(timestamp) FROM events GROUP BY sender_id")
                )
            }
    except SQLAlchemyError as err:
        raise StoreUnavailable(type(err).__name__) from err
    return {sender: (steps.get(sender), float(at or 0)) for sender, at in last_active.items()}
