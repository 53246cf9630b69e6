"""The production profile, run as `make run-production` runs it.

Two Rasa instances behind the proxy (bot/proxy.py), sharing a PostgreSQL
tracker store and a Redis lock store; the referral store on its own
PostgreSQL database; every secret from the environment. Conversations whose
turns alternate between the instances must be processed in order, and every
referral stored once. Then the faults that need PostgreSQL: the referral
database going away during submission, and the backup-and-restore drill from
the README.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import urllib.request
from pathlib import Path

import pytest
import yaml
from chat_client import ChatClient, InstanceChat, play
from conftest import Stack, _redis_url, drop_postgres_database, fresh_postgres_database, production_env
from sqlalchemy import create_engine, text

from bot import crypto

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]
PERSONA = yaml.safe_load((Path(__file__).parent / "data" / "personas.yml").read_text())["self_referral"]
DATABASES = ("referral_e2e_referrals", "referral_e2e_tracker", "referral_e2e_restored")


@pytest.fixture(scope="module")
def production(trained_model, tmp_path_factory):
    redis = _redis_url()
    if redis is None:
        pytest.skip("TEST_REDIS_URL not set")
    env = production_env(DATABASES[:2], redis)
    stack = Stack(tmp_path_factory.mktemp("production"), env)
    migrate = stack.cli("migrate")
    assert migrate.returncode == 0, migrate.stderr
    stack.start()
    stack.instances = [f"http://127.0.0.1:{port}" for port in env["RASA_INSTANCE_PORTS"].split(",")]
    stack.token = env["GATEWAY_TOKEN"]
    stack.keyring = crypto.Keyring(crypto.parse_keys(env[crypto.KEYS_VARIABLE]))
    yield stack
    stack.stop()
    for name in DATABASES:
        drop_postgres_database(name)


def exported(stack) -> list[dict]:
    result = stack.cli("referrals", "export", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def stored_turns(stack, sender: str) -> list[tuple[str, str]]:
    """The conversation as the tracker store holds it: (type, user text or action name)."""
    engine = create_engine(stack.env["TRACKER_URL"], future=True)
    with engine.connect() as connection:
        rows = connection.execute(
            text("SELECT type_name, data FROM events WHERE sender_id = :s ORDER BY id"), {"s": sender}
        ).all()
    engine.dispose()
    events = [json.loads(stack.keyring.decrypt(data)) for _, data in rows]
    return [(e["event"], e.get("text") if e["event"] == "user" else e.get("name")) for e in events]


def assert_processed_in_order(stack, chat: InstanceChat) -> None:
    """Every message is stored once, in the order sent, and each turn ends
    (action_listen) before the next message is taken."""
    turns = stored_turns(stack, chat.sender)
    users = [i for i, (kind, _) in enumerate(turns) if kind == "user"]
    assert [turns[i][1] for i in users] == [message for _, message in chat.sent]
    for before, after in zip(users, users[1:], strict=False):
        assert turns[after - 1] == ("action", "action_listen"), turns[before:after]
        assert ("action", "action_listen") not in turns[before + 1 : after - 1]


def test_turns_alternate_between_instances_in_order_and_each_referral_is_stored_once(production):
    chats = [InstanceChat(production.instances, production.token) for _ in range(3)]
    references: dict[str, str] = {}
    failures: list[BaseException] = []

    def converse(chat: InstanceChat) -> None:
        try:
            play(chat, PERSONA["answers"])
            references[chat.sender] = chat.say("send").submitted["reference"]
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=converse, args=(chat,)) for chat in chats]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    stored = [r["reference"] for r in exported(production)]
    for chat in chats:
        assert {url for url, _ in chat.sent} == set(production.instances)  # both instances took turns
        assert all(
            a[0] != b[0] for a, b in zip(chat.sent, chat.sent[1:], strict=False)
        )  # strictly alternating
        assert_processed_in_order(production, chat)
        assert stored.count(references[chat.sender]) == 1


def test_two_messages_at_once_on_two_instances_wait_for_each_other(production):
    chat = InstanceChat(production.instances, production.token)
    play(chat, PERSONA["answers"])
    replies = []
    threads = [
        threading.Thread(target=lambda url=url: replies.append(chat.send("send", url)))
        for url in production.instances
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The Redis lock made one instance wait: one referral, and the other was told so.
    assert [r.status for r in replies] == [200, 200]
    references = {r.submitted["reference"] for r in replies if r.submitted}
    assert len(references) == 1
    assert sum("already been sent" in " ".join(r.texts) for r in replies) == 1, [
        (r.status, r.texts, r.submitted) for r in replies
    ]
    assert [r["reference"] for r in exported(production)].count(references.pop()) == 1
    users = [message for kind, message in stored_turns(production, chat.sender) if kind == "user"]
    assert users.count("send") == 2


def test_the_web_chat_goes_through_the_proxy_to_both_instances(production):
    client = ChatClient(production.web_url)
    play(client, PERSONA["answers"])
    reference = client.say("send").submitted["reference"]
    assert [r["reference"] for r in exported(production)].count(reference) == 1
    with urllib.request.urlopen(production.rasa_url + "/proxy/status", timeout=5) as response:
        upstreams = json.loads(response.read())["upstreams"]
    assert [u["name"] for u in upstreams] == ["rasa-1", "rasa-2"]
    assert all(u["requests"] > 10 for u in upstreams)
    with urllib.request.urlopen(production.web_url + "/healthz", timeout=5) as response:
        assert json.loads(response.read())["status"] == "ok"


def _referral_database(production, allow: bool) -> None:
    """Stop (or start again) every connection to the referral database, as a
    database going down does, without touching the conversation store."""
    from sqlalchemy.engine import make_url

    name = make_url(production.env["DATABASE_URL"]).database
    admin = create_engine(production.env["TRACKER_URL"], future=True, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allow).lower()}'))
        if not allow:
            connection.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
            )
    admin.dispose()


def test_the_referral_database_going_away_during_submission_loses_nothing(production):
    client = ChatClient(production.web_url)
    play(client, PERSONA["answers"])
    before = len(exported(production))
    _referral_database(production, allow=False)
    try:
        failed = client.say("send")
    finally:
        _referral_database(production, allow=True)
    assert failed.submitted is None
    said = " ".join(failed.texts)
    assert "988" in said and "911" in said  # told, with where to get help now
    assert failed.question["field"] == "review"  # still at the review, every answer kept

    sent = client.say("send")
    reference = sent.submitted["reference"]
    records = exported(production)
    assert len(records) == before + 1
    record = next(r for r in records if r["reference"] == reference)
    assert record["full_name"] == PERSONA["answers"]["full_name"]


def test_backup_and_restore_drill_reads_every_referral_back(production, tmp_path):
    """The README's drill: pg_dump the referral database, restore it into a fresh
    one, and read every referral back with the same keys."""
    assert shutil.which("pg_dump") and shutil.which("pg_restore"), "PostgreSQL client tools are needed"
    client = ChatClient(production.web_url)
    play(client, PERSONA["answers"])
    client.say("send")
    original = exported(production)
    assert original

    backup = tmp_path / "referrals.dump"
    subprocess.run(
        ["pg_dump", "--format=custom", f"--file={backup}", _libpq(production.env["DATABASE_URL"])], check=True
    )
    restored_url = fresh_postgres_database(DATABASES[2])
    subprocess.run(
        ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={_libpq(restored_url)}", str(backup)],
        check=True,
    )
    restored = Stack(production.var_dir, {**production.env, "DATABASE_URL": restored_url})
    assert exported(restored) == original
    shown = restored.cli("referrals", "show", original[0]["reference"])
    assert shown.returncode == 0 and PERSONA["answers"]["full_name"] in shown.stdout


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as pg_dump and pg_restore take it (no driver name)."""
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)
