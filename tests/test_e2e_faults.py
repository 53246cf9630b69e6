"""Faults in the running processes: each is made to happen mid-form, and the
person must be told, nothing they gave may be lost, and the form must go on
from where it was without asking a question again.

The processes are the runner's own (bot/runner.py Supervisor), so one of them
can be stopped and started again while the others run. The faults that need
PostgreSQL (the referral database going away, the backup drill) are in
test_e2e_production.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from chat_client import ChatClient, Reply, play
from conftest import supervised

from bot import runner

pytestmark = pytest.mark.e2e
ANSWERS = yaml.safe_load((Path(__file__).parent / "data" / "personas.yml").read_text())["self_referral"][
    "answers"
]
LOCK_SECONDS = 15  # the measured failure: a 15 s lock on the tracker database


@dataclass
class Recording(ChatClient):
    """A chat client that remembers every question it was asked, in order."""

    asked: list[str] = field(default_factory=list)

    def post(self, path, body, raw=None, content_type="application/json") -> Reply:
        reply = super().post(path, body, raw, content_type)
        if reply.question:
            self.asked.append(reply.question["field"])
        return reply


@pytest.fixture(scope="module")
def cluster(trained_model, tmp_path_factory):
    supervisor = supervised(tmp_path_factory.mktemp("faults"), trained_model)
    yield supervisor
    supervisor.stop()


def restart(cluster, name: str) -> None:
    cluster.start_child(name)
    deadline = time.monotonic() + 180
    while not runner._ready(cluster.child(name)):  # every forked Rasa server, for "rasa"
        assert cluster.child(name).process.poll() is None, f"{name} did not start again"
        assert time.monotonic() < deadline, f"{name} not healthy again"
        time.sleep(0.5)


def health(cluster) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(cluster.web_url + "/healthz", timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def referrals(cluster) -> list[dict]:
    from bot import services
    from bot.store.unit_of_work import UnitOfWork

    return list(services.export_records(UnitOfWork(cluster.settings.database_url)))


def finish(client: Recording, reply: Reply, cluster) -> dict:
    """Answer the rest, send, and return the stored record; no question may come twice."""
    play(client, ANSWERS, first=reply)
    reference = client.say("send").submitted["reference"]
    assert len(client.asked) == len(set(client.asked)), client.asked
    records = [r for r in referrals(cluster) if r["reference"] == reference]
    assert len(records) == 1
    return records[0]


def assert_told_safely(reply: Reply, error: str) -> None:
    assert reply.status == 503 and reply.error == error
    said = " ".join(reply.texts)
    assert "988" in said and "911" in said
    assert reply.question is None  # nothing moved on


def test_restarting_rasa_mid_form_resumes_where_it_was(cluster):
    client = Recording(cluster.web_url)
    play(client, ANSWERS, stop_at="presenting_problem")
    cluster.stop_child("rasa")
    down = client.say(ANSWERS["presenting_problem"])
    assert_told_safely(down, "unavailable")
    assert "answers so far are safe" in " ".join(down.texts)

    restart(cluster, "rasa")
    again = client.say(ANSWERS["presenting_problem"])  # the page sends it again
    assert again.question["field"] not in client.asked[:-1]
    record = finish(client, again, cluster)
    assert record["full_name"] == ANSWERS["full_name"]  # given before the restart
    assert record["presenting_problem"] == ANSWERS["presenting_problem"]


def forked_servers(cluster) -> dict[int, int]:
    """Each forked Rasa server's pid, by port, as the Rasa process's log says
    it forked them (bot/rasa_ext/forks.py); the newest for each port."""
    found = {}
    for line in cluster.log_path(cluster.child("rasa")).read_text().splitlines():
        match = re.search(r"Rasa server on port (\d+): pid (\d+)$", line.strip())  # after any colour code
        if match:
            found[int(match[1])] = int(match[2])
    return found


def test_a_forked_rasa_server_that_stops_is_forked_again_and_only_its_conversations_wait(cluster):
    from bot.web.app import rasa_url_for

    settings = cluster.settings
    assert len(settings.rasa_urls) == 2, "the stack forks two Rasa servers (tests/conftest.py)"
    parent = cluster.child("rasa").process.pid
    client = Recording(cluster.web_url)
    play(client, ANSWERS, stop_at="presenting_problem")
    url = rasa_url_for(settings, client.cookie().split(".")[0])
    port = int(url.rsplit(":", 1)[1])
    # Another conversation, on the other server.
    for _ in range(40):
        other = Recording(cluster.web_url)
        first = other.start()
        if rasa_url_for(settings, other.cookie().split(".")[0]) != url:
            break
    else:
        pytest.fail("40 new conversations all went to one server")
    before = forked_servers(cluster)
    assert set(before) == set(settings.rasa_fork_ports)
    os.kill(before[port], signal.SIGKILL)

    down = client.say(ANSWERS["presenting_problem"])
    assert_told_safely(down, "unavailable")
    assert other.say(ANSWERS[first.question["field"]]).question is not None  # its server answers

    deadline = time.monotonic() + 60
    while not runner._ready(cluster.child("rasa")):
        assert time.monotonic() < deadline, "the stopped server was not forked again"
        time.sleep(0.2)
    assert cluster.child("rasa").process.pid == parent  # forked again, not the whole process restarted
    assert forked_servers(cluster)[port] != before[port]
    again = client.say(ANSWERS["presenting_problem"])
    assert again.question["field"] not in client.asked[:-1]
    record = finish(client, again, cluster)
    assert record["full_name"] == ANSWERS["full_name"]


def test_with_the_action_server_stopped_crisis_help_still_shows_and_the_rest_is_paused(cluster):
    client = Recording(cluster.web_url)
    play(client, ANSWERS, stop_at="phone")
    cluster.stop_child("actions")
    try:
        crisis = client.say("I am going to kill myself tonight")
        assert_told_safely(crisis, "actions_unavailable")
        assert "988" in crisis.texts[0]  # the crisis response comes first
        assert "paused" in " ".join(crisis.texts)

        paused = client.say(ANSWERS["phone"])
        assert_told_safely(paused, "actions_unavailable")
        assert "paused" in " ".join(paused.texts)

        status, body = health(cluster)
        assert status == 503 and body["status"] == "degraded" and body["actions"] is False
    finally:
        restart(cluster, "actions")
    assert health(cluster)[0] == 200
    again = client.say(ANSWERS["phone"])
    assert again.question["field"] not in client.asked[:-1]
    record = finish(client, again, cluster)
    assert record["phone"] == "+14155552671"
    # The crisis was shown while the action server was down: it still counts.
    assert record["crisis_flag"] is True and record["urgency_band"] == "emergency"
    assert crisis_events(cluster, client)


def crisis_events(cluster, client) -> list[dict]:
    from bot import services
    from bot.store.unit_of_work import UnitOfWork

    conversation = next(c.value for c in client.jar if c.name == "ra_session").split(".")[0]
    return services.crisis_events(UnitOfWork(cluster.settings.database_url), conversation)


def test_with_the_referral_store_down_a_crisis_is_kept_and_counts_when_it_is_back(cluster):
    from bot import outbox

    client = Recording(cluster.web_url)
    # At a question about risk, so the disclosure is its answer and nothing is asked twice.
    play(client, ANSWERS, stop_at="presenting_problem")
    database = cluster.settings.database_url.removeprefix("sqlite:///")
    lock = sqlite3.connect(database, isolation_level=None, timeout=1)
    lock.execute("BEGIN EXCLUSIVE")  # nobody can write to the referral store
    try:
        reply = client.say("I am going to kill myself tonight")
        assert "988" in reply.texts[0] and "911" in reply.texts[0]  # the crisis response first
        assert any("crisis" in m.get("custom", {}) for m in reply.messages)
        assert outbox.pending(cluster.settings.var_dir)  # kept, not lost
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    for _ in range(3):  # the safety questions
        if reply.question and reply.question["field"] in ("safe_now", "continue_referral"):
            reply = client.say("yes")
    record = finish(client, reply, cluster)
    assert record["crisis_flag"] is True and record["urgency_band"] == "emergency"
    assert crisis_events(cluster, client)
    assert outbox.pending(cluster.settings.var_dir) == []


def test_a_locked_tracker_database_loses_nothing_and_asks_nothing_twice(cluster):
    client = Recording(cluster.web_url)
    play(client, ANSWERS, stop_at="email")
    lock = sqlite3.connect(cluster.settings.tracker_db, timeout=1, isolation_level=None)
    locked_at = time.monotonic()
    lock.execute("BEGIN EXCLUSIVE")
    try:
        during = client.say(ANSWERS["email"])
        assert_told_safely(during, "unavailable")
        assert "answers so far are safe" in " ".join(during.texts)
        time.sleep(max(0.0, LOCK_SECONDS - (time.monotonic() - locked_at)))
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    again = client.say(ANSWERS["email"])
    assert again.question["field"] not in client.asked[:-1]
    record = finish(client, again, cluster)
    assert record["email"] == "Jane.Public@example.com"
    assert record["full_name"] == ANSWERS["full_name"]
