"""Dialogue control (issue 16): the crisis policy, the clear-no rule, answers
read the way people write them, and the one path every answer takes."""

from pathlib import Path

import pytest
import yaml
from test_crisis_actions import responses, slots_of, store  # noqa: F401  (store: autouse fixture)
from test_referral import answered

from actions.commands import ActionHandleCommand
from actions.crisis import ActionCrisisFollowUp, ValidateSafetyForm
from actions.forms import NON_ANSWER_INTENTS, ValidateReferralForm
from bot import answers, dataset, validators
from bot.crisis import policy
from bot.crisis.types import Assessment

PHRASINGS = yaml.safe_load((Path(__file__).parent / "data" / "answer_phrasings.yml").read_text())
US = validators.Rules(postal_format="us", phone_region="US")


# ---------------------------------------------------------------- the policy


def level(name, subject="self", categories=()):
    return Assessment(level=name, subject=subject, categories=tuple(categories))


@pytest.mark.parametrize(
    "assessment, state, response, flagged, store_answer, ask_again, skip",
    [
        # nothing found: nothing happens
        (level("none"), policy.State(), None, False, False, False, False),
        (level("none"), policy.State(flagged=True, level="crisis"), None, True, False, False, False),
        # the direct question: no fixed wording, the flag is not set by itself
        (level("ask"), policy.State(), None, False, False, False, False),
        (level("ask"), policy.State(flagged=True), None, True, False, False, False),
        # crisis and imminent: fixed wording, a flag that stays
        (level("crisis"), policy.State(), "utter_crisis_self", True, False, False, False),
        (level("imminent"), policy.State(), "utter_crisis_imminent", True, False, False, False),
        (level("crisis", "other"), policy.State(), "utter_crisis_other", True, False, False, False),
        (
            level("crisis", categories=["abuse_or_danger_from_others"]),
            policy.State(),
            "utter_crisis_danger",
            True,
            False,
            False,
            False,
        ),
        # in a risk narrative the disclosure is the answer
        (
            level("crisis"),
            policy.State(field="presenting_problem", risk_narrative=True),
            "utter_crisis_self",
            True,
            True,
            False,
            False,
        ),
        (
            level("ask"),
            policy.State(field="safeguarding_concerns", risk_narrative=True, interruptions=3),
            None,
            False,
            True,
            False,
            False,
        ),
        # elsewhere: asked once more, then never a third time
        (
            level("crisis"),
            policy.State(field="full_name"),
            "utter_crisis_self",
            True,
            False,
            True,
            False,
        ),
        (
            level("ask"),
            policy.State(field="full_name", interruptions=1),
            None,
            False,
            False,
            False,
            True,
        ),
    ],
)
def test_policy_state_table(assessment, state, response, flagged, store_answer, ask_again, skip):
    decision = policy.decide(assessment, state)
    assert decision.response == response
    assert decision.flagged is flagged
    assert (decision.store_answer, decision.ask_again, decision.skip_field) == (store_answer, ask_again, skip)
    crisis = assessment.level != "none"
    assert decision.record_event is crisis and decision.safety_questions is crisis


def test_a_dialogue_step_is_never_skipped_or_stored():
    for interruptions in (0, 1, 5):
        state = policy.State(field="review", skippable=False, interruptions=interruptions)
        decision = policy.decide(level("crisis"), state)
        assert not (decision.store_answer or decision.ask_again or decision.skip_field)


def test_policy_never_lowers_the_level():
    assert policy.decide(level("ask"), policy.State(level="imminent", flagged=True)).level == "imminent"


def test_risk_narratives_are_declared_in_the_data_dictionary():
    narrative = {spec.name for spec in dataset.load().fields if spec.risk_narrative}
    assert narrative == {
        "presenting_problem",
        "current_risk_details",
        "self_harm_history",
        "safeguarding_concerns",
    }


# ---------------------------------------------------------------- clear no


