"""The production profile, run as `make run-production` runs it.

Two Rasa instances behind HAProxy (deploy/haproxy/haproxy.cfg), sharing a
PostgreSQL tracker store and a Redis lock store; the referral store on its
own PostgreSQL database; every secret from the environment. One
conversation stays on one instance; when that instance is stopped it moves,
and nothing is lost or sent twice; the runner starts the stopped instance
again. Two turns of one conversation on both instances at once wait for each
other (the lock). Then the faults that need PostgreSQL: the referral database
going away during submission, and the backup-and-restore drill from the
README.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from chat_client import BalancedChat, ChatClient, InstanceChat, play
from conftest import Stack, _redis_url, drop_postgres_database, fresh_postgres_database, production_env
from sqlalchemy import create_engine, text

from bot import crypto, haproxy, runner
from bot.config import Settings

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


def served(stack) -> dict[str, int]:
    """Turns each Rasa instance has had, from HAProxy's stats page (loopback)."""
    stats = haproxy.server_stats(Settings.from_env(stack.env))
    assert stats, "HAProxy's stats page could not be read"
    return {name: int(row["stot"]) for name, row in stats.items()}


def started_pids(stack) -> dict[str, int]:
    """Each child's pid, from what the runner printed when it started them."""
    found = re.findall(r"^started (\S+) \(pid (\d+)\)", "".join(stack.output), re.M)
    return {name: int(pid) for name, pid in found}


def runner_lines(stack) -> queue.Queue:
    """What the runner prints from now on, line by line (read in a thread)."""
    if not hasattr(stack, "lines"):
        stack.lines = queue.Queue()

        def read() -> None:
            for line in iter(stack.process.stdout.readline, ""):
                stack.output.append(line)
                stack.lines.put(line)

        threading.Thread(target=read, daemon=True).start()
    return stack.lines


def wait_for_line(lines: queue.Queue, pattern: str, seconds: float = 120) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if re.search(pattern, line):
            return line
    raise AssertionError(f"the runner never said {pattern!r}")


def test_each_conversation_stays_on_one_instance_in_order_and_each_referral_is_stored_once(production):
    chats = [BalancedChat(production.rasa_url, production.token) for _ in range(6)]
    references: dict[str, str] = {}
    failures: list[BaseException] = []

    def converse(chat: BalancedChat) -> None:
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
        instances = {instance for instance, _ in chat.sent}
        assert len(instances) == 1 and instances <= {"rasa-1", "rasa-2"}, chat.sent  # one instance throughout
        assert_processed_in_order(production, chat)
        assert stored.count(references[chat.sender]) == 1
    assert sum(served(production).values()) >= sum(len(c.sent) for c in chats)


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


def test_the_web_chat_keeps_a_conversation_on_one_instance_through_haproxy(production):
    before = served(production)
    client = ChatClient(production.web_url)
    play(client, PERSONA["answers"])
    reference = client.say("send").submitted["reference"]
    assert [r["reference"] for r in exported(production)].count(reference) == 1
    grew = {name: count - before[name] for name, count in served(production).items()}
    assert sorted(grew.values())[0] == 0 and sorted(grew.values())[1] > 20, grew  # all on one instance
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


def test_a_killed_instance_is_started_again_alone_while_its_conversations_move(production):
    """The runner restarts the one Rasa instance that died; HAProxy sends its
    conversation to the other meanwhile; nothing is lost or processed twice."""
    lines = runner_lines(production)
    chat = BalancedChat(production.rasa_url, production.token)
    reply = chat.start()
    for _ in range(6):
        reply = chat.say(PERSONA["answers"][reply.question["field"]])
    home = chat.sent[-1][0]
    pids = started_pids(production)
    others = {name: pid for name, pid in pids.items() if name != home}
    os.kill(pids[home], signal.SIGKILL)
    # Until the kernel has closed a killed process's sockets (tens of ms for
    # a 1 GB process) a connection to it still opens, and a turn sent then
    # is answered 502 and not sent again: the person is asked to retry.
    # Here the next turn comes once the instance is gone.
    port = production.instances[int(home.rsplit("-", 1)[1]) - 1]
    deadline = time.monotonic() + 10
    while _accepts(port):
        assert time.monotonic() < deadline, "the killed instance still accepts connections"
        time.sleep(0.05)

    play(chat, PERSONA["answers"], first=chat.say(PERSONA["answers"][reply.question["field"]]))
    reference = chat.say("send").submitted["reference"]
    moved = [instance for instance, _ in chat.sent[7:]]
    assert moved and home not in moved[:1], chat.sent  # the turn after the kill went elsewhere
    assert [r["reference"] for r in exported(production)].count(reference) == 1
    assert_processed_in_order(production, chat)

    wait_for_line(lines, rf"^{home} stopped unexpectedly \(exit -9\); starting it again in")
    restarted = int(re.search(r"pid (\d+)", wait_for_line(lines, rf"^started {home} \(pid")).group(1))
    assert restarted != pids[home]
    deadline = time.monotonic() + 180
    while not runner.healthy(port + "/webhooks/gateway/"):
        assert time.monotonic() < deadline, "the restarted instance never became healthy"
        time.sleep(1)
    assert {n: p for n, p in started_pids(production).items() if n != home} == others  # no other restarted
    for pid in others.values():
        os.kill(pid, 0)  # still running


def _accepts(url: str) -> bool:
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
        return True
    except OSError:
        return False
