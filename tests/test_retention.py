"""Chat transcripts are purged on time, and the rows are really gone."""

import datetime as dt
import json

import pytest
from rasa.shared.core.domain import Domain
from rasa.shared.core.events import UserUttered
from rasa.shared.core.trackers import DialogueStateTracker
from test_store import submission

from bot import resume, retention, services, transcripts
from bot.config import PROJECT_ROOT
from bot.rasa_ext.tracker_store import EncryptedSQLTrackerStore
from bot.store.unit_of_work import UnitOfWork

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)


@pytest.fixture(scope="module")
def domain():
    return Domain.load(str(PROJECT_ROOT / "domain.yml"))


async def chat(store, domain, sender: str, at: dt.datetime) -> None:
    event = UserUttered("hello", timestamp=at.timestamp())
    await store.save(DialogueStateTracker.from_events(sender, [event], domain.slots))


@pytest.fixture
async def stores(database_url, tmp_path, domain):
    """A referral store and a tracker store (SQLite; PostgreSQL too when configured)."""
    tracker_url = database_url if database_url.startswith("postgresql") else f"sqlite:///{tmp_path / 't.db'}"
    tracker = EncryptedSQLTrackerStore(domain, url=tracker_url)
    with transcripts.engine(tracker_url).begin() as connection:
        connection.exec_driver_sql("DELETE FROM events")
        connection.exec_driver_sql("DELETE FROM conversation_tombstones")
    return database_url, tracker_url, tracker


def submitted_at(url: str, conversation: str, when: dt.datetime) -> None:
    services.submit_referral(UnitOfWork(url), submission(conversation))
    with UnitOfWork(url) as uow:
        uow.referrals.by_conversation(conversation).submitted_at = when
        uow.commit()


async def test_transcripts_go_on_time_and_no_sooner(stores, domain):
    url, tracker_url, tracker = stores
    await chat(tracker, domain, "sent-long-ago", NOW - 2 * DAY)
    submitted_at(url, "sent-long-ago", NOW - 25 * HOUR)
    await chat(tracker, domain, "sent-just-now", NOW - HOUR)
    submitted_at(url, "sent-just-now", NOW - HOUR)
    await chat(tracker, domain, "idle-8-days", NOW - 8 * DAY)
    await chat(tracker, domain, "idle-6-days", NOW - 6 * DAY)
    await chat(tracker, domain, "paused-8-days", NOW - 8 * DAY)
    resume.issue(UnitOfWork(url), "paused-8-days", b"k" * 32, days=30)  # its code still works

    purged = retention.purge(UnitOfWork(url), tracker_url, retention.Retention(), now=NOW)

    assert (purged.submitted, purged.idle, purged.events) == (1, 1, 2)
    assert set(transcripts.last_active(tracker_url)) == {"sent-just-now", "idle-6-days", "paused-8-days"}
    assert transcripts.count_events(tracker_url, "sent-long-ago") == 0
    # The referrals themselves stay: only the transcripts go.
    assert len(list(services.export_records(UnitOfWork(url)))) == 2


async def test_retention_is_configurable(stores, domain):
    url, tracker_url, tracker = stores
    await chat(tracker, domain, "idle-3-hours", NOW - 3 * HOUR)
    short = retention.Retention(after_submit=HOUR, idle=2 * HOUR)
    assert retention.purge(UnitOfWork(url), tracker_url, short, now=NOW).idle == 1


def test_the_settings_take_retention_from_the_environment():
    from bot.config import ConfigError, Settings

    got = Settings.from_env({"TRANSCRIPT_HOURS_AFTER_SUBMIT": "2", "TRANSCRIPT_IDLE_DAYS": "0.5"}).retention()
    assert (got.after_submit, got.idle) == (2 * HOUR, 12 * HOUR)
    with pytest.raises(ConfigError, match="TRANSCRIPT_IDLE_DAYS"):
        Settings.from_env({"TRANSCRIPT_IDLE_DAYS": "0"})


