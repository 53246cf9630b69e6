"""Crisis actions with the real domain: follow-up, safety questions, second-line checks."""

import pytest
from test_referral import answered

from actions import settings as action_settings
from actions.crisis import ActionCrisisFollowUp, ValidateSafetyForm
from actions.fallback import ActionHandleUnexpected
from actions.forms import ValidateReferralForm
from bot import services
from bot.store.migrate import upgrade
from bot.store.unit_of_work import UnitOfWork


@pytest.fixture(autouse=True)
def store(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'referrals.db'}"
    upgrade(url)
    monkeypatch.setenv("REFERRAL_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", url)
    action_settings.settings.cache_clear()
    yield url
    action_settings.settings.cache_clear()


def slots_of(events):
    return {e["name"]: e["value"] for e in events if e.get("event") == "slot"}


def responses(dispatcher):
    return [m["response"] for m in dispatcher.messages]


def user_turns(make_tracker, texts, **kwargs):
    """A tracker whose user messages were `texts`, the last one latest."""
    tracker = make_tracker(text=texts[-1], **kwargs)
    tracker.events[:0] = [{"event": "user", "text": t} for t in texts[:-1]]
    return tracker


async def test_follow_up_gives_the_local_team_records_and_flags(dispatcher, make_tracker, domain, store):
    tracker = make_tracker(slots={"postal_code": "90210"}, text="I want to end my life", active_loop=None)
    events = await ActionCrisisFollowUp().run(dispatcher, tracker, domain)
    slots = slots_of(events)
    assert responses(dispatcher) == ["utter_crisis_local_team"]
    message = dispatcher.messages[0]
    assert message["local_team_call"] == "(555) 010-0101"
    assert message["custom"]["crisis"]["level"] == "crisis"
    assert any(r.get("local") for r in message["custom"]["crisis"]["resources"])
    assert slots["crisis_flag"] is True and slots["crisis_level"] == "crisis"
    assert slots["risk_check"] == "not_asked" and slots["safe_now"] is None
    [event] = services.crisis_events(UnitOfWork(store), "test-conversation")
    assert event["level"] == "crisis" and "suicidal_ideation" in event["categories"]
    assert "988 Suicide and Crisis Lifeline" in event["resources"]
    assert "end my life" not in repr(event)


