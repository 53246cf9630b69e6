"""Rasa's conversation store, encrypted and failing closed.

``EncryptedSQLTrackerStore`` is Rasa's SQL tracker store with each event's
``data`` (what a person typed, and every slot value) stored as a Fernet
token (bot/crypto.py). The other columns (sender id, event type, time, and
for slot events the slot's name) stay in clear, so retention and the
drop-off figures can work without decrypting.

``FailClosedTrackerStore`` replaces Rasa's ``FailSafeTrackerStore``, which on
any database error carries on with an in-memory store, so answers are lost
while every reply still looks fine. Ours raises ``TrackerStoreUnavailable``;
the gateway channel turns that into an answer the person can see.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from rasa.core.tracker_store import FailSafeTrackerStore, SQLTrackerStore
from rasa.shared.core.trackers import DialogueStateTracker
from rasa.shared.nlu.constants import INTENT_NAME_KEY

from bot import crypto

log = logging.getLogger(__name__)


class TrackerStoreUnavailable(RuntimeError):
    """The conversation store could not be read or written; nothing was changed."""


class EncryptedSQLTrackerStore(SQLTrackerStore):
    """endpoints.yml: ``type: bot.rasa_ext.tracker_store.EncryptedSQLTrackerStore``, ``url: ...``."""

    def __init__(self, domain=None, host: str | None = None, url: str | None = None, **kwargs: Any):
        super().__init__(domain=domain, host=url or host, **kwargs)

    async def _retrieve(self, sender_id: str, fetch_events_from_all_sessions: bool):
        with self.session_scope() as session:
            rows = self._event_query(
                session, sender_id, fetch_events_from_all_sessions=fetch_events_from_all_sessions
            ).all()
            events = [decode(row.data) for row in rows]
        if self.domain and events:
            return DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
        return None

    async def save(self, tracker: DialogueStateTracker) -> None:
        """As Rasa's own save, with the event's data encrypted."""
        await self.stream_events(tracker)
        with self.session_scope() as session:
            for event in self._additional_events(session, tracker):
                data = event.as_dict()
                session.add(
                    self.SQLEvent(
                        sender_id=tracker.sender_id,
                        type_name=event.type_name,
                        timestamp=data.get("timestamp"),
                        intent_name=data.get("parse_data", {}).get("intent", {}).get(INTENT_NAME_KEY),
                        action_name=data.get("name"),
                        data=encode(data),
                    )
                )
            session.commit()


def create_tables(url: str) -> None:
    """Create Rasa's events table, as each instance would at start. The runner
    does it first when several instances start at once, or they race to."""
    from sqlalchemy import create_engine

    engine = create_engine(url, future=True)
    try:
        SQLTrackerStore.Base.metadata.create_all(engine)
    finally:
        engine.dispose()


def encode(data: dict) -> str:
    return crypto.keyring().encrypt(json.dumps(data).encode())


def decode(stored: str) -> dict:
    return json.loads(crypto.keyring().decrypt(stored))


class FailClosedTrackerStore(FailSafeTrackerStore):
    """Every error of the real store is raised, never hidden behind a store in memory.

    Only the error's type is logged: a database error's message can hold the
    values being written.
    """

    def _fail(self, operation: str, error: Exception) -> TrackerStoreUnavailable:
        log.error("conversation store %s failed: %s", operation, type(error).__name__)
        return TrackerStoreUnavailable(f"{operation} failed: {type(error).__name__}")

    async def retrieve(self, sender_id: str):
        try:
            return await self._tracker_store.retrieve(sender_id)
        except Exception as error:
            raise self._fail("retrieve", error) from None

    async def retrieve_full_tracker(self, sender_id: str):
        try:
            return await self._tracker_store.retrieve_full_tracker(sender_id)
        except Exception as error:
            raise self._fail("retrieve", error) from None

    async def keys(self):
        try:
            return await self._tracker_store.keys()
        except Exception as error:
            raise self._fail("keys", error) from None

    async def save(self, tracker: DialogueStateTracker) -> None:
        try:
            await self._tracker_store.save(tracker)
        except Exception as error:
            raise self._fail("save", error) from None
