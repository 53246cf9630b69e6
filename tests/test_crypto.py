"""Encryption at rest: keys, the encrypted columns, rotation and the migration."""

import datetime as dt
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet
from test_store import submission

from bot import crypto, keys, services
from bot.config import ConfigError, Settings
from bot.store.db import engine_for
from bot.store.migrate import upgrade
from bot.store.models import ENCRYPTED_COLUMNS
from bot.store.unit_of_work import UnitOfWork

NAME = "Zebedee Quillfeather"
STORY = "the lighthouse keeper's accordion keeps me awake"


@pytest.fixture
def use_keys(monkeypatch):
    """Set REFERRAL_ENCRYPTION_KEYS for this test; the keyring is rebuilt on each call."""

    def use(*keys: str) -> None:
        monkeypatch.setenv(crypto.KEYS_VARIABLE, ",".join(keys))
        crypto.reset()

    yield use
    crypto.reset()


def sentinel_submission(conversation_id="conv-1"):
    return submission(conversation_id, full_name=NAME, presenting_problem=STORY)


def raw_rows(url: str, table: str) -> list[dict]:
    with engine_for(url).connect() as connection:
        return [dict(r._mapping) for r in connection.execute(sa.text(f"SELECT * FROM {table}"))]


def test_the_first_key_encrypts_and_every_key_decrypts():
    old, new = Fernet.generate_key(), Fernet.generate_key()
    token = crypto.Keyring([old]).encrypt(b"secret")
    both = crypto.Keyring([new, old])
    assert both.decrypt(token) == b"secret"
    rotated = both.rotate(token)
    assert crypto.Keyring([new]).decrypt(rotated) == b"secret"
    with pytest.raises(crypto.DecryptError):
        crypto.Keyring([new]).decrypt(token)
    with pytest.raises(crypto.DecryptError):
        both.decrypt("not a token")


def test_a_bad_key_is_named_by_its_position():
    good = Fernet.generate_key().decode()
    with pytest.raises(ValueError, match="encryption key 2 is not a Fernet key"):
        crypto.parse_keys(f"{good}, short")
    assert crypto.parse_keys(f" {good} ,\n") == [good.encode()]


def test_development_generates_one_private_key_and_warns(tmp_path, caplog):
    settings = Settings.from_env({"REFERRAL_VAR_DIR": str(tmp_path)})
    first = settings.encryption_keys({})
    assert "generated a development value" in caplog.text
    path = tmp_path / "encryption_keys"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert settings.encryption_keys({}) == first  # read back, not made again


@pytest.mark.parametrize("missing", ["REFERRAL_ENCRYPTION_KEYS", "SESSION_SECRET", "PERSON_KEY_SECRET"])
def test_production_refuses_to_start_without_each_secret(tmp_path, missing):
    env = {
        "REFERRAL_VAR_DIR": str(tmp_path),
        "REFERRAL_PROFILE": "production",
        "REFERRAL_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "SESSION_SECRET": "s" * 32,
        "PERSON_KEY_SECRET": "p" * 32,
    }
    del env[missing]
    settings = Settings.from_env(env)
    with pytest.raises(ConfigError, match=f"{missing} must be set in production"):
        settings.encryption_keys(env)
        settings.session_secret(env)
        settings.person_key_secret(env)
    assert not list(tmp_path.iterdir())  # nothing generated


def test_an_unknown_profile_is_refused():
    with pytest.raises(ConfigError, match="REFERRAL_PROFILE"):
        Settings.from_env({"REFERRAL_PROFILE": "prod"})


def test_personal_and_health_values_are_stored_encrypted(database_url):
    result = services.submit_referral(UnitOfWork(database_url), sentinel_submission())
    row = raw_rows(database_url, "referrals")[0]
    for column in ENCRYPTED_COLUMNS["referrals"]:
        assert row[column] is None or row[column].startswith(crypto.TOKEN_PREFIX), column
    assert row["full_name"] and row["presenting_problem"] and row["date_of_birth"]
    for event in raw_rows(database_url, "referral_events"):
        assert event["detail"].startswith(crypto.TOKEN_PREFIX)
    # What triage sorts and filters on stays in clear.
    assert row["reference"] == result.reference and row["urgency_band"] == result.band
    record = services.find_referral(UnitOfWork(database_url), result.reference)
    assert (record["full_name"], record["presenting_problem"]) == (NAME, STORY)
    assert record["date_of_birth"] == "1990-03-14" and record["safe_to_leave_message"] is True
    if database_url.startswith("sqlite"):
        raw = b"".join(p.read_bytes() for p in Path(database_url[10:]).parent.glob("referrals.db*"))
        assert NAME.encode() not in raw and b"accordion" not in raw


def test_rotation_moves_every_value_to_the_new_key(database_url, use_keys):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    use_keys(old)
    result = services.submit_referral(UnitOfWork(database_url), sentinel_submission())
    use_keys(new, old)
    counts = keys.rotate_store(database_url)
    assert counts["referrals"] >= 3 and counts["referral_events"] == 2
    use_keys(new)  # the old key is gone
    record = services.find_referral(UnitOfWork(database_url), result.reference)
    assert record["full_name"] == NAME


