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
    assert json.loads(capsys.readouterr().out) == {"submitted": 0, "idle": 0, "events": 0}
