"""Engines and sessions. Nothing connects until a function here is called."""

from __future__ import annotations

import functools
from pathlib import Path

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.engine.url import make_url
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import QueuePool


class StoreUnavailable(RuntimeError):
    """The referral store could not be reached or written."""


@functools.lru_cache(maxsize=8)
def engine_for(url: str) -> Engine:
    """One engine per database URL per process, created on first use."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if is_sqlite_file(parsed):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # A file's connections are kept open between uses (SQLAlchemy 1.4 opens
        # one for every session on a SQLite file, 2.0 pools them): the web
        # service checks the chat session on every turn, and each new
        # connection ran the three pragmas again. A connection goes back
        # rolled back, so it holds no lock or snapshot between uses.
        pooled = {"poolclass": QueuePool, "pool_size": 5, "max_overflow": 10}
        if not is_sqlite_file(parsed):
            pooled = {}
        engine = create_engine(
            url, future=True, connect_args={"timeout": 15, "check_same_thread": False}, **pooled
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, future=True, pool_pre_ping=True, pool_size=5, max_overflow=5)


def is_sqlite_file(parsed) -> bool:
    """A SQLite URL (parsed) names a file, not a database in memory."""
    return bool(parsed.database) and parsed.database != ":memory:"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the CLI and the web service read while the action server writes.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=15000")
    cursor.close()


def session_factory(url: str) -> sessionmaker:
    return _sessions(engine_for(url))


@functools.lru_cache(maxsize=8)
def _sessions(engine: Engine) -> sessionmaker:
    """One factory per engine: each ``sessionmaker`` makes a Session class of its
    own, and SQLAlchemy sets up that class's events on its first session (about
    0.25 ms, on every use of the store when a factory was made each time)."""
    return sessionmaker(bind=engine, future=True, expire_on_commit=False)