async def test_follow_up_without_a_postal_code_offers_to_take_one(dispatcher, make_tracker, domain):
    tracker = make_tracker(text="I want to end my life", active_loop=None)
    await ActionCrisisFollowUp().run(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_crisis_ask_postal_code"]
    assert dispatcher.messages[0]["custom"]["crisis"]["resources"]


async def test_signposting_does_not_depend_on_the_store(
    dispatcher, make_tracker, domain, monkeypatch, tmp_path
):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    action_settings.settings.cache_clear()
    tracker = make_tracker(text="I want to end my life", active_loop=None)
    events = await ActionCrisisFollowUp().run(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_crisis_ask_postal_code"]
    assert slots_of(events)["crisis_flag"] is True


async def test_someone_else_at_risk_skips_are_you_safe(dispatcher, make_tracker, domain):
    tracker = make_tracker(text="My daughter says she wants to die", active_loop=None)
    slots = slots_of(await ActionCrisisFollowUp().run(dispatcher, tracker, domain))
    assert slots["crisis_subject"] == "other" and slots["safe_now"] == "not_asked"


async def test_ask_level_asks_directly(dispatcher, make_tracker, domain):
    tracker = make_tracker(text="I'm a burden on everyone", active_loop=None)
    slots = slots_of(await ActionCrisisFollowUp().run(dispatcher, tracker, domain))
    assert slots["risk_check"] is None and "crisis_flag" not in slots
    assert responses(dispatcher) == []


async def safety(dispatcher, tracker, domain):
    return slots_of(await ValidateSafetyForm().run(dispatcher, tracker, domain))


async def test_a_clear_no_to_the_direct_question_resumes(dispatcher, make_tracker, domain):
    tracker = make_tracker(text="no", active_loop="safety_form", set_this_turn={"risk_check": "no"})
    slots = await safety(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_risk_no"]
    assert slots["after_safety"] == "resume" and slots["crisis_pending"] is False


@pytest.mark.parametrize("answer", ["yes", "maybe", "sometimes", "I don't know", "idk"])
async def test_anything_but_a_clear_no_is_treated_as_yes(dispatcher, make_tracker, domain, answer):
    tracker = make_tracker(text=answer, active_loop="safety_form", set_this_turn={"risk_check": answer})
    slots = await safety(dispatcher, tracker, domain)
    assert responses(dispatcher)[0] == "utter_crisis_self"
    assert dispatcher.messages[0]["custom"]["crisis"]["level"] == "crisis"
    assert slots["crisis_flag"] is True and slots["risk_check"] == "yes"
    assert "after_safety" not in slots  # "are you safe now" comes next


@pytest.mark.parametrize(
    "answer, response, value",
    [
        ("yes", "utter_crisis_safe", "yes"),
        ("no", "utter_crisis_not_safe", "no"),
        ("not really sure", "utter_crisis_not_safe", "no"),
        ("jk", "utter_crisis_check_in", "retracted"),
        ("forget it", "utter_crisis_check_in", "retracted"),
        ("I'm fine", "utter_crisis_check_in", "retracted"),
    ],
)
async def test_are_you_safe_now(dispatcher, make_tracker, domain, answer, response, value):
    tracker = make_tracker(
        slots={"risk_check": "not_asked", "crisis_flag": True},
        text=answer,
        active_loop="safety_form",
        set_this_turn={"safe_now": answer},
    )
    slots = await safety(dispatcher, tracker, domain)
    assert responses(dispatcher) == [response]
    assert slots["safe_now"] == value
    assert slots.get("crisis_flag", True) is True  # a retraction never clears the flag


async def test_a_postal_code_given_at_are_you_safe_gets_the_local_team(dispatcher, make_tracker, domain):
    tracker = make_tracker(
        slots={"risk_check": "not_asked", "crisis_level": "crisis"},
        text="90210",
        active_loop="safety_form",
        set_this_turn={"safe_now": "90210"},
    )
    slots = await safety(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_crisis_local_team"]
    assert slots["safe_now"] is None and "after_safety" not in slots  # asked again


@pytest.mark.parametrize(
    "outcome, answer, after", [(None, "yes", "continue"), (None, "no", "stay"), ("submitted", None, "done")]
)
async def test_after_the_safety_questions(dispatcher, make_tracker, domain, outcome, answer, after):
    base = {"risk_check": "not_asked", "referral_outcome": outcome}
    if answer:
        tracker = make_tracker(
            slots={**base, "safe_now": "yes"},
            text=answer,
            active_loop="safety_form",
            set_this_turn={"continue_referral": answer},
        )
    else:
        tracker = make_tracker(
            slots=base, text="yes", active_loop="safety_form", set_this_turn={"safe_now": "yes"}
        )
    slots = await safety(dispatcher, tracker, domain)
    assert slots["after_safety"] == after


async def test_prefilled_safety_slots_are_not_validated_again(dispatcher, make_tracker, domain):
    tracker = make_tracker(
        slots={"requested_slot": None},
        text="I want to die",
        active_loop="safety_form",
        set_this_turn={"risk_check": "not_asked"},
    )
    await safety(dispatcher, tracker, domain)
    assert responses(dispatcher) == []


async def test_the_bridges_pattern_inside_the_form_pauses_it_and_is_not_stored(
    dispatcher, make_tracker, domain
):
    # At a question that is not about risk; in a risk narrative it would be
    # stored (tests/test_dialogue_control.py).
    base = answered(
        problem_duration=None,
        functional_impact=None,
        reason_for_referral_now=None,
        current_risk=None,
        self_harm_history=None,
        safeguarding_concerns=None,
        current_medications=None,
        current_supports=None,
    )
    tracker = user_turns(
        make_tracker,
        ["I lost my job and I can't cope", "Which bridges are taller than 25 m?"],
        slots=base,
        set_this_turn={"problem_duration": "Which bridges are taller than 25 m?"},
    )
    events = await ValidateReferralForm().run(dispatcher, tracker, domain)
    slots = slots_of(events)
    assert responses(dispatcher) == ["utter_crisis_self", "utter_crisis_local_team"]
    assert slots["problem_duration"] is None
    assert slots["crisis_asks"] == {"problem_duration": 1}
    assert slots["skip_offer_pending"] == "problem_duration"
    assert slots["crisis_pending"] is True and slots["requested_slot"] is None
    assert slots["crisis_flag"] is True


async def test_a_retraction_inside_the_form_gets_a_check_in_and_is_not_stored(
    dispatcher, make_tracker, domain
):
    base = answered(presenting_problem=None, crisis_flag=True)
    tracker = make_tracker(slots=base, text="jk", set_this_turn={"presenting_problem": "jk"})
    slots = slots_of(await ValidateReferralForm().run(dispatcher, tracker, domain))
    assert responses(dispatcher) == ["utter_crisis_check_in"]
    assert slots["presenting_problem"] is None


async def test_prefilled_answers_are_not_validated_again_when_the_form_resumes(
    dispatcher, make_tracker, domain
):
    tracker = make_tracker(
        slots=answered(requested_slot="continue_referral"),
        text="yes",
        set_this_turn={"consent": True, "referrer_type": "self"},
    )
    slots = slots_of(await ValidateReferralForm().run(dispatcher, tracker, domain))
    assert responses(dispatcher) == []
    assert "consent" not in slots or slots["consent"] is True


async def test_a_referral_sent_after_a_crisis_is_flagged_for_today(dispatcher, make_tracker, domain, store):
    tracker = make_tracker(
        slots=answered(optional_questions=False, crisis_flag=True),
        text="send",
        set_this_turn={"review": "send"},
    )
    slots = slots_of(await ValidateReferralForm().run(dispatcher, tracker, domain))
    record = services.find_referral(UnitOfWork(store), slots["reference"])
    assert record["crisis_flag"] is True and record["urgency_band"] == "emergency"
    assert "flagged_crisis" in [e["kind"] for e in record["events"]]


async def test_a_crisis_after_sending_flags_the_sent_referral(dispatcher, make_tracker, domain, store):
    tracker = make_tracker(
        slots=answered(optional_questions=False), text="send", set_this_turn={"review": "send"}
    )
    reference = slots_of(await ValidateReferralForm().run(dispatcher, tracker, domain))["reference"]
    assert services.find_referral(UnitOfWork(store), reference)["crisis_flag"] is False
    tracker = make_tracker(
        slots={"referral_outcome": "submitted"}, text="I want to kill myself", active_loop=None
    )
    await ActionCrisisFollowUp().run(dispatcher, tracker, domain)
    record = services.find_referral(UnitOfWork(store), reference)
    assert record["crisis_flag"] is True and record["urgency_band"] == "emergency"


async def test_the_fallback_checks_for_crisis_across_turns(dispatcher, make_tracker, domain):
    tracker = user_turns(
        make_tracker,
        ["my wife left me", "what's the tallest car park in town?"],
        slots={"referral_outcome": "submitted"},
        active_loop=None,
    )
    events = await ActionHandleUnexpected().run(dispatcher, tracker, domain)
    assert responses(dispatcher)[0] == "utter_crisis_self"
    assert events[-1] == {"event": "followup", "name": "safety_form", "timestamp": None}


async def test_the_fallback_resumes_a_referral_already_consented_to(dispatcher, make_tracker, domain):
    tracker = make_tracker(slots={"consent": True}, text="ok", active_loop=None)
    events = await ActionHandleUnexpected().run(dispatcher, tracker, domain)
    assert responses(dispatcher) == ["utter_resume_referral"]
    assert events[-1]["name"] == "referral_form"