@pytest.mark.parametrize(
    "text", ["no", "nope", "No.", "no I'm not", "no thoughts like that", "no, not at all"]
)
def test_a_plain_no_is_a_clear_no(text):
    assert answers.clear_no(text)
    assert validators.check(dataset.load().get("current_risk"), text, US).value == "no"


def test_qualified_answers_are_never_a_clear_no():
    # A held-out list written apart from the code: "no but sometimes", "not right now", "no?"...
    qualified = PHRASINGS["qualified_no"]
    assert len(qualified) >= 40
    wrongly_clear = [t for t in qualified if answers.clear_no(t)]
    assert wrongly_clear == []
    risk = dataset.load().get("current_risk")
    assert {validators.check(risk, t, US).value for t in qualified} <= {"unclear", "yes"}


def test_clear_nos_that_are_not_recognised_take_the_careful_side():
    # Missing a plain no costs one more question; reading a hedge as no would hide risk.
    risk = dataset.load().get("current_risk")
    for text in PHRASINGS["clear_no"]:
        assert validators.check(risk, text, US).value in ("no", "unclear")


def test_only_a_clear_yes_makes_contact_with_the_person_safe():
    spec = dataset.load().get("person_contact_safe")
    assert validators.check(spec, "yes", US).value is True
    for text in ["yes but not at home", "I think so", "sometimes", "idk", "no"]:
        assert validators.check(spec, text, US).value is False, text


# ---------------------------------------------------------------- answers


@pytest.mark.parametrize("choice", ["yes", "no", "send", "change"])
def test_each_choice_has_at_least_40_held_out_phrasings(choice):
    assert len(PHRASINGS[choice]) >= 40


def test_the_fast_path_is_never_wrong_about_yes_or_no():
    # It may not know a phrasing (Rasa's NLU then reads it); it must never read one backwards.
    assert [t for t in PHRASINGS["yes"] if answers.yes_no(t) is False] == []
    assert [t for t in PHRASINGS["no"] if answers.yes_no(t) is True] == []


def test_the_fast_path_never_sends_what_was_not_a_send():
    for key in ("not_send", "change", "no", "qualified_no"):
        assert [t for t in PHRASINGS[key] if answers.review(t) == answers.SEND] == [], key


@pytest.mark.parametrize(
    "text, expected",
    [
        ("yes, send it", "send"),
        ("yep that's all correct", "send"),
        ("looks good, send it please", "send"),
        ("sure, go ahead", "send"),
        ("that's fine", "send"),
        ("sí, envíalo", "send"),
        ("nah", "which"),
        ("not really", "which"),
        ("something's wrong", "which"),
        ("don't send it yet", None),
    ],
)
def test_natural_answers_at_the_review(text, expected):
    choice = __import__("bot.referral", fromlist=["parse_review"]).parse_review(text, answered())
    assert (choice.action if choice else None) == expected


@pytest.mark.parametrize(
    "text, expected",
    [("sure, go ahead", True), ("that's fine", True), ("nah", False), ("not really", False), ("vale", True)],
)
def test_natural_yes_and_no(text, expected):
    assert validators.parse_yes_no(text) is expected


def test_the_nlu_reads_what_the_fast_path_does_not_but_never_a_hedge():
    confident = {"name": "affirm", "confidence": 0.93}
    assert validators.parse_yes_no("yeah you can email me", confident) is True
    assert validators.parse_yes_no("yeah you can email me", {"name": "affirm", "confidence": 0.4}) is None
    assert validators.parse_yes_no("yes but only after 6", confident) is None


# ---------------------------------------------------------------- actions


async def test_a_disclosure_in_a_risk_narrative_is_signposted_and_stored(dispatcher, make_tracker, domain):
    text = "My partner hit me last night and I have to go back there tonight"
    base = answered(safeguarding_concerns=None, current_medications=None, current_supports=None)
    tracker = make_tracker(
        slots={**base, "requested_slot": "safeguarding_concerns"}, text=text, intent="crisis"
    )
    slots = slots_of(await ActionCrisisFollowUp().run(dispatcher, tracker, domain))
    assert slots["safeguarding_concerns"] == text
    assert slots["crisis_flag"] is True
    assert "crisis_asks" not in slots


