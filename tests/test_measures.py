"""PHQ-9 and GAD-7: scoring, severity bands, and the item 9 path."""

from __future__ import annotations

import pytest
from test_referral import answered

from actions.forms import ValidateReferralForm
from bot import dataset, measures, referral, triage, validators
from bot.config import Settings
from bot.dataset import SKIPPED

PHQ = measures.PHQ9_ITEMS
GAD = measures.GAD7_ITEMS


def items(phq: list[int], gad: list[int]) -> dict:
    return {**dict(zip(PHQ, phq, strict=True)), **dict(zip(GAD, gad, strict=True))}


@pytest.mark.parametrize(
    ("phq", "gad", "expected"),
    [
        ([0] * 9, [0] * 7, (0, "minimal", 0, "minimal")),
        ([1, 1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 1, 1, 1, 0, 0], (4, "minimal", 5, "mild")),
        ([1, 1, 1, 1, 1, 0, 0, 0, 0], [2, 2, 2, 2, 1, 0, 0], (5, "mild", 9, "mild")),
        ([2, 2, 2, 2, 2, 0, 0, 0, 0], [2, 2, 2, 2, 2, 0, 0], (10, "moderate", 10, "moderate")),
        ([3, 3, 3, 3, 2, 1, 0, 0, 0], [3, 3, 3, 3, 2, 1, 0], (15, "moderately severe", 15, "severe")),
        ([3, 3, 3, 3, 3, 3, 2, 0, 0], [3] * 7, (20, "severe", 21, "severe")),
        ([3] * 9, [3] * 7, (27, "severe", 21, "severe")),
    ],
)
def test_totals_and_severity_bands(phq, gad, expected):
    got = measures.scores(items(phq, gad))
    assert (got["phq9_score"], got["phq9_severity"], got["gad7_score"], got["gad7_severity"]) == expected


def test_a_partial_or_skipped_questionnaire_has_no_score():
    partial = items([1] * 9, [1] * 7)
    partial["phq9_4"] = SKIPPED
    del partial["gad7_7"]
    assert measures.scores(partial) == {
        "phq9_score": None,
        "phq9_severity": None,
        "gad7_score": None,
        "gad7_severity": None,
    }


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("Not at all", 0),
        ("several days", 1),
        ("More than half the days", 2),
        ("nearly every day", 3),
    ],
)
def test_answers_are_stored_as_scores(text, score):
    spec = dataset.load().get("phq9_1")
    assert validators.check(spec, text, validators.Rules("us", "US")).value == score


@pytest.mark.parametrize("text", ["sometimes", "2", "0"])
def test_an_unclear_answer_gets_a_specific_reask(text):
    spec = dataset.load().get("gad7_3")
    assert validators.check(spec, text, validators.Rules("us", "US")).problem == "frequency"


def test_offered_on_self_referrals_only_and_asked_after_a_yes():
    slots = referral.required_slots(answered(measures_offer=None))
    assert "measures_offer" in slots and "phq9_1" not in slots
    slots = referral.required_slots(answered(measures_offer=True))
    assert slots[slots.index("measures_offer") + 1 :][:16] == list(PHQ + GAD)
    supported = answered(referrer_type="someone_else", measures_offer=None)
    assert "measures_offer" not in referral.required_slots(supported)


def test_item_9_above_zero_is_a_red_flag_in_triage():
    raw_criteria = Settings.from_env().service_config().criteria
    base = answered(reason_for_referral_now="My doctor suggested it", **items([1] * 8 + [0], [0] * 7))
    assert triage.assess(raw_criteria, base).band == "routine"
    flagged = triage.assess(raw_criteria, {**base, "phq9_9": 1})
    assert flagged.band == "same_day" and "phq9_item9_positive" in flagged.rules


@pytest.mark.parametrize(("answer", "asks_at_once"), [("Several days", True), ("Not at all", False)])
async def test_item_9_above_zero_brings_up_the_safety_question_at_once(
    settings_env, dispatcher, make_tracker, domain, answer, asks_at_once
):
    before = answered(measures_offer=True, **{name: 0 for name in PHQ[:8]})
    tracker = make_tracker(slots=before, text=answer, set_this_turn={"phq9_9": answer})
    events = await ValidateReferralForm().run(dispatcher, tracker, domain)
    slots = {e["name"]: e["value"] for e in events if e.get("event") == "slot"}
    assert slots["phq9_9"] == (1 if asks_at_once else 0)
    assert bool(slots.get("crisis_pending")) is asks_at_once
    if asks_at_once:
        assert slots["risk_check"] is None  # the safety form asks the direct question first
        assert slots["requested_slot"] is None  # the referral form pauses for it