def test_the_cli_rotates_and_says_so(tmp_path, monkeypatch, use_keys, capsys):
    from bot import cli

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REFERRAL_VAR_DIR", str(tmp_path))  # its own (empty) tracker store
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    use_keys(old)
    services.submit_referral(UnitOfWork(url), sentinel_submission())
    use_keys(new)  # the old key was dropped too soon
    assert cli.main(["keys", "rotate"]) == 1
    assert "could not be decrypted" in capsys.readouterr().err
    use_keys(new, old)
    assert cli.main(["keys", "rotate"]) == 0
    out = capsys.readouterr().out
    assert "referrals:" in out and "chat events: 0 values" in out


def test_keys_new_in_development_puts_the_new_key_first(tmp_path, monkeypatch, capsys):
    from bot import cli

    monkeypatch.setenv("REFERRAL_VAR_DIR", str(tmp_path))
    monkeypatch.delenv(crypto.KEYS_VARIABLE)
    try:
        first = Settings.from_env().encryption_keys()
        assert cli.main(["keys", "new"]) == 0
        after = Settings.from_env().encryption_keys()
    finally:
        crypto.reset()
    assert len(after) == 2 and after[1:] == first
    assert "Added a new first key" in capsys.readouterr().out


def test_the_migration_encrypts_existing_rows_and_downgrade_restores_them(database_url):
    """Rows stored before encryption (revision 0008) are encrypted in place, and back."""
    from alembic import command

    from bot.store.migrate import alembic_config

    command.downgrade(alembic_config(database_url), "0008")
    with engine_for(database_url).begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO referrals (reference, conversation_id, referrer_type, channel, status, "
                "submitted_at, dataset_version, dataset_complete, declined_fields, skipped_fields, "
                "unknown_fields, crisis_flag, needs_clarification, missing_fields, triage_reasons, "
                "repeat_referral, created_at, updated_at, full_name, date_of_birth, phq9_score) "
                "VALUES ('CMH-AAAA-BBBB', 'c', 'self', 'web_chat', 'submitted', :now, 1, :yes, '[]', "
                "'[]', '[]', :no, :no, '[]', '[\"a reason\"]', :no, :now, :now, :name, :born, 7)"
            ),
            {
                "now": dt.datetime(2026, 11, 1),
                "yes": True,
                "no": False,
                "name": NAME,
                "born": dt.date(1990, 3, 14),
            },
        )
    upgrade(database_url)
    row = raw_rows(database_url, "referrals")[0]
    assert row["full_name"].startswith(crypto.TOKEN_PREFIX)
    record = services.find_referral(UnitOfWork(database_url), "CMH-AAAA-BBBB")
    assert (record["full_name"], record["date_of_birth"], record["phq9_score"]) == (NAME, "1990-03-14", 7)
    command.downgrade(alembic_config(database_url), "0008")
    row = raw_rows(database_url, "referrals")[0]
    assert row["full_name"] == NAME and row["phq9_score"] == 7
    assert str(row["date_of_birth"]) == "1990-03-14"
    upgrade(database_url)


def test_crisis_events_are_sealed_in_place_and_downgrade_restores_them(database_url):
    """What kind of crisis was shown (level, subject, categories, resources) is health information."""
    from alembic import command

    from bot.store.migrate import alembic_config

    command.downgrade(alembic_config(database_url), "0010")
    with engine_for(database_url).begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO crisis_events (conversation_id, at, level, subject, categories, resources) "
                "VALUES ('c', :now, 'imminent', 'self', '[\"suicidal_ideation\"]', '[\"988\"]')"
            ),
            {"now": dt.datetime(2026, 11, 1)},
        )
    upgrade(database_url)
    row = raw_rows(database_url, "crisis_events")[0]
    for column in ("level", "subject", "categories", "resources"):
        assert row[column].startswith(crypto.TOKEN_PREFIX), column
    [event] = services.crisis_events(UnitOfWork(database_url), "c")
    assert (event["level"], event["subject"], event["categories"]) == (
        "imminent",
        "self",
        ["suicidal_ideation"],
    )
    command.downgrade(alembic_config(database_url), "0010")
    row = raw_rows(database_url, "crisis_events")[0]
    assert row["level"] == "imminent" and row["subject"] == "self"
    assert "suicidal_ideation" in str(row["categories"])
    upgrade(database_url)


def test_no_crisis_kind_is_readable_in_the_database_file(tmp_path):
    from bot.store.migrate import upgrade as migrate

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    migrate(url)
    services.record_crisis_event(
        UnitOfWork(url), "c", "imminent", "other", ["child_at_risk"], [{"name": "Childhelp"}]
    )
    raw = (tmp_path / "referrals.db").read_bytes()
    for clear in (b"imminent", b"child_at_risk", b"Childhelp"):
        assert clear not in raw, clear
