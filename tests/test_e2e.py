"""End to end: `referral-assistant run`, a trained model, real conversations.

Each conversation goes browser-side through the referral service's gateway,
which relays to Rasa's REST channel; answers are chosen by `custom.field`.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from chat_client import ChatClient, play
from conftest import Stack

from bot import runner

pytestmark = pytest.mark.e2e
PERSONAS = yaml.safe_load((Path(__file__).parent / "data" / "personas.yml").read_text())


def exported(stack) -> list[dict]:
    result = stack.cli("referrals", "export", "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def reach_review(stack) -> ChatClient:
    client = ChatClient(stack.web_url)
    play(client, PERSONAS["self_referral"]["answers"])
    return client


def test_a_full_self_referral_is_stored_as_given(stack):
    persona = PERSONAS["self_referral"]
    client = ChatClient(stack.web_url)
    reply = client.start()
    assert "automated" in reply.texts[0] and "988" in reply.texts[0] and "911" in reply.texts[0]
    answers = persona["answers"]
    # Bad answers first: each gets its own re-ask and the same question again.
    bad_first = {
        "date_of_birth": ("31/02/1990", "That date doesn't look right"),
        "phone": ("12345", "That phone number doesn't look right"),
    }
    for _ in range(80):
        field = reply.question["field"]
        if field == "review":
            break
        if field in bad_first:
            text, reask = bad_first.pop(field)
            reply = client.say(text)
            assert reply.texts[0].startswith(reask) and reply.question["field"] == field
        reply = client.say(answers[field])
    assert not bad_first
    summary = "\n".join(reply.texts)
    assert "Phone number: +14155552671" in summary and "Date of birth: 1990-03-14" in summary

    # Change an answer at review by choosing the item, without retyping the rest.
    reply = client.say("Change an answer")
    assert reply.question["field"] == "change_item" and "Phone number" in reply.question["choices"]
    reply = client.say("Phone number")
    assert reply.question["field"] == "phone"
    reply = client.say("415-555-2679")
    assert reply.question["field"] == "review"
    # ... and by saying it.
    reply = client.say("change my email address")
    assert reply.question["field"] == "email"
    reply = client.say(answers["email"])
    assert reply.question["field"] == "review"

    reply = client.say("Send my referral")
    submitted = reply.submitted
    assert submitted and submitted["expected_wait"] == "within 10 working days"
    assert any("988" in t and "911" in t and "(555) 010-0100" in t for t in reply.texts)

    [record] = [r for r in exported(stack) if r["reference"] == submitted["reference"]]
    expected = {**persona["expected"], "phone": "+14155552679"}
    for name, value in expected.items():
        assert record[name] == value, name
    assert record["submitted_at"] and record["consent_given_at"]

    shown = stack.cli("referrals", "show", submitted["reference"])
    assert shown.returncode == 0 and json.loads(shown.stdout)["events"][0]["kind"] == "created"


def test_sending_twice_one_after_the_other_stores_one_referral(stack):
    client = reach_review(stack)
    first = client.say("send")
    second = client.say("send")
    reference = first.submitted["reference"]
    assert second.submitted["reference"] == reference
    assert "already been sent" in second.texts[0]
    assert len(second.texts) == 1
    assert sum(r["reference"] == reference for r in exported(stack)) == 1


def test_sending_twice_at_the_same_moment_stores_one_referral(stack):
    client = reach_review(stack)
    before = len(exported(stack))
    replies = []
    threads = [threading.Thread(target=lambda: replies.append(client.say("send"))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    references = {r.submitted["reference"] for r in replies}
    assert len(references) == 1
    assert len(exported(stack)) == before + 1
    # The second waited for the conversation lock, then was told it was already sent.
    assert sum("already been sent" in " ".join(r.texts) for r in replies) == 1


def test_consent_no_ends_kindly_and_stores_nothing(stack):
    before = len(exported(stack))
    client = ChatClient(stack.web_url)
    client.start()
    client.say("No")  # simple words
    reply = client.say("no")
    assert "We have not kept anything" in reply.texts[0] and "988" in reply.texts[0]
    assert reply.question is None
    reply = client.say("hello?")
    assert "This chat has ended" in reply.texts[0]
    assert len(exported(stack)) == before


def supported_referral(stack, persona: str) -> tuple[dict, list[str]]:
    """Play a supported referral to the end; return the exported record and everything said."""
    client = ChatClient(stack.web_url)
    said: list[str] = []
    reply = client.start()
    for _ in range(80):
        said += reply.texts
        if reply.question["field"] == "review":
            break
        reply = client.say(PERSONAS[persona]["answers"][reply.question["field"]])
    else:
        raise AssertionError(f"review never reached; last question: {reply.question}")
    reply = client.say("send")
    said += reply.texts
    assert reply.submitted, reply.texts
    [record] = [r for r in exported(stack) if r["reference"] == reply.submitted["reference"]]
    return record, said


def test_a_parent_referring_a_teenager(stack):
    record, said = supported_referral(stack, "parent_teen")
    assert any("They are under 18" in t and "young people" in t for t in said)
    assert any("What is their full name?" in t for t in said)  # third person
    assert any("support for yourself" in t for t in said)  # carers are signposted too
    assert record["referrer_type"] == "someone_else"
    assert record["referrer"]["referrer_name"] == "Maria Lopez"
    assert record["referrer"]["referrer_relationship"] == "Parent"
    assert record["referrer"]["referrer_phone"] == "+14155552680"
    assert record["full_name"] == "Daniel Lopez" and record["date_of_birth"] == "2010-05-02"
    assert record["person_consent_status"] == "They know and agree"
    assert {"phone", "email", "current_risk"} <= set(record["unknown_fields"])


def test_a_partner_referring_an_adult_who_does_not_know_yet(stack):
    record, said = supported_referral(stack, "partner_unaware")
    assert any("contact them first" in t for t in said)
    assert not any("phone number can we use to reach them" in t for t in said)  # not safe to contact
    assert record["person_consent_status"] == "They don't know yet"
    assert record["person_contact_safe"] is False
    assert record["referrer"]["referrer_email"] == "chris.taylor@example.com"
    assert record["referrer"]["referrer_relationship"] == "Partner"


def test_a_gp_referral_missing_risk_information_needs_clarification(stack):
    record, _ = supported_referral(stack, "gp_missing_risk")
    assert record["referrer_type"] == "professional"
    assert record["referrer"]["referrer_role"] == "GP or primary care"
    assert record["referrer"]["referrer_organisation"] == "Oak Street Clinic"
    assert record["needs_clarification"] is True
    assert record["missing_fields"] == ["current_risk", "current_risk_details"]
    assert record["dataset_complete"] is False
    assert record["status"] == "submitted"  # stored, never rejected


def test_any_first_message_starts_the_referral(stack):
    reply = ChatClient(stack.web_url).say("I need some help with my mood")  # no session yet
    assert reply.question["field"] == "easy_read"


def test_gateway_refuses_oversized_messages_and_keeps_the_question(stack):
    client = ChatClient(stack.web_url)
    client.start()
    refused = client.say("x" * 2001)
    assert refused.status == 413
    reply = client.say("No")
    assert reply.question["field"] == "consent"


def test_another_sessions_conversation_cannot_be_reached(stack):
    alice = ChatClient(stack.web_url)
    alice.start()
    alice.say("No")
    alice.say("yes")
    alice_id = alice.cookie().split(".")[0]
    mallory = ChatClient(stack.web_url)
    mallory.jar.set_cookie(_cookie("ra_session", f"{alice_id}.forged"))
    reply = mallory.say("Myself")
    assert reply.question["field"] == "easy_read"  # a new conversation, not Alice's
    assert mallory.cookie().split(".")[0] != alice_id
    assert alice.say("Myself").question["field"] == "preferred_language"


def test_hostile_text_never_breaks_the_conversation(stack):
    client = ChatClient(stack.web_url)
    client.start()
    client.say("No")
    client.say("yes")
    client.say("Myself")
    for _ in range(5):  # the reasonable-adjustment questions
        client.say("skip")
    for text in ("<script>alert(1)</script>", "😀😀😀", "'; DROP TABLE referrals;--"):
        reply = client.say(text)
        assert reply.status == 200 and reply.question["field"] == "full_name"
    assert client.say("Jane Public").question["field"] == "preferred_name"


def _cookie(name: str, value: str):
    import http.cookiejar

    return http.cookiejar.Cookie(
        0, name, value, None, False, "127.0.0.1", False, False, "/", True, False, None, False, None, None, {}
    )


def test_conversation_survives_restart_and_a_dead_process_is_started_again(trained_model, tmp_path):
    first = Stack(tmp_path)
    first.start()
    client = ChatClient(first.web_url)
    client.start()
    client.say("No")
    client.say("yes")
    client.say("Myself")
    assert first.stop() == 0
    assert not _alive(first.child_pids())

    second = Stack(tmp_path)
    second.ports, second.env = first.ports, first.env  # same ports, same var/ (cookie secret, tracker)
    second.start()
    children = after = []
    try:
        reply = ChatClient(first.web_url, jar=client.jar).say("English")
        assert reply.question["field"] == "interpreter_needed"  # carries on where it was

        children = second.child_pids()
        assert len(children) == 3
        os.kill(children[1], signal.SIGKILL)  # the action server
        said = ""
        while "started actions" not in said.split("starting it again")[-1]:
            line = second.process.stdout.readline()
            assert line, "the runner stopped instead of starting the action server again"
            said += line
        assert "actions stopped unexpectedly (exit -9); starting it again in 1 s" in said
        after = second.child_pids()
        assert set(children) - set(after) == {children[1]} and len(set(after) - set(children)) == 1
        actions = f"http://127.0.0.1:{first.ports['ACTION_PORT']}/health"
        deadline = time.monotonic() + 60
        while not runner.healthy(actions):
            assert time.monotonic() < deadline, "the action server never came back"
            time.sleep(0.5)
        reply = ChatClient(first.web_url, jar=client.jar).say("no")
        assert reply.question["field"] != "interpreter_needed"  # the answer was taken: it moved on
        assert second.process.poll() is None
    finally:
        assert second.stop() == 0
    time.sleep(0.5)
    assert not _alive(children + after)


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive


def rest(stack, sender: str, text: str) -> list[dict]:
    """One turn straight to Rasa's REST channel (the gateway's), as the gateway relays it."""
    import urllib.request

    request = urllib.request.Request(
        f"{stack.rasa_url}/webhooks/gateway/webhook",
        data=json.dumps({"sender": sender, "message": text}).encode(),
        headers={
            "Content-Type": "application/json",
            "X-Gateway-Token": (stack.var_dir / "gateway_token").read_text().strip(),
        },
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_a_full_self_referral_over_the_rest_channel(stack):
    answers = PERSONAS["self_referral"]["answers"]
    sender = "rest-e2e-conversation"
    messages = rest(stack, sender, "hi")
    for _ in range(80):
        field = [m["custom"]["field"] for m in messages if "field" in m.get("custom", {})][-1]
        if field == "review":
            break
        messages = rest(stack, sender, answers[field])
    messages = rest(stack, sender, "send")
    [submitted] = [m["custom"]["submitted"] for m in messages if "submitted" in m.get("custom", {})]
    [record] = [r for r in exported(stack) if r["reference"] == submitted["reference"]]
    assert record["phone"] == "+14155552671" and record["dataset_complete"] is True


def test_logs_hold_nothing_a_person_wrote(stack):
    answers = PERSONAS["self_referral"]["answers"]
    client = reach_review(stack)
    client.say("send")
    sentinels = [answers[k] for k in ("full_name", "presenting_problem", "functional_impact", "email")]
    sentinels += ["+14155552671", "1990-03-14", "(415) 555-2671", client.cookie().split(".")[0]]
    for log in (stack.var_dir / "logs").glob("*.log"):
        text = log.read_text(errors="replace")
        assert text, log
        for value in sentinels:
            assert value not in text, f"{value!r} found in {log.name}"