async def test_a_disclosure_elsewhere_is_asked_once_more_then_skipped(dispatcher, make_tracker, domain):
    text = "I want to end my life"
    base = answered(full_name=None)
    tracker = make_tracker(slots={**base, "requested_slot": "full_name"}, text=text, intent="crisis")
    slots = slots_of(await ActionCrisisFollowUp().run(dispatcher, tracker, domain))
    assert slots["full_name"] is None and slots["crisis_asks"] == {"full_name": 1}
    assert slots["skip_offer_pending"] == "full_name"

    again = make_tracker(
        slots={**base, "requested_slot": "full_name", "crisis_asks": {"full_name": 1}},
        text=text,
        intent="crisis",
    )
    slots = slots_of(await ActionCrisisFollowUp().run(dispatcher, again, domain))
    assert slots["full_name"] == dataset.SKIPPED  # never asked a third time


async def test_after_a_crisis_response_a_required_question_may_be_skipped(dispatcher, make_tracker, domain):
    base = answered(full_name=None, crisis_asks={"full_name": 1})
    tracker = make_tracker(slots=base, text="skip", set_this_turn={"full_name": "skip"})
    slots = slots_of(await ValidateReferralForm().run(dispatcher, tracker, domain))
    assert slots["full_name"] == dataset.SKIPPED


@pytest.mark.parametrize("intent", sorted(NON_ANSWER_INTENTS))
async def test_the_form_rejects_every_non_answer_turn_explicitly(dispatcher, make_tracker, domain, intent):
    tracker = make_tracker(
        slots={**answered(), "requested_slot": "full_name", "full_name": None}, text="x", intent=intent
    )
    events = await ValidateReferralForm().run(dispatcher, tracker, domain)
    assert [e["event"] for e in events] == ["action_execution_rejected"]


async def test_a_reload_asks_nothing_new_and_stores_nothing(dispatcher, make_tracker, domain):
    tracker = make_tracker(
        slots={**answered(), "requested_slot": "full_name"}, text="/show_question", intent="show_question"
    )
    assert await ActionHandleCommand().run(dispatcher, tracker, domain) == []
    assert dispatcher.messages == []


async def test_answers_not_understood_bring_buttons_then_a_person(dispatcher, make_tracker, domain):
    base = answered(safe_to_leave_message=None)
    said = []
    state = None
    for _ in range(3):
        dispatcher.messages.clear()
        tracker = make_tracker(
            slots={**base, "not_understood": state},
            text="purple",
            set_this_turn={"safe_to_leave_message": "purple"},
        )
        slots = slots_of(await ValidateReferralForm().run(dispatcher, tracker, domain))
        state = slots["not_understood"]
        said.append(responses(dispatcher))
    assert said[0] == ["utter_invalid_yes_no"]
    assert said[1] == ["utter_invalid_yes_no", "utter_show_choices"]
    assert said[2] == ["utter_invalid_yes_no", "utter_show_choices", "utter_reach_a_person"]
    buttons = next(m for m in dispatcher.messages if m["response"] == "utter_show_choices")
    assert buttons["custom"] == {"options": ["Yes", "No"]}


@pytest.mark.parametrize("text", ["no but sometimes", "no… well maybe", "no, not right now", "I don't know"])
async def test_the_safety_question_takes_a_clear_no_only(dispatcher, make_tracker, domain, text):
    tracker = make_tracker(slots={"requested_slot": "risk_check"}, text=text, active_loop="safety_form")
    slots = await ValidateSafetyForm().validate_risk_check(text, dispatcher, tracker, domain)
    assert slots["risk_check"] == "yes" and slots["crisis_flag"] is True
    assert slots["safety_words"] == {"risk_check": text}
