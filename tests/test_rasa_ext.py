"""Our Rasa extensions: the encrypted, fail-closed tracker store, the start-up
guards, and the hardened action server."""

import json
import os
import sqlite3
import zlib
from contextlib import asynccontextmanager, contextmanager

import pytest
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import SlotSet, UserUttered
from rasa.shared.core.trackers import DialogueStateTracker

from bot import crypto
from bot.config import PROJECT_ROOT
from bot.rasa_ext.__main__ import problems
from bot.rasa_ext.tracker_store import (
    EncryptedSQLTrackerStore,
    FailClosedTrackerStore,
    Trackers,
    TrackerStoreUnavailable,
)

SENTENCE = "my neighbour's parrot recites my bank details"


@pytest.fixture(scope="module")
def domain():
    return Domain.load(str(PROJECT_ROOT / "domain.yml"))


def tracker(domain, sender="chat-1"):
    events = [UserUttered(SENTENCE), SlotSet("requested_slot", "full_name"), SlotSet("full_name", "Ottoline")]
    return DialogueStateTracker.from_events(sender, events, domain.slots)


async def test_events_are_stored_encrypted_and_read_back(domain, tmp_path):
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    store = EncryptedSQLTrackerStore(domain, url=url)
    await store.save(tracker(domain))
    with sqlite3.connect(tmp_path / "tracker.db") as db:
        rows = db.execute("SELECT type_name, action_name, data FROM events").fetchall()
    assert all(data.startswith(crypto.TOKEN_PREFIX) for _, _, data in rows)
    assert {t for t, _, _ in rows} == {"user", "slot"} and {a for _, a, _ in rows} == {
        None
    }  # no names in clear
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("tracker.db*"))
    assert b"parrot" not in raw and b"Ottoline" not in raw
    again = await EncryptedSQLTrackerStore(domain, url=url).retrieve("chat-1")
    assert again.get_slot("full_name") == "Ottoline" and again.latest_message.text == SENTENCE


