"""The referral form's validation and the fallback handler, with the real domain."""

import pytest
from test_referral import answered

from actions.fallback import ActionHandleUnexpected
from actions.forms import ValidateReferralForm
from bot import dataset, services
from bot.dataset import SKIPPED
from bot.store.unit_of_work import UnitOfWork

# Every test reads the actions' settings afresh from its own var/.
pytestmark = pytest.mark.usefixtures("settings_env")


# Answers given before the date of birth is asked.
BEFORE_DATE_OF_BIRTH = {
    "consent": True,
    "referrer_type": "self",
    **{spec.name: SKIPPED for spec in dataset.load().section("access")},
    "full_name": "Jane",
    "preferred_name": SKIPPED,
    "pronouns": SKIPPED,
}


async def validate(dispatcher, tracker, domain):
    events = await ValidateReferralForm().run(dispatcher, tracker, domain)
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


def responses(dispatcher):
    return [m["response"] for m in dispatcher.messages]


async def test_an_answer_is_normalised_and_the_next_question_requested(dispatcher, make_tracker, domain):
    tracker = make_tracker(
        slots=BEFORE_DATE_OF_BIRTH,
        text="14/03/1990",
        set_this_turn={"date_of_birth": "14/03/1990"},
    )
    slots = await validate(dispatcher, tracker, domain)
    assert slots["date_of_birth"] == "1990-03-14"
    assert slots["requested_slot"] == "postal_code"
    assert responses(dispatcher) == []


async def test_an_invalid_answer_gets_its_own_reask_and_is_cleared(dispatcher, make_tracker, domain):
    tracker = make_tracker(
        slots=BEFORE_DATE_OF_BIRTH,
        text="31/02/1990",
        set_this_turn={"date_of_birth": "31/02/1990"},
    )
    slots = await validate(dispatcher, tracker, domain)
    assert slots["date_of_birth"] is None
    assert slots["requested_slot"] == "date_of_birth"
    assert responses(dispatcher) == ["utter_invalid_date_of_birth"]


async def test_consent_no_ends_the_form_and_marks_the_outcome(dispatcher, make_tracker, domain):
    tracker = make_tracker(slots={"easy_read": False}, text="no", set_this_turn={"consent": "no"})
    slots = await validate(dispatcher, tracker, domain)
    assert slots["consent"] is False
    assert slots["referral_outcome"] == "consent_declined"
    assert slots["requested_slot"] is None


async def test_consent_yes_records_the_time(dispatcher, make_tracker, domain):
    tracker = make_tracker(slots={"easy_read": False}, text="yes", set_this_turn={"consent": "yes"})
    slots = await validate(dispatcher, tracker, domain)
    assert slots["consent"] is True and slots["consent_given_at"]
    assert slots["requested_slot"] == "referrer_type"


async def test_skipping_both_contact_routes_asks_again_for_a_phone(dispatcher, make_tracker, domain):
    base = answered(phone=SKIPPED, email=None, contact_preference=None)
    tracker = make_tracker(slots=base, text="skip", set_this_turn={"email": "skip"})
    slots = await validate(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_invalid_contact_route"]
    assert slots["phone"] is None and slots["email"] is None
    assert slots["requested_slot"] == "phone"


async def test_a_risk_yes_shows_crisis_numbers_and_asks_for_details(dispatcher, make_tracker, domain):
    base = answered(current_risk=None, self_harm_history=None)
    tracker = make_tracker(slots=base, text="yes", set_this_turn={"current_risk": "yes"})
    slots = await validate(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_risk_support"]
    assert slots["requested_slot"] == "current_risk_details"


async def test_under_18_gets_an_honest_message_and_continues(dispatcher, make_tracker, domain):
    base = {
        "consent": True,
        "referrer_type": "self",
        "full_name": "Sam",
        "preferred_name": SKIPPED,
        "pronouns": SKIPPED,
    }
    tracker = make_tracker(slots=base, text="1 June 2012", set_this_turn={"date_of_birth": "1 June 2012"})
    slots = await validate(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_under_minimum_age"]
    assert slots["date_of_birth"] == "2012-06-01"


async def test_review_summary_is_set_before_review_is_asked(dispatcher, make_tracker, domain):
    tracker = make_tracker(slots=answered(), text="no", set_this_turn={"optional_questions": "no"})
    slots = await validate(dispatcher, tracker, domain)
    assert slots["requested_slot"] == "review"
    assert slots["allergies"] == SKIPPED
    assert "- Full name: Jane" in slots["review_summary"]


async def test_change_at_review_clears_only_that_answer(dispatcher, make_tracker, domain):
    tracker = make_tracker(
        slots=answered(optional_questions=False),
        text="change my phone number",
        set_this_turn={"review": "change my phone number"},
    )
    slots = await validate(dispatcher, tracker, domain)
    assert slots["phone"] is None and slots["review"] is None
    assert slots["requested_slot"] == "phone"
    assert "full_name" not in slots


async def test_change_an_answer_asks_which(dispatcher, make_tracker, domain):
    tracker = make_tracker(
        slots=answered(optional_questions=False),
        text="Change an answer",
        set_this_turn={"review": "Change an answer"},
    )
    slots = await validate(dispatcher, tracker, domain)
    assert slots["requested_slot"] == "change_item"


async def test_send_at_review_stores_the_referral(dispatcher, make_tracker, domain, monkeypatch, tmp_path):
    from bot.store.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    monkeypatch.setenv("DATABASE_URL", url)
    tracker = make_tracker(
        slots=answered(optional_questions=False),
        text="send",
        set_this_turn={"review": "send"},
        sender_id="conv-42",
    )
    slots = await validate(dispatcher, tracker, domain)
    assert slots["referral_outcome"] == "submitted"
    assert slots["requested_slot"] is None
    assert services.find_referral(UnitOfWork(url), slots["reference"])["full_name"] == "Jane"


async def test_store_failure_keeps_every_answer_and_asks_again(
    dispatcher, make_tracker, domain, monkeypatch, tmp_path
):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'not-migrated.db'}")
    tracker = make_tracker(
        slots=answered(optional_questions=False), text="send", set_this_turn={"review": "send"}
    )
    slots = await validate(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_submit_failed"]
    assert slots["review"] is None and slots["requested_slot"] == "review"
    assert "referral_outcome" not in slots
    assert tracker.slots["full_name"] == "Jane"


@pytest.mark.parametrize(
    "outcome, response, follow",
    [
        ("submitted", "utter_already_sent", False),
        ("consent_declined", "utter_conversation_closed", False),
        (None, "utter_opening", True),
    ],
)
async def test_unexpected_messages_say_where_things_stand(
    dispatcher, make_tracker, domain, outcome, response, follow
):
    tracker = make_tracker(slots={"referral_outcome": outcome}, text="hello again", active_loop=None)
    events = await ActionHandleUnexpected().run(dispatcher, tracker, domain)
    assert responses(dispatcher) == [response]
    assert (events == [{"event": "followup", "name": "referral_form", "timestamp": None}]) is follow


def test_custom_actions_in_the_domain_are_exactly_those_registered(domain):
    from rasa_sdk.executor import ActionExecutor

    executor = ActionExecutor()
    executor.register_package("actions")
    assert set(executor.actions) == set(domain["actions"])
