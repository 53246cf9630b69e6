"""End to end: what the person is told after triage, over the real stack."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from chat_client import ChatClient, play

pytestmark = pytest.mark.e2e
SELF = yaml.safe_load((Path(__file__).parent / "data" / "personas.yml").read_text())["self_referral"][
    "answers"
]


def send(stack, **changes) -> tuple[list[str], dict, dict]:
    """A self-referral with some answers changed: what was said, the submitted payload, the record."""
    client = ChatClient(stack.web_url)
    play(client, {**SELF, **changes})
    reply = client.say("send")
    assert reply.submitted, reply.texts
    shown = stack.cli("referrals", "show", reply.submitted["reference"])
    return reply.texts, reply.submitted, json.loads(shown.stdout)


def test_a_routine_referral_is_told_its_expected_wait(stack):
    said, submitted, record = send(stack)
    assert submitted["band"] == "routine" and submitted["expected_wait"] == "within 10 working days"
    assert any("We aim to contact you within 10 working days" in t for t in said)
    assert record["pathway"] == "accept_for_assessment" and record["criteria_version"]


def test_a_red_flag_is_told_it_will_be_contacted_today(stack):
    said, submitted, record = send(stack, current_medications="I stopped my lithium last week")
    assert submitted["band"] == "same_day"
    assert any("We aim to contact you today" in t for t in said)
    assert (
        "Stopped or changed psychiatric medicine, with a sudden change in mental state."
        in (record["triage_reasons"])
    )


def test_a_red_flag_in_words_no_keyword_list_has_is_found_through_the_detector(stack):
    # "haven't taken" is on no keyword list: the NLU component's semantic layer
    # finds a change of medicine, the form keeps it (answer_signals), triage reads it.
    said, submitted, record = send(stack, current_medications="I haven't taken my lithium for two weeks")
    assert submitted["band"] == "same_day"
    assert (
        "Stopped or changed psychiatric medicine, with a sudden change in mental state."
        in record["triage_reasons"]
    )


def test_a_mainly_substance_use_need_is_redirected_with_a_named_service_and_a_safety_action(stack):
    said, submitted, record = send(
        stack,
        presenting_problem="My drinking has got out of control.",
        service_preferences="Substance use support",
    )
    text = "\n".join(said)
    assert "Example Recovery Service" in text and "(555) 010-0150" in text
    assert "You can always come back to us" in text and "988" in text
    assert record["pathway"] == "redirect" and record["redirect_to"] == "substance_use_service"


def test_an_out_of_area_postal_code_is_redirected_to_the_right_place(stack):
    said, submitted, record = send(stack, postal_code="10001")
    text = "\n".join(said)
    assert "local community mental health access team" in text and "(555) 010-0160" in text
    assert record["pathway"] == "redirect" and record["redirect_to"] == "neighbouring_access_team"


def test_the_standard_measures_are_scored_and_item_9_asks_the_safety_question_at_once(stack):
    client = ChatClient(stack.web_url)
    answers = {**SELF, "measures_offer": "Yes"}
    answers.update({f"phq9_{i}": "Several days" for i in range(1, 10)})
    answers.update({f"gad7_{i}": "More than half the days" for i in range(1, 8)})
    reply = play(client, answers, stop_at="phq9_9")
    assert "Thoughts that you would be better off dead or of hurting yourself in some way" in reply.texts[-1]
    reply = client.say("Several days")
    assert reply.question["field"] == "risk_check"  # the direct safety question, at once
    reply = client.say("No")
    play(client, answers, first=reply)
    reply = client.say("send")
    record = json.loads(stack.cli("referrals", "show", reply.submitted["reference"]).stdout)
    assert (record["phq9_score"], record["phq9_severity"]) == (9, "mild")
    assert (record["gad7_score"], record["gad7_severity"]) == (14, "moderate")
    assert record["phq9_9"] == 1 and record["urgency_band"] == "same_day"
    assert reply.submitted["band"] == "same_day"
