"""Rasa's conversation store, encrypted and failing closed.

``EncryptedSQLTrackerStore`` is Rasa's SQL tracker store with each event's
``data`` (what a person typed, and every slot value) stored as a Fernet
token (bot/crypto.py). Only the sender id, the event type (user, bot,
action, slot...) and the time stay in clear, so retention can work without
decrypting. Rasa's ``intent_name`` and ``action_name`` columns are left
empty: they would say "crisis_imminent" next to a conversation id, and Rasa
rebuilds a tracker from ``data`` alone. A conversation that was deleted
(a tombstone, bot/transcripts.py) is never written again, so a turn that
was in flight during the delete cannot write it back.

``FailClosedTrackerStore`` replaces Rasa's ``FailSafeTrackerStore``, which on
any database error carries on with an in-memory store, so answers are lost
while every reply still looks fine. Ours raises ``TrackerStoreUnavailable``;
the gateway channel turns that into an answer the person can see.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections import OrderedDict
from functools import cached_property
from typing import Any

from rasa.core.tracker_store import FailSafeTrackerStore, SQLTrackerStore
from rasa.shared.core.events import SessionStarted
from rasa.shared.core.trackers import DialogueStateTracker
from sqlalchemy import and_, bindparam, func, inspect, or_, select, text
from sqlalchemy.exc import SQLAlchemyError

from bot import crypto, transcripts
from bot.rasa_ext import patches
from bot.store.db import is_sqlite_file

log = logging.getLogger(__name__)


class TrackerStoreUnavailable(RuntimeError):
    """The conversation store could not be read or written; nothing was changed."""


class EncryptedSQLTrackerStore(SQLTrackerStore):
    """endpoints.yml: ``type: bot.rasa_ext.tracker_store.EncryptedSQLTrackerStore``, ``url: ...``."""

    def __init__(self, domain=None, host: str | None = None, url: str | None = None, **kwargs: Any):
        super().__init__(domain=domain, host=url or host, **kwargs)
        if self.engine.dialect.name == "sqlite":
            if is_sqlite_file(self.engine.url):  # a file, not a database per connection
                self._pool_sqlite_connections()
            sqlite_write_ahead(self.engine)
        self.plaintexts = Plaintexts()
        self.trackers = Trackers()
        try:
            with self.engine.begin() as connection:
                prepare(connection)
        except SQLAlchemyError as error:  # another instance starting at once; it made them
            log.error("could not prepare the conversation store: %s", type(error).__name__)

    def _pool_sqlite_connections(self) -> None:
        """Keep SQLite connections open between turns. SQLAlchemy 1.4 opens a new
        one for every session on a SQLite file (NullPool; 2.0 pools them), and
        each new one ran the write-ahead and busy-timeout pragmas again: about
        4% of Rasa's CPU under load, two or three times a turn. Only Rasa's
        event-loop thread uses the store; a connection goes back to the pool
        rolled back, so it holds no lock or snapshot between turns."""
        from sqlalchemy import create_engine
        from sqlalchemy.orm import sessionmaker
        from sqlalchemy.pool import QueuePool

        url = self.engine.url
        self.engine.dispose()
        self.engine = create_engine(
            url, poolclass=QueuePool, pool_size=4, max_overflow=8, connect_args={"check_same_thread": False}
        )
        self.sessionmaker = sessionmaker(bind=self.engine)

    async def _retrieve(self, sender_id: str, fetch_events_from_all_sessions: bool):
        latest = not fetch_events_from_all_sessions
        with self.session_scope() as session:
            if latest and self.trackers.holds(sender_id):
                # Only ids and tags first: when the kept tracker is still what
                # the database holds, the data is not needed at all.
                found = session.execute(self._statements["tags"], {"sender_id": sender_id})
                key = [tuple(row) for row in found]
                kept = self.trackers.take(sender_id, key)
                if kept is not None:
                    return kept
            # Two columns, not whole ORM objects: building those was about 7%
            # of Rasa's CPU under load.
            found = session.execute(self._statements["data" if latest else "all"], {"sender_id": sender_id})
            rows = [tuple(row) for row in found]
        plain = self.plaintexts.read(sender_id, rows)
        events = [patches.json_loads(text) for text in plain]
        if self.domain and events:
            tracker = DialogueStateTracker.from_dict(sender_id, events, self.domain.slots)
            if latest:
                Trackers.mark(tracker, [(row_id, data[-Plaintexts.TAG :]) for row_id, data in rows])
            return tracker
        return None

    @cached_property
    def _statements(self) -> dict:
        """Rasa's ``_event_query`` (a conversation's events in id order: those of
        its latest session, or all of them) as Core statements built once, and
        its count. The same rows (tests/test_rasa_ext.py compares them with
        Rasa's query) without building and compiling an ORM query every turn
        (about 5% of Rasa's CPU under load)."""
        events = self.SQLEvent.__table__
        sender = events.c.sender_id == bindparam("sender_id")
        session_start = (
            select(func.max(events.c.timestamp))
            .where(sender, events.c.type_name == SessionStarted.type_name)
            .scalar_subquery()
        )
        latest = and_(sender, or_(events.c.timestamp >= session_start, session_start.is_(None)))
        tag = func.substr(events.c.data, func.length(events.c.data) - (Plaintexts.TAG - 1))
        return {
            "tags": select(events.c.id, tag).where(latest).order_by(events.c.id),
            "data": select(events.c.id, events.c.data).where(latest).order_by(events.c.id),
            "all": select(events.c.id, events.c.data).where(sender).order_by(events.c.id),
            "count": select(func.count()).select_from(events).where(latest),
        }

    def _additional_events(self, session, tracker: DialogueStateTracker):
        """Rasa's: the tracker's events past those its latest session has stored."""
        stored = session.execute(self._statements["count"], {"sender_id": tracker.sender_id}).scalar()
        return itertools.islice(tracker.events, stored, len(tracker.events))

    async def save(self, tracker: DialogueStateTracker) -> None:
        """As Rasa's own save, with the event's data encrypted, no names in
        clear, and nothing written for a deleted conversation."""
        await self.stream_events(tracker)
        self.trackers.drop(tracker.sender_id)
        added = []
        with self.session_scope() as session:
            transcripts.lock_conversation(session, tracker.sender_id)
            for event in self._additional_events(session, tracker):
                data = event.as_dict()
                row = self.SQLEvent(
                    sender_id=tracker.sender_id,
                    type_name=event.type_name,
                    timestamp=data.get("timestamp"),
                    data=encode(data),
                )
                session.add(row)
                added.append(row)
            # Checked once this write has begun (SQLite: it holds the write lock
            # now), so a delete either came first and is seen, or comes after
            # and removes these rows too.
            session.flush()
            if transcripts.is_deleted(session, tracker.sender_id):
                session.rollback()
                log.info("a turn of a deleted conversation was not stored")
                return
            new_rows = [(row.id, row.data[-Plaintexts.TAG :]) for row in added]
            session.commit()
        self.trackers.keep(tracker, new_rows)

class Trackers:
    """The tracker each conversation's last turn saved, handed to its next turn
    in place of one rebuilt from the database, when the database holds
    exactly the rows it was saved as.

    Rebuilding was most of a turn's reading: every event parsed and made an
    object again, and its slots, loop and latest message worked out anew
    (10-20 ms for a whole referral's 487 events). The database stays the only
    source of truth: the next read still fetches the conversation's rows, and
    the kept tracker is used only when their ids *and* tokens (the last 43
    characters, the HMAC tag) are exactly those its events were read from
    and written as. A row another instance added, a new session (which
    starts the rows read at its own start), a row re-encrypted by `keys
    rotate`, or a delete, and it is rebuilt from the rows as before.

    A tracker has one owner at a time: ``take`` removes it, and only ``save``
    puts one back, so two readers never share one. One that gained events
    after it was saved (a caller that saves and then carries on) is not
    handed out either. Limits as ``Plaintexts``: a conversation's tracker
    leaves memory at its next read, or when it is the least recently saved
    past them (a whole referral's tracker is about 0.8 MB).
    """

    ROWS = "_referral_rows"  # on a tracker: the (row id, tag) each of its events was read from or written as

    def __init__(self, conversations: int = 256, events: int = 40_000) -> None:
        self.conversations = conversations
        self.events = events
        self._entries: OrderedDict[str, tuple[DialogueStateTracker, int]] = OrderedDict()
        self._held = 0  # events of the trackers kept, as saved
        self.handed = 0  # trackers handed out in place of a rebuild, for tests and benchmarks

    @classmethod
    def mark(cls, tracker: DialogueStateTracker, rows: list[tuple[int, str]]) -> None:
        setattr(tracker, cls.ROWS, rows)

    def take(self, sender_id: str, rows: list[tuple[int, str]]) -> DialogueStateTracker | None:
        """The kept tracker, if ``rows`` (what the database holds now) are the ones it was saved as."""
        tracker = self.drop(sender_id)
        if tracker is None:
            return None
        if getattr(tracker, self.ROWS) != rows or len(tracker.events) != len(rows):
            return None
        self.handed += 1
        return tracker

    def holds(self, sender_id: str) -> bool:
        return sender_id in self._entries

    def drop(self, sender_id: str) -> DialogueStateTracker | None:
        tracker, held = self._entries.pop(sender_id, (None, 0))
        self._held -= held
        return tracker

    def keep(self, tracker: DialogueStateTracker, added: list[tuple[int, str]]) -> None:
        """After ``tracker`` was saved, ``added`` being the rows its new events were written as."""
        before = getattr(tracker, self.ROWS, None)
        if before is None:
            before = []  # a tracker not read from here (a new conversation, or a whole history)
            if len(added) != len(tracker.events):
                return
        rows = before + added
        if len(rows) != len(tracker.events) or tracker.events.maxlen is not None:
            self.mark(tracker, None)
            return
        self.mark(tracker, rows)
        if self.conversations <= 0:
            return
        self._entries[tracker.sender_id] = (tracker, len(rows))
        self._held += len(rows)
        while self._entries and (len(self._entries) > self.conversations or self._held > self.events):
            _, (_, held) = self._entries.popitem(last=False)
            self._held -= held

    def forget(self) -> None:
        self._entries.clear()
        self._held = 0


class Plaintexts:
    """The decrypted data of the events read last, per conversation, so that a
    turn decrypts only the rows added since the conversation's last turn.

    Rasa reads the whole conversation back every turn; decrypting each event
    again was about two thirds of reading it (13.5 us of 20 us an event, the
    rest json). An entry is used only for the same row id *and* the same
    token (its last 43 characters are its HMAC tag), so a row re-encrypted by
    `keys rotate`, or a row id reused after a delete, is decrypted afresh:
    the database stays the only source of truth, and any number of
    instances can share it. Each read replaces the conversation's entry with
    exactly the rows read, so a deleted conversation's text leaves memory at
    its next read, or when it is the least recently read past the limits.
    """

    TAG = 43  # base64 of Fernet's 32-byte HMAC, at the end of every token

    def __init__(self, conversations: int = 256, events: int = 15_000) -> None:
        self.conversations = conversations
        self.events = events
        self._entries: OrderedDict[str, dict[int, tuple[str, str]]] = OrderedDict()
        self._held = 0
        self.decrypted = 0  # rows decrypted, for tests and benchmarks

    def read(self, sender_id: str, rows: list[tuple[int, str]]) -> list[str]:
        """The plaintext of each (row id, stored token), in order."""
        known = self._entries.pop(sender_id, {})
        self._held -= len(known)
        fresh: dict[int, tuple[str, str]] = {}
        plain = []
        for row_id, stored in rows:
            tag = stored[-self.TAG :]
            hit = known.get(row_id)
            if hit is not None and hit[0] == tag:
                text = hit[1]
            else:
                text = crypto.keyring().decrypt(stored).decode()
                self.decrypted += 1
            fresh[row_id] = (tag, text)
            plain.append(text)
        if fresh:
            self._entries[sender_id] = fresh
            self._held += len(fresh)
            while self._entries and (len(self._entries) > self.conversations or self._held > self.events):
                _, dropped = self._entries.popitem(last=False)
                self._held -= len(dropped)
        return plain

    def forget(self) -> None:
        self._entries.clear()
        self._held = 0


def prepare(connection) -> None:
    """The tombstone table, and no names left in clear from before they were dropped."""
    transcripts.ensure_tombstones(connection)
    if not inspect(connection).has_table("events"):
        return
    connection.execute(
        text(
            "UPDATE events SET intent_name = NULL, action_name = NULL "
            "WHERE intent_name IS NOT NULL OR action_name IS NOT NULL"
        )
    )


def sqlite_write_ahead(engine) -> None:
    """The tracker database in WAL mode, as the referral store is (bot/store/db.py):
    a turn's commit syncs once, not the rollback journal's several times with a
    file made and removed, and the web service reads while Rasa writes. (Commits
    and statements were about 7% of the Rasa process's samples under load; no
    change in turns per second could be told from run-to-run noise.) Every
    connection waits up to 15 s for a lock instead of failing at once."""
    from sqlalchemy import event

    def on_connect(dbapi_connection, _record) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.close()

    event.listen(engine, "connect", on_connect)
    engine.dispose()  # connections made before this one was listening


def create_tables(url: str) -> None:
    """Create Rasa's events table, as each instance would at start. The runner
    does it first when several instances start at once, or they race to."""
    from sqlalchemy import create_engine

    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":
        sqlite_write_ahead(engine)
    try:
        SQLTrackerStore.Base.metadata.create_all(engine)
        with engine.begin() as connection:
            prepare(connection)
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