async def test_the_sqlite_tracker_database_is_written_ahead_and_waits_for_locks(domain, tmp_path):
    from bot.rasa_ext.tracker_store import create_tables

    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    store = EncryptedSQLTrackerStore(domain, url=url)
    await store.save(tracker(domain))
    with sqlite3.connect(tmp_path / "tracker.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)  # kept in the file
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15000
    # While another connection holds the write lock, a turn waits and is stored.
    holder = sqlite3.connect(tmp_path / "tracker.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    import asyncio
    import threading

    threading.Timer(0.5, holder.rollback).start()
    second = tracker(domain, "chat-2")
    await asyncio.wait_for(store.save(second), 20)
    assert (await store.retrieve("chat-2")).get_slot("full_name") == "Ottoline"
    holder.close()
    # The runner's create_tables makes a new database the same way.
    create_tables(f"sqlite:///{tmp_path / 'fresh.db'}")
    with sqlite3.connect(tmp_path / "fresh.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_the_sqlite_store_keeps_its_connections_open_between_turns(domain, tmp_path):
    from sqlalchemy import event

    store = EncryptedSQLTrackerStore(domain, url=f"sqlite:///{tmp_path / 'tracker.db'}")
    opened = []
    event.listen(store.engine, "connect", lambda *_: opened.append(1))
    store.engine.dispose()  # the connection its start made
    for turn in range(5):
        current = await store.retrieve("chat-1") or tracker(domain)
        current.update(SlotSet("full_name", f"Name {turn}"))
        await store.save(current)
    assert len(opened) == 1  # one connection for all (SQLAlchemy 1.4 opens one a session on a file)
    # Another process's write is seen on the kept connection (no snapshot is held between turns).
    with sqlite3.connect(tmp_path / "tracker.db") as db:
        db.execute("DELETE FROM events WHERE sender_id = 'chat-1'")
    assert await store.retrieve("chat-1") is None


async def test_a_turn_decrypts_only_the_rows_added_since_the_last(domain, tmp_path):
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    store = EncryptedSQLTrackerStore(domain, url=url)
    store.trackers = Trackers(conversations=0)  # every read rebuilds, as when another instance wrote
    await store.save(tracker(domain))
    first = await store.retrieve("chat-1")
    stored = store.plaintexts.decrypted
    assert stored == len(first.events)
    first.update(SlotSet("full_name", "Ottoline Morrell"))
    await store.save(first)
    again = await store.retrieve("chat-1")
    assert store.plaintexts.decrypted == stored + 1  # only the new row
    assert again.get_slot("full_name") == "Ottoline Morrell"
    assert [e.as_dict() for e in again.events] == [e.as_dict() for e in first.events]


async def test_the_cache_never_outlives_what_the_database_holds(domain, tmp_path):
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    store = EncryptedSQLTrackerStore(domain, url=url)
    store.trackers = Trackers(conversations=0)
    other = EncryptedSQLTrackerStore(domain, url=url)  # a second instance on the same database
    await store.save(tracker(domain))
    await store.retrieve("chat-1")
    # Written by the other instance: seen at once.
    theirs = await other.retrieve("chat-1")
    theirs.update(SlotSet("full_name", "Written elsewhere"))
    await other.save(theirs)
    assert (await store.retrieve("chat-1")).get_slot("full_name") == "Written elsewhere"
    # Every row re-encrypted (as `keys rotate` does) with new text under the same ids:
    # the cache is keyed by the token too, so the new text is read.
    with sqlite3.connect(tmp_path / "tracker.db") as db:
        for row_id, data in db.execute("SELECT id, data FROM events").fetchall():
            event = json.loads(crypto.keyring().decrypt(data))
            if event.get("name") == "full_name" and event.get("value") == "Written elsewhere":
                event["value"] = "Changed in place"
            token = crypto.keyring().encrypt(json.dumps(event).encode())
            db.execute("UPDATE events SET data = ? WHERE id = ?", (token, row_id))
    assert (await store.retrieve("chat-1")).get_slot("full_name") == "Changed in place"
    # Deleted: nothing comes back, and nothing of it is held.
    with sqlite3.connect(tmp_path / "tracker.db") as db:
        db.execute("DELETE FROM events WHERE sender_id = 'chat-1'")
    assert await store.retrieve("chat-1") is None
    assert "chat-1" not in store.plaintexts._entries


def rebuilt(store, sender="chat-1"):
    """What a store that keeps no tracker reads back (another instance, or a restart)."""
    fresh = EncryptedSQLTrackerStore(store.domain, url=str(store.engine.url))
    fresh.trackers = Trackers(conversations=0)
    return fresh.retrieve(sender)


def state(tracker) -> dict:
    return {"events": [e.as_dict() for e in tracker.events], "state": tracker.current_state()}


async def test_the_next_turn_gets_the_tracker_the_last_turn_saved(domain, tmp_path):
    store = EncryptedSQLTrackerStore(domain, url=f"sqlite:///{tmp_path / 'tracker.db'}")
    first = await store.retrieve("chat-1") or tracker(domain)
    await store.save(first)
    for turn in range(5):
        current = await store.retrieve("chat-1")
        assert current is first  # not rebuilt: the database holds exactly what it was saved as
        assert state(current) == state(await rebuilt(store))
        current.update(UserUttered(f"turn {turn}"))
        current.update(SlotSet("full_name", f"Name {turn}"))
        await store.save(current)
    assert store.trackers.handed == 5 and store.plaintexts.decrypted == 0
    assert state(await store.retrieve("chat-1")) == state(await rebuilt(store))


async def test_a_kept_tracker_is_handed_out_only_while_it_is_what_the_database_holds(domain, tmp_path):
    url = f"sqlite:///{tmp_path / 'tracker.db'}"
    store = EncryptedSQLTrackerStore(domain, url=url)
    other = EncryptedSQLTrackerStore(domain, url=url)  # a second instance on the same database
    mine = tracker(domain)
    await store.save(mine)
    # Another instance wrote a turn: rebuilt, with its write.
    theirs = await other.retrieve("chat-1")
    theirs.update(SlotSet("full_name", "Written elsewhere"))
    await other.save(theirs)
    again = await store.retrieve("chat-1")
    assert again is not mine and again.get_slot("full_name") == "Written elsewhere"
    # One owner at a time: a second read while the first holds it is rebuilt.
    await store.save(again)
    assert await store.retrieve("chat-1") is again
    assert await store.retrieve("chat-1") is not again
    # Events added after the save and never saved: not handed out.
    await store.save(again)
    again.update(SlotSet("full_name", "Never saved"))
    assert (await store.retrieve("chat-1")).get_slot("full_name") == "Written elsewhere"
    # Re-encrypted in place (`keys rotate`), with new text under the same ids: rebuilt.
    latest = await store.retrieve("chat-1")
    await store.save(latest)
    with sqlite3.connect(tmp_path / "tracker.db") as db:
        for row_id, data in db.execute("SELECT id, data FROM events").fetchall():
            event = json.loads(crypto.keyring().decrypt(data))
            if event.get("value") == "Written elsewhere":
                event["value"] = "Changed in place"
            db.execute(
                "UPDATE events SET data = ? WHERE id = ?",
                (crypto.keyring().encrypt(json.dumps(event).encode()), row_id),
            )
    assert (await store.retrieve("chat-1")).get_slot("full_name") == "Changed in place"
    # Deleted: nothing comes back, and nothing of it is held.
    await store.save(await store.retrieve("chat-1"))
    with sqlite3.connect(tmp_path / "tracker.db") as db:
        db.execute("DELETE FROM events WHERE sender_id = 'chat-1'")
    assert await store.retrieve("chat-1") is None
    assert "chat-1" not in store.trackers._entries and "chat-1" not in store.plaintexts._entries


async def test_a_new_session_is_read_from_its_start_not_kept(domain, tmp_path):
    from rasa.shared.core.events import ActionExecuted, SessionStarted

    store = EncryptedSQLTrackerStore(domain, url=f"sqlite:///{tmp_path / 'tracker.db'}")
    old = tracker(domain)
    await store.save(old)
    current = await store.retrieve("chat-1")
    for event in (ActionExecuted("action_session_start"), SessionStarted(), ActionExecuted("action_listen")):
        current.update(event)
    current.update(UserUttered("a new day"))
    await store.save(current)
    read = await store.retrieve("chat-1")
    # Rasa reads a conversation from its latest session's start: the kept tracker,
    # which holds the old session too, is not what that read gives.
    assert read is not current
    assert state(read) == state(await rebuilt(store))
    assert read.latest_message.text == "a new day" and len(read.events) < len(current.events)


async def test_the_store_reads_exactly_the_rows_rasas_own_query_reads(domain, tmp_path):
    from rasa.shared.core.events import ActionExecuted, SessionStarted

    store = EncryptedSQLTrackerStore(domain, url=f"sqlite:///{tmp_path / 'tracker.db'}")
    sessions = DialogueStateTracker.from_events(
        "three-sessions",
        [
            UserUttered("first", timestamp=100.0),
            SessionStarted(timestamp=200.0),
            UserUttered("second", timestamp=150.0),  # older than its session's start: not in it
            SlotSet("full_name", "Ann", timestamp=200.0),  # as old as the start: in it
            SessionStarted(timestamp=300.0),
            ActionExecuted("action_listen", timestamp=300.5),
            UserUttered("third", timestamp=301.0),
        ],
        domain.slots,
    )
    await store.save(sessions)
    await store.save(tracker(domain, "no-session"))
    with store.session_scope() as session:
        for sender in ("three-sessions", "no-session", "nobody"):
            for latest in (True, False):
                rasa = [
                    tuple(row)
                    for row in store._event_query(session, sender, fetch_events_from_all_sessions=not latest)
                    .with_entities(store.SQLEvent.id, store.SQLEvent.data)
                    .all()
                ]
                statement = store._statements["data" if latest else "all"]
                ours = [tuple(row) for row in session.execute(statement, {"sender_id": sender})]
                assert ours == rasa
            latest_rows = [
                tuple(row) for row in session.execute(store._statements["data"], {"sender_id": sender})
            ]
            tags = [tuple(row) for row in session.execute(store._statements["tags"], {"sender_id": sender})]
            assert tags == [(row_id, data[-43:]) for row_id, data in latest_rows]
            count = session.execute(store._statements["count"], {"sender_id": sender}).scalar()
            assert count == store._event_query(session, sender, fetch_events_from_all_sessions=False).count()
    store.trackers.forget()
    read = await store.retrieve("three-sessions")
    assert [e.as_dict().get("text") for e in read.events if isinstance(e, UserUttered)] == ["third"]
    assert len(read.events) == 3


def test_the_kept_trackers_stay_within_their_limits(domain):
    kept = Trackers(conversations=2, events=7)
    for n, sender in enumerate("abc"):
        kept.keep(tracker(domain, sender), [(n * 10 + i, "tag") for i in range(3)])
    assert list(kept._entries) == ["b", "c"] and kept._held == 6
    kept.keep(tracker(domain, "d"), [(40 + i, "tag") for i in range(3)])
    assert list(kept._entries) == ["c", "d"] and kept._held == 6
    eight = [SlotSet("full_name", str(i)) for i in range(8)]
    big = DialogueStateTracker.from_events("e", eight, domain.slots)
    kept.keep(big, [(50 + i, "tag") for i in range(8)])
    assert kept._entries == {} and kept._held == 0  # more events than the limit: not kept at all


def test_the_cache_keeps_within_its_limits():
    from bot.rasa_ext.tracker_store import Plaintexts

    cache = Plaintexts(conversations=2, events=5)
    token = lambda text: crypto.keyring().encrypt(text.encode())  # noqa: E731
    for sender in ("a", "b", "c"):
        assert cache.read(sender, [(1, token(sender)), (2, token(sender + "2"))]) == [sender, sender + "2"]
    assert list(cache._entries) == ["b", "c"]  # two conversations at most, least recently read out
    cache.read("d", [(i, token(str(i))) for i in range(4)])
    assert list(cache._entries) == ["d"] and cache._held == 4  # five events at most


async def test_a_store_error_is_raised_never_hidden_in_memory(domain, tmp_path, caplog):
    path = tmp_path / "tracker.db"
    store = FailClosedTrackerStore(EncryptedSQLTrackerStore(domain, url=f"sqlite:///{path}"))
    await store.save(tracker(domain))
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE events")  # what any database error looks like from here
    with pytest.raises(TrackerStoreUnavailable):
        await store.save(tracker(domain, "chat-2"))
    with pytest.raises(TrackerStoreUnavailable):
        await store.retrieve("chat-1")
    assert "Ottoline" not in caplog.text and "parrot" not in caplog.text


def test_rasa_is_patched_as_expected():
    """The pinned Rasa still has what bot/rasa_ext/__main__.py replaces."""
    import rasa.core.actions.action as action
    import rasa.core.agent as agent
    import rasa.utils.endpoints as endpoints

    from bot.rasa_ext.__main__ import ACTION_TIMEOUT, install

    saved = agent.FailSafeTrackerStore, action.DEFAULT_REQUEST_TIMEOUT, endpoints.DEFAULT_REQUEST_TIMEOUT
    validate = action.RemoteAction._validate_action_result
    try:
        install()
        assert agent.FailSafeTrackerStore is FailClosedTrackerStore
        assert action.DEFAULT_REQUEST_TIMEOUT == endpoints.DEFAULT_REQUEST_TIMEOUT == ACTION_TIMEOUT
        from bot.rasa_ext.channel import TURN_DEADLINE

        assert ACTION_TIMEOUT < TURN_DEADLINE < 10  # inside the gateway's wait, RASA_TIMEOUT <= 10
    finally:
        agent.FailSafeTrackerStore, action.DEFAULT_REQUEST_TIMEOUT, endpoints.DEFAULT_REQUEST_TIMEOUT = saved
        action.RemoteAction._validate_action_result = validate


@pytest.mark.parametrize(
    ("argv", "env", "problem"),
    [
        (["run", "--enable-api"], {}, "--enable-api needs --auth-token"),
        (["run", "--debug"], {"REFERRAL_PROFILE": "production"}, "production logs at INFO"),
        (["run"], {"REFERRAL_PROFILE": "production", "LOG_LEVEL": "DEBUG"}, "production logs at INFO"),
        (["run"], {"RASA_INSTANCES": "2"}, "shared lock store"),
        (["run"], {"SANIC_WORKERS": "4"}, "shared lock store"),
        (["run"], {"TICKET_LOCK_LIFETIME": "5"}, "TICKET_LOCK_LIFETIME"),
        (["run"], {"GATEWAY_TOKEN": ""}, "GATEWAY_TOKEN is not set"),
    ],
)
def test_unsafe_settings_stop_rasa_starting(argv, env, problem):
    assert any(problem in p for p in problems(argv, {"GATEWAY_TOKEN": "t", **env}))


def test_rasa_refuses_to_start_without_the_gateway_token():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "GATEWAY_TOKEN"}
    done = subprocess.run(
        [sys.executable, "-m", "bot.rasa_ext", "run"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert "Refusing to start Rasa: GATEWAY_TOKEN is not set" in done.stderr


def test_rasas_own_redis_lock_store_is_not_enough_for_several_instances(tmp_path):
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text("lock_store:\n  type: redis\n  url: 127.0.0.1\n")
    found = problems(["run", "--endpoints", str(endpoints)], {"GATEWAY_TOKEN": "t", "RASA_INSTANCES": "2"})
    assert any("not atomic" in p for p in found)


def test_safe_settings_start(tmp_path):
    endpoints = tmp_path / "endpoints.yml"
    endpoints.write_text(
        "lock_store:\n  type: bot.rasa_ext.lock_store.AtomicRedisLockStore\n  url: 127.0.0.1\n"
    )
    token = {"GATEWAY_TOKEN": "t"}
    assert problems(["run", "--endpoints", str(endpoints)], {**token, "RASA_INSTANCES": "2"}) == []
    assert problems(["run", "--endpoints", str(endpoints)], {**token, "SANIC_WORKERS": "2"}) == []
    production = {**token, "REFERRAL_PROFILE": "production"}
    assert problems(["run", "--enable-api", "--auth-token", "t"], production) == []


# ---------------------------------------------------------------- the action server


@pytest.fixture(scope="module")
def action_server(tmp_path_factory):
    """`python -m actions`, as the runner starts it, with a known token."""
    import os
    import subprocess
    import sys
    import time

    from conftest import free_port

    from bot.runner import healthy

    port = free_port()
    log = tmp_path_factory.mktemp("actions") / "actions.log"
    env = {**os.environ, "ACTION_SERVER_TOKEN": "t0ken", "SANIC_HOST": "127.0.0.1"}
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "actions", "--actions", "actions", "--port", str(port)],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 90
    while not healthy(f"http://127.0.0.1:{port}/health") and time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        time.sleep(0.3)
    yield f"http://127.0.0.1:{port}", log
    process.terminate()
    process.wait(timeout=20)


def post(url: str, body: bytes, headers: dict) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def action_call(name="validate_referral_form") -> bytes:
    return json.dumps(
        {
            "next_action": name,
            "sender_id": "x",
            "tracker": {
                "sender_id": "x",
                "slots": "not a mapping",
                "latest_message": {"text": SENTENCE},
                "events": [],
            },
            "domain": {},
            "version": "3.6.2",
        }
    ).encode()


def test_the_action_server_needs_the_token(action_server):
    url, _ = action_server
    assert post(f"{url}/webhook", action_call(), {})[0] == 403
    assert post(f"{url}/webhook", action_call(), {"X-Action-Token": "wrong"})[0] == 403
    assert post(f"{url}/actions", b"", {})[0] in (403, 405)


def test_an_action_error_never_echoes_the_request(action_server):
    url, log = action_server
    status, body = post(f"{url}/webhook", action_call(), {"X-Action-Token": "t0ken"})
    # rasa-sdk's own handler would answer {"error": ..., "request_body": <the whole tracker>}.
    assert (status, json.loads(body)) == (500, {"error": "AttributeError"})
    assert "parrot" not in log.read_text()


def test_a_compressed_body_that_inflates_too_far_is_refused(action_server):
    url, _ = action_server
    bomb = zlib.compress(b"{" + b" " * (9 * 1024 * 1024) + b"}", 9)
    assert len(bomb) < 100_000
    headers = {"X-Action-Token": "t0ken", "Content-Encoding": "deflate"}
    assert post(f"{url}/webhook", bomb, headers)[0] == 413


def test_the_action_server_sends_no_cors_headers(action_server):
    import urllib.request

    url, _ = action_server
    request = urllib.request.Request(f"{url}/health", headers={"Origin": "https://evil.example"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert "Access-Control-Allow-Origin" not in response.headers


# ---------------------------------------------------------------- the shared conversation lock


@pytest.fixture
def lock_stores():
    """Two lock stores on the real Redis, as two Rasa instances would have, on a
    key prefix of this test's own."""
    import uuid

    from conftest import _redis_url

    from bot.rasa_ext.lock_store import AtomicRedisLockStore

    url = _redis_url()
    if url is None:
        pytest.skip("TEST_REDIS_URL not set")
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    prefix = "test" + uuid.uuid4().hex[:12]
    settings = {"host": parts.hostname, "port": parts.port or 6379, "db": parts.path.strip("/") or 0}
    stores = [AtomicRedisLockStore(key_prefix=prefix, **settings) for _ in range(2)]
    yield stores
    for key in stores[0].red.scan_iter(f"{prefix}:*"):
        stores[0].red.delete(key)


def test_tickets_taken_at_once_from_two_instances_are_all_different(lock_stores):
    import threading

    tickets, start = [], threading.Barrier(16)

    def take(store):
        start.wait()
        tickets.append(store.issue_ticket("conversation-1", 30))

    threads = [threading.Thread(target=take, args=(lock_stores[i % 2],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(tickets) == list(range(16))  # Rasa's own store can hand out 0 twice


async def test_the_second_instance_waits_for_the_first_and_the_lock_goes_after(lock_stores):
    import asyncio

    first, second = lock_stores
    order = []

    async def turn(store, name, hold):
        async with store.lock("conversation-2", lock_lifetime=20, wait_time_in_seconds=0.05):
            order.append(f"{name} in")
            await asyncio.sleep(hold)
            order.append(f"{name} out")

    one = asyncio.create_task(turn(first, "one", 0.3))
    await asyncio.sleep(0.05)
    await asyncio.gather(one, turn(second, "two", 0))
    assert order == ["one in", "one out", "two in", "two out"]
    assert first.get_lock("conversation-2") is None  # nothing left behind


# ---------------------------------------------------------------- speed patches


@contextmanager
def rasa_patched(owner, attribute: str):
    """(Rasa's own function, the patch) with the patch installed in its place,
    whatever another test left there; Rasa's own again afterwards."""
    import inspect

    from bot.rasa_ext import patches

    original = patches._original(getattr(owner, attribute))
    static = isinstance(inspect.getattr_static(owner, attribute), staticmethod)
    own = staticmethod(original) if static else original
    setattr(owner, attribute, own)
    try:
        patches.install()
        patched = getattr(owner, attribute)
        assert patched is not original and patches._original(patched) is original
        yield original, patched
    finally:
        setattr(owner, attribute, own)


def test_every_patched_rasa_function_is_still_the_one_the_patch_was_written_for():
    """Fails when a Rasa upgrade changes a function bot/rasa_ext/patches.py replaces:
    read the new source, update the patch, then its hash in PINNED."""
    import rasa

    from bot.rasa_ext import patches

    assert rasa.__version__ == patches.RASA_VERSION
    assert patches.changed() == []


def test_the_rasa_store_methods_our_store_rewrites_are_the_ones_it_was_written_for():
    """EncryptedSQLTrackerStore rewrites these (bot/rasa_ext/tracker_store.py): when a
    Rasa upgrade changes one, read the new source and update ours, then the hash here."""
    from rasa.core.tracker_store import SQLTrackerStore

    from bot.rasa_ext import patches

    pinned = {
        "_event_query": "cd44f7901b860bfd598a813bde17d0d5b0d7bab129feaf76bb2dca87d628625b",
        "_additional_events": "d22f99eb863acb07afee63d9fe3a04ca8464251e67a43eb7d36c2d65ffc1653f",
        "_retrieve": "c8adbf6f4b61ddd1124690944ebdf2ebc82d0723bd07c6704caab0b80120a0ef",
        "save": "57165e46eab3de0866e77f03df0bf7fd5eac2c1de617ed431b934c9a4edfeef6",
    }
    found = {name: patches.source_hash(getattr(SQLTrackerStore, name)) for name in pinned}
    assert found == pinned


def test_the_validator_built_once_accepts_and_refuses_what_rasa_does():
    import jsonschema
    import rasa.core.actions.action as action

    from bot.rasa_ext import patches

    with rasa_patched(action.RemoteAction, "_validate_action_result") as (original, patched):
        assert patches.changed() == []
        assert patches.install() == []  # installing twice changes nothing
        remote = action.RemoteAction("action_x", None)
        good = [
            {},
            {"events": [], "responses": []},
            {
                "events": [{"event": "slot", "name": "full_name", "value": "Ann"}],
                "responses": [{"text": "Hi"}],
            },
            {
                "events": [
                    {"event": "action", "name": "action_listen"},
                    {"event": "active_loop", "name": None},
                ]
            },
        ]
        bad = [
            {"events": [{"event": "slot", "value": "no name"}]},
            {"events": "not a list"},
            {"responses": ["not an object"]},
            {"events": [{"event": "no_such_event"}]},
            [],
        ]
        for result in good:
            assert original(remote, result) is True and patched(remote, result) is True
        for result in bad:
            with pytest.raises(jsonschema.ValidationError) as theirs:
                original(remote, result)
            with pytest.raises(jsonschema.ValidationError) as ours:
                patched(remote, result)
            assert ours.value.message == theirs.value.message and ours.value.path == theirs.value.path


def _answers_to_validate():
    """Action-server answers, valid and not: every event Rasa can write, then
    each of their fields removed or given a value of another type."""
    import random

    from rasa.shared.core import events as ev

    samples = [
        ev.UserUttered("hi", {"name": "greet", "confidence": 0.9}, [{"entity": "x", "value": 1}]),
        ev.BotUttered("hello", {"buttons": []}),
        ev.SlotSet("full_name", "Ann"),
        ev.SlotSet("age", None),
        ev.ActionExecuted("action_listen"),
        ev.ActiveLoop("referral_form"),
        ev.ActiveLoop(None),
        ev.Restarted(),
        ev.AllSlotsReset(),
        ev.ReminderScheduled("remind", trigger_date_time=__import__("datetime").datetime(2030, 1, 1)),
        ev.ReminderCancelled(intent="remind"),
        ev.ActionReverted(),
        ev.UserUtteranceReverted(),
        ev.ConversationPaused(),
        ev.ConversationResumed(),
        ev.FollowupAction("action_x"),
        ev.StoryExported(),
        ev.SessionStarted(),
        ev.LoopInterrupted(True),
        ev.ActionExecutionRejected("action_x"),
        ev.EntitiesAdded([{"entity": "x", "value": "y"}]),
        ev.DefinePrevUserUtteredFeaturization(False),
        ev.AgentUttered("hi"),
    ]
    events = [event.as_dict() for event in samples]
    events += [{"event": "form", "name": "f"}, {"event": "form_validation", "validate": False}]
    others = [None, 1, 1.5, "text", True, [], {}, [1], {"a": 1}]
    rng = random.Random(7)
    answers = [{}, {"events": []}, {"responses": []}, {"events": events, "responses": [{"text": "x"}]}]
    answers += [{"events": [event]} for event in events]
    for event in events:
        for key in event:
            answers.append({"events": [{k: v for k, v in event.items() if k != key}]})
            for other in others:
                answers.append({"events": [{**event, key: other}]})
    answers += [{"events": [event, rng.choice(others)]} for event in events]
    answers += [{"events": other} for other in others] + [{"responses": other} for other in others]
    answers += [{"responses": [other]} for other in others] + others + [{"events": [{"event": ["user"]}]}]
    return answers


def test_a_valid_answer_is_accepted_without_the_whole_schema_exactly_when_the_schema_accepts_it():
    """The quick check (each event against its own branch) agrees with the
    whole schema on every answer here: it never accepts one the schema would
    refuse, and it accepts every valid one, so the whole schema is not needed
    for them."""
    import rasa.core.actions.action as action
    from jsonschema import validators

    from bot.rasa_ext import patches

    schema = action.RemoteAction.action_response_format_spec()
    cls = validators.validator_for(schema)
    whole, quick = cls(schema).is_valid, patches._quick_validity(schema, cls)
    answers = _answers_to_validate()
    verdicts = [(quick(answer), whole(answer)) for answer in answers]
    assert [v for v in verdicts if v[0] != v[1]] == []
    assert sum(w for _, w in verdicts) > 40 and sum(not w for _, w in verdicts) > 200  # both kinds tried
    # A schema it was not written for: always the whole schema.
    assert patches._quick_validity({"type": "object"}, cls)({}) is False
    branches = schema["properties"]["events"]["items"]["oneOf"]
    twice = json.loads(json.dumps(schema))
    twice["properties"]["events"]["items"]["oneOf"] = [*branches, branches[0]]
    assert patches._quick_validity(twice, cls)({"events": []}) is False


def test_the_action_server_is_sent_everything_but_the_responses():
    import rasa.core.actions.action as action
    from rasa.utils.endpoints import EndpointConfig


    with rasa_patched(action.RemoteAction, "_action_call_format") as (original, patched):
        domain = Domain.load(str(PROJECT_ROOT / "domain.yml"))
        tracker = DialogueStateTracker.from_events(
            "someone", [UserUttered("hi", {"name": "greet"}), SlotSet("full_name", "Ann")], domain.slots
        )
        remote = action.RemoteAction("validate_referral_form", EndpointConfig("http://127.0.0.1:1/webhook"))
        theirs, ours = original(remote, tracker, domain), patched(remote, tracker, domain)
        assert theirs["domain"]["responses"] and "responses" not in ours["domain"]
        assert ours["domain"] == {k: v for k, v in theirs["domain"].items() if k != "responses"}
        assert {k: v for k, v in ours.items() if k != "domain"} == {
            k: v for k, v in theirs.items() if k != "domain"
        }
        assert ours["domain"]["forms"] and ours["domain"]["slots"]  # what rasa-sdk reads
        assert patched(remote, tracker, domain)["domain"] is ours["domain"]  # built once per domain
        other = Domain.from_dict({"responses": {"utter_x": [{"text": "x"}]}, "intents": ["greet"]})
        assert "responses" not in patched(remote, tracker, other)["domain"]
        assert patched(remote, tracker, other)["domain"]["intents"] == ["greet"]
        # With a selective domain and an action that does not ask for it, no domain, as before.
        selective = action.RemoteAction(
            "action_x", EndpointConfig("http://127.0.0.1:1/webhook", enable_selective_domain=True)
        )
        assert "domain" not in patched(selective, tracker, domain) and "domain" not in original(
            selective, tracker, domain
        )


def test_applied_events_walked_on_are_the_ones_rasa_finds_walking_from_the_start():
    """Random conversations of every event applied_events treats differently
    (loops and rejections, reverts, restarts, new loop names mid-way), asked
    after every event, copied mid-way, replaced and capped: the same events,
    in the same order, every time."""
    import copy
    import random
    from collections import deque

    import rasa.shared.core.events as ev
    from rasa.shared.core.trackers import DialogueStateTracker


    cls = DialogueStateTracker
    palette = [
        lambda: ev.UserUttered("hi", {"name": "inform"}),
        lambda: ev.ActionExecuted("action_listen"),
        lambda: ev.ActionExecuted("referral_form"),
        lambda: ev.ActionExecuted("contact_form"),
        lambda: ev.ActionExecuted("late_form"),
        lambda: ev.ActionExecuted("utter_ask_name"),
        lambda: ev.ActiveLoop("referral_form"),
        lambda: ev.ActiveLoop("contact_form"),
        lambda: ev.ActiveLoop(None),
        lambda: ev.ActiveLoop("late_form"),  # a loop name first seen late
        lambda: ev.ActionExecutionRejected("referral_form"),
        lambda: ev.SlotSet("full_name", "Ann"),
        lambda: ev.BotUttered("hello"),
        lambda: ev.DefinePrevUserUtteredFeaturization(False),
        lambda: ev.ActionReverted(),
        lambda: ev.UserUtteranceReverted(),
        lambda: ev.Restarted(),
        lambda: ev.SessionStarted(),
    ]
    weights = [8, 8, 10, 4, 2, 4, 3, 2, 2, 1, 2, 6, 3, 2, 1, 1, 0.3, 0.3]

    def same(tracker) -> bool:
        ours, theirs = tracker.applied_events(), original(tracker)
        return [id(e) for e in ours] == [id(e) for e in theirs]

    with rasa_patched(cls, "applied_events") as (original, _):
        rng = random.Random(7)
        checked = 0
        for _ in range(150):
            tracker = cls("someone", [], max_event_history=rng.choice([None, None, None, 12]))
            for _ in range(rng.randint(5, 120)):
                tracker.update(rng.choices(palette, weights)[0]())
                if rng.random() < 0.5:
                    assert same(tracker)
                    checked += 1
                if rng.random() < 0.03:
                    tracker = copy.deepcopy(tracker)
                    assert same(tracker)
                if rng.random() < 0.02:  # the events replaced, as recreate_from_dialogue does
                    tracker.events = deque(list(tracker.events)[: rng.randint(0, len(tracker.events))])
                    assert same(tracker)
            mine = tracker.applied_events()
            mine.append(ev.Restarted())  # a caller's list is its own
            assert same(tracker)
        assert checked > 2000


def test_events_are_resolved_by_name_exactly_as_rasa_resolves_them():
    import pytest
    import rasa.shared.core.events as events
    import rasa.shared.utils.common


    with rasa_patched(events.Event, "resolve_by_type") as (original, patched):
        names = {cls.type_name for cls in rasa.shared.utils.common.all_subclasses(events.Event)}
        assert len(names) > 20
        for name in names:
            assert patched(name) is original(name)
        assert patched("topic") is original("topic") is None
        assert patched("no_such_event", events.UserUttered) is events.UserUttered
        with pytest.raises(ValueError, match="Unknown event name 'no_such_event'"):
            patched("no_such_event")
        with pytest.raises(ValueError, match="Unknown event name 'no_such_event'"):
            original("no_such_event")

        class LaterEvent(events.ActionExecuted):  # imported after the patch was installed
            type_name = "later_event_for_this_test"

        assert patched("later_event_for_this_test") is LaterEvent is original("later_event_for_this_test")
        # Whole events read back as Rasa reads them, from instances too.
        stored = {"event": "user", "text": "hello", "parse_data": {"intent": {"name": "greet"}}}
        assert events.Event.from_parameters(stored) == events.UserUttered("hello", {"name": "greet"})
        assert events.UserUttered("x").resolve_by_type("bot") is events.BotUttered


def test_rasa_loads_and_runs_its_graph_without_jax():
    """TensorFlow imports JAX when it is installed (it is, as TensorFlow's
    dependency); the Rasa server leaves it out, and Rasa's agent, policies and
    TensorFlow itself still import."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from bot.rasa_ext.__main__ import leave_out_jax\n"
        "leave_out_jax()\n"
        "import rasa.core.agent, rasa.core.policies.rule_policy, tensorflow\n"
        "assert sys.modules['tensorflow.lite.python.util']._xla_computation is None\n"
        "assert not [m for m, v in sys.modules.items() if m.startswith('jax') and v is not None]\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("ok")
    # Without it, JAX is there to be imported: the test above is not empty.
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, rasa.core.agent; "
            "print(sys.modules['tensorflow.lite.python.util']._xla_computation is None)",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.strip().endswith("False"), done.stderr[-2000:]


def test_json_written_and_read_with_ujson_is_what_json_writes_and_reads():
    import math
    import random

    from bot.rasa_ext.patches import json_dumps, json_loads

    rng = random.Random(3)
    values = [rng.random() * 10 ** rng.randint(-300, 300) for _ in range(5000)]
    values += [rng.getrandbits(63), 2**70, -(2**70), 1.7e9 + rng.random(), 5e-324, -0.0, True, None]
    event = {
        "event": "user",
        "text": "Ann/Smith “quoted” é 😀 \n\t\\",
        "parse_data": {"intent": {"name": "inform", "confidence": 0.912345678}, "entities": []},
        "timestamp": 1733338383.123456,
    }
    for value in [*values, event, [event, {"1": [1, 2.5, "x"]}]]:
        assert json.loads(json_dumps(value)) == value
        assert json_loads(json.dumps(value)) == json.loads(json.dumps(value))
        assert type(json_loads(json.dumps(value))) is type(value)
    # Where ujson refuses, json's own answer.
    assert json_loads('"\\ud800"') == json.loads('"\\ud800"')
    assert math.isnan(json_loads("NaN")) and json_dumps(float("inf")) == json.dumps(float("inf"))
    assert json_loads(str(2**80)) == 2**80
    with pytest.raises(TypeError):
        json_dumps({"x": object()})
    with pytest.raises(ValueError):
        json_loads("{not json")


@asynccontextmanager
async def local_webhook(handler):
    """An aiohttp server on a free loopback port answering POST /webhook with ``handler``."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/webhook", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]
    finally:
        await runner.cleanup()


def test_rasa_posts_to_the_action_server_with_the_patched_session():
    import asyncio

    import rasa.utils.endpoints as endpoints
    from aiohttp import web

    from bot.rasa_ext import patches

    received = []

    async def webhook(request):
        received.append((await request.text(), request.headers.get("Content-Type"), request.headers.get("X")))
        return web.json_response({"events": [], "responses": [{"text": "a/b é"}]})

    async def main():
        async with local_webhook(webhook) as port:
            config = endpoints.EndpointConfig(f"http://127.0.0.1:{port}/webhook", headers={"X": "y"})
            body = {"next_action": "validate_referral_form", "tracker": {"events": [{"text": "Ann/é 😀"}]}}
            answer = await config.request(json=body, method="post")
            session = config.session()
            timeout = session.timeout.total
            assert session._json_serialize is patches.json_dumps
            await session.close()
            return body, answer, timeout

    with rasa_patched(endpoints.EndpointConfig, "session"):
        body, answer, timeout = asyncio.run(main())
        assert answer == {"events": [], "responses": [{"text": "a/b é"}]}
        text, content_type, header = received[0]
        assert json.loads(text) == body and content_type == "application/json" and header == "y"
        assert timeout == endpoints.DEFAULT_REQUEST_TIMEOUT


def test_calls_to_one_endpoint_share_a_session_and_its_open_connections(monkeypatch):
    import asyncio

    import rasa.utils.endpoints as endpoints
    from aiohttp import web

    from bot.rasa_ext import patches

    peers = []

    async def webhook(request):
        peers.append(request.transport.get_extra_info("peername")[1])
        if request.query.get("fail"):
            return web.Response(status=409, text="busy")
        if request.query.get("plain"):
            return web.Response(text="not json")
        return web.json_response({"got": await request.json()})

    async def main():
        async with local_webhook(webhook) as port:
            config = endpoints.EndpointConfig(f"http://127.0.0.1:{port}/webhook", headers={"X": "y"})
            answers = [await config.request(json={"n": n}, method="post") for n in range(3)]
            answers += await asyncio.gather(*(config.request(json={"n": n}) for n in range(3, 6)))
            with pytest.raises(endpoints.ClientResponseError) as failed:
                await config.request(json={}, params={"fail": "1"})
            plain = await config.request(json={}, params={"plain": "1"})
            session = config._referral_session[1]
            await asyncio.sleep(patches.KEEP_ALIVE + 0.3)  # idle longer than a connection is kept
            await config.request(json={"n": 6})
            same = config._referral_session[1] is session
            await patches.close_sessions()
            return answers, failed.value.status, plain, same, session.closed

    monkeypatch.setattr(patches, "KEEP_ALIVE", 0.2)
    with rasa_patched(endpoints.EndpointConfig, "request"):
        answers, status, plain, same, closed = asyncio.run(main())
    assert answers == [{"got": {"n": n}} for n in range(6)]
    assert status == 409 and plain is None
    assert same and closed  # one session for the endpoint, closed when asked
    assert peers[1] == peers[0] == peers[2]  # one after another: one connection, kept open
    assert len(set(peers[:6])) <= 3  # three at once: a connection each at most
    assert peers[-1] not in peers[:-1]  # idle past the limit: a new connection, never a stale one


def test_patches_can_be_switched_off_by_name():
    from bot.rasa_ext import patches

    assert patches.switched_off({}) == set()
    assert patches.switched_off({"RASA_PATCHES_OFF": " applied_events, session ,nonsense"}) == {
        "rasa.shared.core.trackers.DialogueStateTracker.applied_events",
        "rasa.utils.endpoints.EndpointConfig.session",
    }


def test_a_slot_copies_as_copy_copy_did_without_it():
    import copy

    from rasa.shared.core import slots

    from bot.rasa_ext import patches

    long_way = lambda slot: copy._reconstruct(slot, None, *slot.__reduce_ex__(4))  # noqa: E731
    patches.install()
    assert vars(slots.Slot)["__copy__"] is patches._copy_slot
    assert patches.install() == []  # once
    domain = Domain.load(str(PROJECT_ROOT / "domain.yml"))
    made = [*domain.slots, slots.ListSlot("l", [], initial_value=[1]), slots.FloatSlot("f", [], max_value=9)]
    made += [slots.AnySlot("a", [], initial_value={"x": [1]}), slots.BooleanSlot("b", [])]
    for slot in made:
        slot.value = slot.initial_value if slot.initial_value is not None else "set"
        ours, theirs = copy.copy(slot), long_way(slot)
        assert type(ours) is type(theirs) is type(slot) and ours is not slot
        assert vars(ours) == vars(theirs) == vars(slot)
        assert all(vars(ours)[k] is vars(slot)[k] for k in vars(slot))  # shallow, as before

    class Pickled(slots.TextSlot):
        def __getstate__(self):
            return {**self.__dict__, "_value": "from getstate"}

    odd = Pickled("p", [])
    assert copy.copy(odd).value == "from getstate" == long_way(odd).value  # the long way, as before
    assert patches._copies_plainly(slots.TextSlot) and not patches._copies_plainly(Pickled)


def test_rule_applicability_with_kept_states_is_rasas():
    """Rules and conversation states made from a small vocabulary, so that
    many rules match, many do not, and some are conversation starters: the
    patched test answers as Rasa's own for every rule, turn and state."""
    import random

    from rasa.core.policies.rule_policy import RulePolicy

    rng = random.Random(3)
    actions = [None, "action_listen", "referral_form", "utter_greet", "action_crisis"]
    intents = [None, "inform", "greet", "crisis", "deny"]

    def state() -> dict:
        made = {}
        if (action := rng.choice(actions)) is not None:
            made["prev_action"] = {"action_name": action}
        if (intent := rng.choice(intents)) is not None:
            made["user"] = {"intent": intent}
        if rng.random() < 0.4:
            made["active_loop"] = {"name": rng.choice(["referral_form", "should_not_be_set"])}
        if rng.random() < 0.3:
            made["slots"] = {"consent": rng.choice([(1.0,), [1.0], "should_not_be_set"])}
        return made

    rules = {json.dumps([state() for _ in range(rng.randint(1, 4))]): "a" for _ in range(300)}
    conversations = [[state() for _ in range(rng.randint(1, 8))] for _ in range(150)]
    conversations += [json.loads(key) for key in list(rules)[:40]]  # a rule's own states match it
    policy = RulePolicy.__new__(RulePolicy)  # the test reads no configuration
    with rasa_patched(RulePolicy, "_is_rule_applicable") as (original, patched):
        found = []
        for states in conversations:
            for key in rules:
                for turn, current in enumerate(reversed(states)):
                    assert patched(policy, key, turn, current) == original(policy, key, turn, current)
            found.append(policy._get_possible_keys(rules, states))
        RulePolicy._is_rule_applicable = original
        assert found == [policy._get_possible_keys(rules, states) for states in conversations]
    assert sum(map(len, found)) >= 40  # matches were found, not only refusals


def test_a_preloaded_model_is_taken_once_by_the_next_processor_for_its_file(trained_model):
    """bot/rasa_ext/forks.py loads the model before forking; each server's
    MessageProcessor takes that load instead of loading again, and any later
    load is Rasa's own."""
    from rasa.core.processor import MessageProcessor

    from bot.rasa_ext import patches

    before = vars(MessageProcessor)["_load_model"]  # as it is now: patched, if another test installed
    try:
        patches.install()
        assert MessageProcessor._load_model is not patches._original(MessageProcessor._load_model)
        patches.preload(str(trained_model))
        loaded = patches._preloaded[os.path.realpath(str(trained_model))]
        taken = MessageProcessor._load_model(trained_model)  # a Path, as Rasa may pass it
        assert taken is loaded
        assert taken[0] == trained_model.name and taken[1].domain is not None
        again = MessageProcessor._load_model(str(trained_model))
        assert again is not loaded and again[0] == trained_model.name  # loaded afresh
    finally:
        patches._preloaded.clear()
        MessageProcessor._load_model = before