def test_purge_on_the_command_line(tmp_path, monkeypatch, capsys):
    from bot import cli
    from bot.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade(url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REFERRAL_VAR_DIR", str(tmp_path))
    assert cli.main(["purge"]) == 0
    assert json.loads(capsys.readouterr().out) == {"submitted": 0, "idle": 0, "events": 0, "codes": 0}


# ---------------------------------------------------------------- deletion that sticks


def turn(domain, sender: str, texts: list[str]) -> DialogueStateTracker:
    events = [UserUttered(t, timestamp=NOW.timestamp() + i) for i, t in enumerate(texts)]
    return DialogueStateTracker.from_events(sender, events, domain.slots)


async def test_a_turn_in_flight_during_a_delete_writes_nothing_back(stores, domain):
    url, tracker_url, tracker = stores
    await tracker.save(turn(domain, "deleted-mid-turn", ["hello", "my name"]))
    in_flight = await tracker.retrieve("deleted-mid-turn")  # Rasa has read the conversation...
    assert (
        transcripts.delete_conversation(tracker_url, "deleted-mid-turn") == 2
    )  # ...the person deletes it...
    in_flight.update(UserUttered("my date of birth", timestamp=NOW.timestamp() + 9))
    await tracker.save(in_flight)  # ...and the turn ends: Rasa saves the tracker it holds
    assert transcripts.count_events(tracker_url, "deleted-mid-turn") == 0
    assert await tracker.retrieve("deleted-mid-turn") is None
    await tracker.save(turn(domain, "someone-else", ["hello"]))  # other conversations are untouched
    assert transcripts.count_events(tracker_url, "someone-else") == 1


async def test_a_turn_in_flight_during_a_purge_writes_nothing_back(stores, domain):
    url, tracker_url, tracker = stores
    from bot.store.models import ResumeCode

    await chat(tracker, domain, "idle-for-ever", NOW - 8 * DAY)
    resume.issue(UnitOfWork(url), "idle-for-ever", b"k" * 32, days=1)
    with UnitOfWork(url) as uow:  # the code ran out a day before the purge
        uow.session.query(ResumeCode).filter_by(conversation_id="idle-for-ever").update(
            {"expires_at": NOW + DAY}
        )
        uow.commit()
    in_flight = await tracker.retrieve("idle-for-ever")
    purged = retention.purge(UnitOfWork(url), tracker_url, retention.Retention(), now=NOW + 2 * DAY)
    assert purged.idle == 1 and purged.codes == 1  # the code went with the transcript
    in_flight.update(UserUttered("I am back", timestamp=NOW.timestamp()))
    await tracker.save(in_flight)
    assert transcripts.count_events(tracker_url, "idle-for-ever") == 0


async def test_turns_racing_deletes_leave_nothing_behind(stores, domain):
    """Saves and deletes at the same moment, from two threads, many times over:
    whichever goes first, nothing of a deleted conversation is left."""
    import asyncio
    import threading

    url, tracker_url, tracker = stores
    for n in range(15):
        sender = f"race-{n}"
        await tracker.save(turn(domain, sender, ["hello"]))
        in_flight = turn(domain, sender, ["hello", "more", "and more"])
        start = threading.Barrier(2)

        def save(start=start, in_flight=in_flight):
            start.wait()
            asyncio.run(tracker.save(in_flight))

        def delete(start=start, sender=sender):
            start.wait()
            transcripts.delete_conversation(tracker_url, sender)

        threads = [threading.Thread(target=save), threading.Thread(target=delete)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert transcripts.count_events(tracker_url, sender) == 0, n


async def test_old_tombstones_are_forgotten_after_30_days(stores, domain):
    url, tracker_url, tracker = stores
    transcripts.delete_conversation(tracker_url, "long-gone")
    assert transcripts.forget_tombstones(tracker_url, now=NOW.timestamp()) == 0
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=31)
    assert transcripts.forget_tombstones(tracker_url, now=later.timestamp()) == 1


async def test_no_intent_action_or_slot_name_is_stored_in_clear(stores, domain):
    from rasa.shared.core.events import ActionExecuted, SlotSet
    from sqlalchemy import text

    url, tracker_url, tracker = stores
    events = [
        UserUttered("text", {"name": "crisis_imminent", "confidence": 1.0}, timestamp=NOW.timestamp()),
        ActionExecuted("action_crisis_response", timestamp=NOW.timestamp()),
        SlotSet("crisis_flag", True, timestamp=NOW.timestamp()),
        SlotSet("requested_slot", "full_name", timestamp=NOW.timestamp()),
    ]
    await tracker.save(DialogueStateTracker.from_events("named", events, domain.slots))
    with transcripts.engine(tracker_url).connect() as connection:
        rows = connection.execute(
            text("SELECT type_name, intent_name, action_name FROM events WHERE sender_id = 'named'")
        ).all()
    assert rows and all(intent is None and action is None for _, intent, action in rows)
    assert {t for t, _, _ in rows} == {"user", "action", "slot"}
    assert transcripts.last_steps(tracker_url)["named"][0] == "full_name"  # still read, from the sealed data
    back = await tracker.retrieve("named")
    assert back.latest_message.intent["name"] == "crisis_imminent" and back.get_slot("crisis_flag") is True
