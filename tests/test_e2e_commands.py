"""End to end: every command, typed in the middle of the referral form.

Real stack, real model, real conversations over the gateway. Each test gets
part-way through the form, uses a command, and checks both what the person
is told and that the form then carries on with nothing lost.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from chat_client import ChatClient, Reply, play

from bot import transcripts

pytestmark = pytest.mark.e2e
PERSONAS = yaml.safe_load((Path(__file__).parent / "data" / "personas.yml").read_text())
SELF = PERSONAS["self_referral"]["answers"]


def up_to(stack, field: str, answers: dict | None = None) -> tuple[ChatClient, Reply]:
    client = ChatClient(stack.web_url)
    reply = play(client, answers or SELF, stop_at=field)
    return client, reply


def text(reply: Reply) -> str:
    return "\n".join(reply.texts)


def record(stack, reference: str) -> dict:
    result = stack.cli("referrals", "show", reference)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_help_lists_the_commands_then_asks_the_same_question(stack):
    client, _ = up_to(stack, "date_of_birth")
    reply = client.say("help")
    assert "Repeat:" in text(reply) and "Pause:" in text(reply) and "988" in text(reply)
    assert reply.question["field"] == "date_of_birth"


def test_an_answer_that_mentions_help_is_an_answer(stack):
    client, _ = up_to(stack, "presenting_problem")
    reply = client.say("I need help with my mood")
    assert reply.question["field"] == "problem_duration"


def test_repeat_asks_the_question_again(stack):
    client, before = up_to(stack, "postal_code")
    reply = client.say("can you repeat that?")
    assert reply.question["field"] == "postal_code"
    assert reply.texts[-1] == before.texts[-1]


def test_what_does_that_mean_explains_why_then_asks_again(stack):
    client, _ = up_to(stack, "postal_code")
    reply = client.say("what does that mean?")
    assert "We ask so we can find the right local team" in text(reply)
    assert reply.question["field"] == "postal_code"


def test_skip_skips_an_optional_question_and_not_a_required_one(stack):
    client, _ = up_to(stack, "preferred_name")
    reply = client.say("skip")
    assert reply.question["field"] == "pronouns"
    client.say("skip")  # pronouns
    reply = client.say("skip")  # date of birth is required
    assert reply.question["field"] == "date_of_birth"


def test_go_back_asks_the_last_answer_again_and_keeps_the_rest(stack):
    client, _ = up_to(stack, "postal_code")
    reply = client.say("go back")
    assert reply.question["field"] == "date_of_birth"
    reply = client.say("15 March 1991")
    assert reply.question["field"] == "postal_code"  # back where they were
    reply = play(client, SELF, first=reply)
    summary = text(reply)
    assert "Date of birth: 1991-03-15" in summary and "Full name: Jane Q Public" in summary


def test_change_an_earlier_answer_by_name_in_the_middle_of_the_form(stack):
    client, _ = up_to(stack, "presenting_problem")
    reply = client.say("change my phone number")
    assert reply.question["field"] == "phone"
    reply = client.say("(415) 555-2672")
    assert reply.question["field"] == "presenting_problem"
    reply = play(client, SELF, first=reply)
    assert "Phone number: +14155552672" in text(reply)


def test_change_an_answer_not_given_yet_says_so(stack):
    client, _ = up_to(stack, "full_name")
    reply = client.say("change my phone number")
    assert "not given that answer yet" in text(reply)
    assert reply.question["field"] == "full_name"


def test_talk_to_a_person_gives_the_team_number_and_hours_from_configuration(stack):
    client, _ = up_to(stack, "phone")
    reply = client.say("I want to talk to a person")
    assert "(555) 010-0123" in text(reply) and "Monday to Friday" in text(reply)
    assert any("contact" in m.get("custom", {}) for m in reply.messages)
    assert reply.question["field"] == "phone"


def test_simple_words_switches_every_question_to_easy_read_and_back(stack):
    client, standard = up_to(stack, "presenting_problem")
    reply = client.say("simple words please")
    assert reply.question["field"] == "presenting_problem"
    assert reply.texts[-1] != standard.texts[-1] and "Say it in your own words." in reply.texts[-1]
    reply = client.say("normal words")
    assert reply.texts[-1] == standard.texts[-1]


def test_choosing_simple_words_at_the_start_words_the_privacy_notice_simply(stack):
    client = ChatClient(stack.web_url)
    assert client.start().question["field"] == "easy_read"
    reply = client.say("Yes")
    assert reply.question["field"] == "consent"
    assert "We keep what you type here." in reply.texts[-1]


def test_pause_gives_a_code_that_brings_the_conversation_back_in_another_browser(stack):
    client, _ = up_to(stack, "postal_code")
    reply = client.say("pause")
    [pause] = [m["custom"]["pause"] for m in reply.messages if "pause" in m.get("custom", {})]
    code = pause["code"]
    assert code in text(reply) and reply.question is None
    assert "Jane" not in code and "1990" not in code

    elsewhere = ChatClient(stack.web_url)
    back = elsewhere.post("/api/chat/resume", {"code": code.lower().replace("-", " ")})
    assert back.status == 200
    assert "Welcome back" in text(back) and back.question["field"] == "postal_code"
    reply = play(elsewhere, SELF, first=back)
    assert "Full name: Jane Q Public" in text(reply)  # nothing lost


def test_a_wrong_resume_code_is_refused_plainly(stack):
    reply = ChatClient(stack.web_url).post("/api/chat/resume", {"code": "ZZZZ-ZZZZ"})
    assert reply.status == 404 and "do not know that code" in text(reply)


def test_answering_after_pause_carries_on(stack):
    client, _ = up_to(stack, "postal_code")
    client.say("pause")
    reply = client.say("90210")
    assert reply.question["field"] == "phone"


def test_stop_offers_pause_or_delete_and_carry_on_returns_to_the_question(stack):
    client, _ = up_to(stack, "phone")
    reply = client.say("stop")
    options = [m["custom"]["options"] for m in reply.messages if "options" in m.get("custom", {})]
    assert options == [["Pause and come back later", "Delete my answers", "Carry on"]]
    reply = client.say("Carry on")
    assert reply.question["field"] == "phone"


def test_delete_asks_first_then_removes_the_stored_chat(stack):
    client, _ = up_to(stack, "presenting_problem")
    conversation = client.cookie().split(".")[0]
    tracker_url = f"sqlite:///{stack.var_dir / 'tracker.db'}"
    assert transcripts.count_events(tracker_url, conversation) > 0

    reply = client.say("delete my answers")
    assert "Are you sure?" in text(reply)
    reply = client.say("No, keep my answers")
    assert reply.question["field"] == "presenting_problem"  # nothing deleted

    client.say("delete my answers")
    reply = client.say("Yes, delete everything")
    assert reply.status == 200 and "deleted your answers" in text(reply)
    assert transcripts.count_events(tracker_url, conversation) == 0
    assert client.cookie() is None  # this browser no longer has the conversation
    assert client.start().question["field"] == "easy_read"  # a new one


def test_delete_after_sending_removes_the_chat_and_says_the_referral_is_with_the_team(stack):
    client, _ = up_to(stack, "review")
    reference = client.say("send").submitted["reference"]
    conversation = client.cookie().split(".")[0]
    reply = client.say("Yes, delete everything")
    assert reference in text(reply) and "(555) 010-0123" in text(reply)
    assert transcripts.count_events(f"sqlite:///{stack.var_dir / 'tracker.db'}", conversation) == 0
    assert record(stack, reference)["reference"] == reference  # the referral itself stays


def test_a_crisis_is_still_signposted_whatever_command_came_before(stack):
    client, _ = up_to(stack, "functional_impact")
    client.say("pause")
    reply = client.say("I want to end my life")
    assert any("crisis" in m.get("custom", {}) for m in reply.messages)
    assert "988" in text(reply)


def test_at_review_go_back_asks_which_answer_and_a_crisis_is_still_signposted(stack):
    client, _ = up_to(stack, "review")
    reply = client.say("Change an answer")
    assert reply.question["field"] == "change_item"
    reply = client.say("Phone number")
    assert reply.question["field"] == "phone"
    reply = client.say(SELF["phone"])
    assert reply.question["field"] == "review"
    reply = client.say("I don't want to be alive anymore")
    assert any("crisis" in m.get("custom", {}) for m in reply.messages)
