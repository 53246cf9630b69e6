"""The crisis outbox (bot/outbox.py): no crisis event is lost while the store is down."""

import fcntl
import json

from test_store import submission
from test_triage import CRITERIA, routine

from bot import outbox, services
from bot.store.unit_of_work import UnitOfWork


def down(tmp_path) -> UnitOfWork:
    """A referral store that is not there: a SQLite file never migrated."""
    return UnitOfWork(f"sqlite:///{tmp_path / 'never-migrated.db'}")


def crisis(conversation="conv-1", level="crisis"):
    return outbox.event(conversation, level, "self", ["suicidal_ideation"], [{"name": "988"}], "en:test")


async def test_an_event_goes_straight_to_a_working_store(database_url, tmp_path):
    assert await outbox.record(UnitOfWork(database_url), tmp_path, crisis()) == outbox.STORED
    assert outbox.pending(tmp_path) == []
    [event] = services.crisis_events(UnitOfWork(database_url), "conv-1")
    assert event["level"] == "crisis" and event["categories"] == ["suicidal_ideation"]


async def test_with_the_store_down_the_event_waits_and_then_bands_the_referral(database_url, tmp_path):
    assert await outbox.record(down(tmp_path), tmp_path, crisis()) == outbox.QUEUED
    [waiting] = outbox.pending(tmp_path)
    assert waiting["conversation_id"] == "conv-1" and "text" not in waiting
    assert services.crisis_events(UnitOfWork(database_url), "conv-1") == []

    assert outbox.flush(UnitOfWork(database_url), tmp_path) == 1
    assert outbox.pending(tmp_path) == []
    result = services.submit_referral(
        UnitOfWork(database_url),
        services.Submission("conv-1", "self", routine(), criteria=CRITERIA, person_secret=b"k"),
    )
    assert result.band == "emergency"


async def test_a_crisis_after_submission_escalates_through_the_outbox(database_url, tmp_path):
    sent = services.submit_referral(UnitOfWork(database_url), submission("conv-2"))
    assert await outbox.record(down(tmp_path), tmp_path, crisis("conv-2")) == outbox.QUEUED
    outbox.flush(UnitOfWork(database_url), tmp_path)
    stored = services.find_referral(UnitOfWork(database_url), sent.reference)
    assert stored["crisis_flag"] is True and stored["urgency_band"] == "emergency"


def test_events_keep_their_order_and_time_and_a_failure_keeps_the_rest(database_url, tmp_path):
    first, second = crisis("a", "crisis"), crisis("b", "imminent")
    outbox.put(tmp_path, first)
    outbox.put(tmp_path, second)
    assert outbox.flush(down(tmp_path), tmp_path) == 0
    assert [e["id"] for e in outbox.pending(tmp_path)] == [first["id"], second["id"]]
    assert outbox.flush(UnitOfWork(database_url), tmp_path) == 2
    [a] = services.crisis_events(UnitOfWork(database_url), "a")
    assert a["at"] == first["at"]  # when it was shown, not when it was stored


def test_an_unreadable_line_is_set_aside_not_lost_and_blocks_nothing(database_url, tmp_path):
    outbox.put(tmp_path, crisis("a"))
    with open(outbox.path(tmp_path), "a") as handle:
        handle.write("{not json\n")
    outbox.put(tmp_path, crisis("b"))
    assert outbox.flush(UnitOfWork(database_url), tmp_path) == 2
    assert outbox.pending(tmp_path) == []
    assert (tmp_path / (outbox.OUTBOX_FILE + ".unreadable")).read_text() == "{not json\n"


def test_one_flusher_at_a_time_and_writers_are_not_held_up(database_url, tmp_path):
    outbox.put(tmp_path, crisis("a"))
    with open(tmp_path / (outbox.OUTBOX_FILE + ".flushing"), "a") as busy:
        fcntl.flock(busy, fcntl.LOCK_EX)
        assert outbox.flush(UnitOfWork(database_url), tmp_path) == 0  # skipped, not blocked
        outbox.put(tmp_path, crisis("b"))  # writing still works
        fcntl.flock(busy, fcntl.LOCK_UN)
    assert outbox.flush(UnitOfWork(database_url), tmp_path) == 2


def test_the_outbox_holds_nothing_readable(tmp_path):
    outbox.put(tmp_path, crisis())
    raw = outbox.path(tmp_path).read_text()
    line = json.loads(raw)
    assert set(line) == {"id", "sealed"}  # the event is sealed with the store's keys
    for clear in ("conv-1", "crisis", "suicidal", "self", "988"):
        assert clear not in raw.replace(line["sealed"], "")
        assert clear not in line["sealed"]
    [event] = outbox.pending(tmp_path)
    assert set(event) == {
        "id",
        "conversation_id",
        "level",
        "subject",
        "categories",
        "resources",
        "detector_version",
        "source",
        "at",
    }
