"""Generated from the domain: every crisis intent at every question each form
asks (the referral, its review and change-an-answer steps, the
questionnaires, and the safety questions).

For each: no slot mapping takes the message; the referral form's validation
action rejects the turn explicitly, so the crisis rule always gets it; the
rule utters the fixed crisis wording first; and the follow-up stores the
message as the answer only in a risk-narrative field (bot/dataset.yml), where
the disclosure is the answer. The same through Rasa itself, one crisis at each
question of a whole conversation: tests/test_e2e_dialogue.py.
"""

from pathlib import Path

import pytest
import yaml
from test_crisis_actions import slots_of
from test_referral import answered

from actions import settings as action_settings
from actions.crisis import NOT_ASKED, ActionCrisisFollowUp
from actions.forms import ValidateReferralForm
from bot import dataset
from bot.crisis import routing
from bot.store.migrate import upgrade

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = yaml.safe_load((ROOT / "domain.yml").read_text())
RULES = yaml.safe_load((ROOT / "data" / "rules" / "referral.yml").read_text())["rules"]
# A message the detector puts at each intent's level (written for this test).
TEXTS = {
    "crisis": "I want to end my life",
    "crisis_imminent": "I've taken an overdose",
    "crisis_other": "my friend says she is going to kill herself",
    "crisis_danger": "my partner hit me and I'm scared to go home",
    "risk_check": "I feel hopeless and I can't see a way out",
}
CASES = [
    (form, slot, intent)
    for form, spec in DOMAIN["forms"].items()
    for slot in spec["required_slots"]
    for intent in sorted(routing.CRISIS_INTENTS)
]
NARRATIVE = {spec.name for spec in dataset.load().fields if spec.risk_narrative}


@pytest.fixture(scope="module", autouse=True)
def store(tmp_path_factory):
    """One real store for the module (a migration per case would be most of the time)."""
    var = tmp_path_factory.mktemp("every-slot")
    url = f"sqlite:///{var / 'referrals.db'}"
    upgrade(url)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REFERRAL_VAR_DIR", str(var))
        patch.setenv("DATABASE_URL", url)
        action_settings.settings.cache_clear()
        yield url
    action_settings.settings.cache_clear()


def test_every_crisis_intent_has_a_text_and_every_form_is_covered():
    assert set(TEXTS) == set(routing.CRISIS_INTENTS)
    assert {form for form, _, _ in CASES} == {"referral_form", "safety_form"}
    assert {"review", "change_item", "phq9_9", "gad7_1", "risk_check", "safe_now"} <= {s for _, s, _ in CASES}


@pytest.mark.parametrize("intent", sorted(routing.CRISIS_INTENTS))
def test_each_crisis_intent_has_a_rule_that_speaks_first_in_any_state(intent):
    [rule] = [r for r in RULES if r["steps"][0] == {"intent": intent}]
    assert "condition" not in rule  # whatever the dialogue state
    actions = [step["action"] for step in rule["steps"][1:] if "action" in step]
    response = routing.RESPONSES.get({v: k for k, v in routing.INTENTS.items()}[intent])
    expected = ([response] if response else []) + ["action_crisis_follow_up", "safety_form"]
    assert actions == expected


@pytest.mark.parametrize("form, slot, intent", CASES)
async def test_a_crisis_at_every_question(dispatcher, make_tracker, domain, form, slot, intent):
    text = TEXTS[intent]
    for mapping in DOMAIN["slots"][slot]["mappings"]:
        if mapping["type"] == "from_text":
            assert intent in mapping["not_intent"], "the slot would take the message as its answer"

    slots = {**answered(), slot: None, "requested_slot": slot}
    if form == "referral_form":
        turn = make_tracker(slots=slots, text=text, intent=intent)
        rejected = await ValidateReferralForm().run(dispatcher, turn, domain)
        assert [e["event"] for e in rejected] == ["action_execution_rejected"]

    follow_up = make_tracker(slots=slots, text=text, intent=intent, active_loop=form)
    set_now = slots_of(await ActionCrisisFollowUp().run(dispatcher, follow_up, domain))
    if form == "referral_form" and slot in NARRATIVE:
        assert set_now[slot] == text  # the disclosure is the answer
    elif form == "referral_form":
        assert set_now.get(slot) is None  # never stored
    else:
        assert set_now.get(slot) != text  # a safety question starts again, unanswered
    if form == "referral_form" and slot not in NARRATIVE and slot in dataset.load().names:
        assert set_now["crisis_asks"] == {slot: 1}
    # The safety questions start afresh, whatever was being asked.
    expected_risk_check = None if intent == "risk_check" else NOT_ASKED
    assert set_now["risk_check"] == expected_risk_check and set_now["continue_referral"] is None
