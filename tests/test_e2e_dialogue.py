"""End to end, through the web gateway: dialogue control that cannot be talked
past (issue 16). Each case was first seen failing in a real chat:

- a truthful disclosure in a question about risk looped for ever;
- "no but sometimes" was stored as a plain no;
- "yes, send it" at the review was not understood;
- a page reload stored "/greet" as an answer;
- an impossible date typed after "pause" was stored, and the referral could never be sent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from chat_client import ChatClient, play
from test_e2e import exported

from bot import services
from bot.store.unit_of_work import UnitOfWork

pytestmark = pytest.mark.e2e
PERSONA = yaml.safe_load((Path(__file__).parent / "data" / "personas.yml").read_text())["self_referral"]
ANSWERS = PERSONA["answers"]
SAFETY = ("risk_check", "safe_now", "continue_referral")


def crisis_first(reply) -> dict:
    """The crisis payload, checked to come first: the fixed wording is the first
    message (its text, then its custom payload, as Rasa sends them)."""
    first = reply.messages[0].get("text", "")
    assert "911" in first and ("988" in first or "Hotline" in first), reply.messages[:2]
    payloads = [m["custom"]["crisis"] for m in reply.messages[:2] if "crisis" in m.get("custom", {})]
    assert payloads, reply.messages[:2]
    return payloads[0]


def through_safety(client, reply):
    """Answer the safety questions (a clear no to the direct one, safe, carry on)."""
    for _ in range(4):
        if not reply.question or reply.question["field"] not in SAFETY:
            return reply
        reply = client.say("no" if reply.question["field"] == "risk_check" else "yes")
    return reply


def send(stack, client, reply) -> dict:
    reply = play(client, ANSWERS, first=reply)
    submitted = client.say("send").submitted
    assert submitted, "the referral was not sent"
    [record] = [r for r in exported(stack) if r["reference"] == submitted["reference"]]
    return record


@pytest.mark.parametrize(
    "field, text, next_field",
    [
        (
            "safeguarding_concerns",
            "My partner hit me again last night and I have to go back there tonight",
            "current_medications",
        ),
        (
            "presenting_problem",
            "The voices keep telling me to hurt myself and I am scared I will do what they say",
            "problem_duration",
        ),
    ],
    ids=["danger from a partner, asked about safety at home", "command voices, asked what is going on"],
)
def test_a_disclosure_in_a_risk_question_is_signposted_stored_and_sent(stack, field, text, next_field):
    client = ChatClient(stack.web_url)
    play(client, ANSWERS, stop_at=field)
    reply = client.say(text)
    crisis_first(reply)
    reply = through_safety(client, reply)
    assert reply.question["field"] == next_field  # moved on: never asked again
    record = send(stack, client, reply)
    assert record[field] == text
    assert record["crisis_flag"] is True and record["urgency_band"] == "emergency"


def test_a_disclosure_elsewhere_is_asked_once_more_then_never_again(stack):
    client = ChatClient(stack.web_url)
    play(client, ANSWERS, stop_at="problem_duration")
    text = "I want to end my life"
    reply = through_safety(client, client.say(text))
    assert reply.question["field"] == "problem_duration"
    assert any("skip" in t for t in reply.texts)  # it says the question can be skipped
    reply = through_safety(client, client.say(text))
    assert reply.question["field"] != "problem_duration"  # not a third time
    record = send(stack, client, reply)
    assert text not in json.dumps(record)
    assert "problem_duration" in record["skipped_fields"]


@pytest.mark.parametrize("answer", ["no but sometimes", "no, not right now", "no… well maybe"])
def test_an_ambivalent_answer_to_the_risk_question_asks_for_details_and_is_flagged(stack, answer):
    client = ChatClient(stack.web_url)
    play(client, ANSWERS, stop_at="current_risk")
    reply = through_safety(client, client.say(answer))
    assert reply.question["field"] == "current_risk_details"
    reply = client.say("It comes and goes, mostly at night.")
    record = send(stack, client, reply)
    assert record["current_risk"] == "unclear"
    assert record["current_risk_details"] == "It comes and goes, mostly at night."
    assert record["urgency_band"] != "routine"  # flagged by the current-risk rule
    assert any("thoughts of suicide" in r.lower() or "risk" in r.lower() for r in record["triage_reasons"])


@pytest.mark.parametrize(
    "answer", ["yes, send it", "looks good, send it please", "yep that's all correct", "sí, envíalo"]
)
def test_natural_confirmations_send_the_referral(stack, answer):
    client = ChatClient(stack.web_url)
    play(client, ANSWERS)
    reply = client.say(answer)
    assert reply.submitted and reply.submitted["reference"]


def test_answers_not_understood_twice_bring_buttons_then_a_person(stack):
    client = ChatClient(stack.web_url)
    play(client, ANSWERS, stop_at="safe_to_leave_message")
    first = client.say("purple")
    second = client.say("purple")
    third = client.say("purple")
    assert not any("options" in m.get("custom", {}) for m in first.messages)
    assert any(m.get("custom", {}).get("options") == ["Yes", "No"] for m in second.messages)
    assert any("contact" in m.get("custom", {}) for m in third.messages)  # the team's number
    assert third.question["field"] == "safe_to_leave_message"


def test_a_reload_at_every_kind_of_step_stores_nothing_and_shows_the_question(stack):
    client = ChatClient(stack.web_url)
    reloads = {"full_name": "text", "date_of_birth": "date", "contact_preference": "choice"}
    reply = client.start()
    for _ in range(80):
        field = reply.question["field"]
        if field == "review":
            break
        if reloads.pop(field, None):
            again = client.start()  # the page is reloaded
            assert again.question["field"] == field
        if field == "reason_for_referral_now":
            # A crisis at a question that is not about risk: the safety form, reloaded too.
            reply = client.say("I want to end my life")
            assert reply.question["field"] == "safe_now"
            assert client.start().question["field"] == "safe_now"
            reply = through_safety(client, reply)
            assert reply.question["field"] == field
        reply = client.say(ANSWERS[field])
    assert not reloads
    again = client.start()
    assert again.question["field"] == "review"
    reply = client.say("send")
    [record] = [r for r in exported(stack) if r["reference"] == reply.submitted["reference"]]
    assert "/greet" not in json.dumps(record) and "show_question" not in json.dumps(record)
    assert record["full_name"] == ANSWERS["full_name"]
    assert record["date_of_birth"] == "1990-03-14"
    assert record["contact_preference"] == ANSWERS["contact_preference"]
    assert record["presenting_problem"] == ANSWERS["presenting_problem"]
    assert record["reason_for_referral_now"] == ANSWERS["reason_for_referral_now"]


def test_an_impossible_date_after_pause_is_asked_again_and_the_referral_sends(stack):
    client = ChatClient(stack.web_url)
    play(client, ANSWERS, stop_at="date_of_birth")
    paused = client.say("pause")
    assert any("code" in t.lower() for t in paused.texts)
    reply = client.say("31/02/1988")
    assert reply.texts[0].startswith("That date doesn't look right")
    assert reply.question["field"] == "date_of_birth"
    reply = client.say(ANSWERS["date_of_birth"])
    record = send(stack, client, reply)
    assert record["date_of_birth"] == "1990-03-14"


def test_start_again_after_a_crisis_keeps_a_marker_so_the_next_referral_is_seen_today(stack):
    client = ChatClient(stack.web_url)
    crisis_first(client.say("I want to end my life"))
    first = client.cookie().split(".")[0]
    assert services.crisis_events(UnitOfWork(stack.database_url), first)
    reply = client.post("/api/chat/restart", {})  # "Start again": a new conversation
    assert client.cookie().split(".")[0] != first
    record = send(stack, client, reply)
    assert record["crisis_flag"] is False
    assert record["urgency_band"] in ("same_day", "emergency")
    assert any("earlier chat" in reason for reason in record["triage_reasons"])


# One message per crisis intent (as in tests/test_crisis_every_slot.py).
CRISIS_TEXTS = {
    "crisis": "I want to end my life",
    "crisis_imminent": "I've taken an overdose",
    "crisis_other": "my friend says she is going to kill herself",
    "crisis_danger": "my partner hit me and I'm scared to go home",
    "risk_check": "I feel hopeless and I can't see a way out",
}
NARRATIVE = ("presenting_problem", "current_risk_details", "self_harm_history", "safeguarding_concerns")


def test_a_crisis_at_every_question_comes_first_and_is_stored_only_where_the_question_asks(stack):
    """Generated from the conversation itself: at each question it asks (the
    questionnaires, the review and change-an-answer included), one crisis
    message, the crisis intents taken in turn."""
    answers = {
        **ANSWERS,
        "measures_offer": "Yes",
        **{f"phq9_{i}": "Not at all" for i in range(1, 10)},
        **{f"gad7_{i}": "Not at all" for i in range(1, 8)},
    }
    intents = sorted(CRISIS_TEXTS)
    client = ChatClient(stack.web_url)
    reply = client.start()
    interrupted: dict[str, str] = {}
    reviewed = changed = False
    for _ in range(500):
        field = reply.question["field"]
        if field not in interrupted:
            intent = intents[len(interrupted) % len(intents)]
            interrupted[field] = CRISIS_TEXTS[intent]
            reply = client.say(CRISIS_TEXTS[intent])
            if intent == "risk_check":
                assert reply.question["field"] == "risk_check", field  # the direct question first
            else:
                crisis_first(reply)
            reply = through_safety(client, reply)
            if field in NARRATIVE:
                assert reply.question["field"] != field, field  # stored: the form moved on
            else:
                assert reply.question["field"] == field, field  # asked once more
            continue
        if field == "review" and not changed:
            reply, changed = client.say("Change an answer"), True
        elif field == "change_item":
            reply = client.say("Phone number")
        elif field == "review":
            reviewed = True
            break
        else:
            reply = client.say(answers[field])
    assert reviewed
    assert {"phq9_9", "gad7_7", "review", "change_item", "presenting_problem"} <= set(interrupted)
    submitted = client.say("send").submitted
    [record] = [r for r in exported(stack) if r["reference"] == submitted["reference"]]
    for field in NARRATIVE:
        if field in interrupted:
            assert record[field] == interrupted[field], field
    for field in ("full_name", "problem_duration", "current_supports"):
        assert record[field] == ANSWERS[field], field
    assert record["postal_code"] == "90210"
    assert record["crisis_flag"] is True and record["urgency_band"] == "emergency"
