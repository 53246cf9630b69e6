"""domain.yml agrees with the data dictionary, and every response is really used."""

import re
from pathlib import Path

import pytest
import response_catalogue as catalogue

from bot import dataset, referral, validators
from bot.web import messages

ROOT = Path(__file__).resolve().parent.parent
FORM = "referral_form"
BAD_INPUTS = [
    "",
    "   ",
    "x" * 2001,
    "skip",
    "😀",
    "<b>x</b>",
    "banana",
    "31/02/1990",
    "1/1/2090",
    "1/1/1800",
    "12",
    "maybe",
]


def all_specs():
    ds = dataset.load()
    return ds.fields + ds.steps


def code_text() -> str:
    return "\n".join(p.read_text() for d in ("actions", "bot") for p in (ROOT / d).rglob("*.py"))


def problem_keys() -> set[str]:
    keys = set()
    for rules in (validators.Rules("us", "US"), validators.Rules("uk", "GB")):
        for spec in dataset.load().fields:
            for text in BAD_INPUTS:
                outcome = validators.check(spec, text, rules)
                if outcome.problem:
                    keys.add(outcome.problem)
    return keys


@pytest.mark.parametrize("spec", all_specs(), ids=lambda s: s.name)
def test_every_question_has_a_scoped_slot_and_a_protocol_payload(domain, spec):
    slot = domain["slots"][spec.name]
    assert slot["influence_conversation"] is False
    [mapping] = slot["mappings"]
    assert mapping["type"] == "from_text"
    assert mapping["conditions"] == [{"active_loop": FORM, "requested_slot": spec.name}]
    assert spec.name in domain["forms"][FORM]["required_slots"]
    for variant in domain["responses"][f"utter_ask_{FORM}_{spec.name}"]:
        assert variant["text"].strip()
        payload = variant["custom"]
        assert payload["field"] == spec.name
        assert payload["input"] == spec.input
        assert payload["optional"] == spec.optional
        if spec.input == "choice" and spec.choices:
            assert payload["choices"] == list(spec.choices)


@pytest.mark.parametrize(
    "spec",
    [f for f in dataset.load().fields if f.section not in ("referrer", "supported")],
    ids=lambda s: s.name,
)
def test_every_question_about_the_person_has_a_third_person_wording(domain, spec):
    variants = domain["responses"][f"utter_ask_{FORM}_{spec.name}"]
    other = [
        v
        for v in variants
        if v.get("condition") == [{"type": "slot", "name": "referral_about", "value": "other"}]
    ]
    assert len(other) == 1 and len(variants) == 2
    assert re.search(r"\b(they|their|them)\b", other[0]["text"], re.I), other[0]["text"]


def test_form_asks_in_data_dictionary_order(domain):
    required = domain["forms"][FORM]["required_slots"]
    names = [f.name for f in dataset.load().fields]
    assert [n for n in required if n in names] == names


def test_every_problem_has_a_specific_reask(domain):
    missing = {k for k in problem_keys() if f"utter_invalid_{k}" not in domain["responses"]}
    assert not missing


def test_every_response_named_in_code_exists(domain):
    named = set(re.findall(r"\"(utter_[a-z0-9_]+)\"", code_text()))
    named |= set(referral.OUTCOME_RESPONSES.values()) | set(messages.GATEWAY_RESPONSES)
    assert named - set(domain["responses"]) == set()


def test_catalogue_is_current():
    assert catalogue.CATALOGUE.read_text() == catalogue.render(), "run: python tests/response_catalogue.py"


def test_every_catalogued_response_is_uttered_by_the_form_or_by_code(domain):
    form_asks = {
        f"utter_ask_{form}_{slot}"
        for form, spec in domain["forms"].items()
        for slot in spec["required_slots"]
    }
    by_code = set(re.findall(r"\"(utter_[a-z0-9_]+)\"", code_text()))
    by_code |= {f"utter_invalid_{k}" for k in problem_keys()}
    by_code |= {
        "utter_invalid_yes_no",
        "utter_invalid_referrer_type",
        "utter_invalid_review",
        "utter_invalid_contact_route",
        "utter_invalid_contact_preference_phone",
        "utter_invalid_contact_preference_email",
    }
    by_code |= set(referral.OUTCOME_RESPONSES.values()) | set(messages.GATEWAY_RESPONSES)
    unused = set(catalogue.catalogue_responses()) - form_asks - by_code
    assert not unused, f"responses no code utters: {sorted(unused)}"


def test_crisis_numbers_are_in_the_opening_and_every_failure_message(domain):
    for name in (
        "utter_opening",
        "utter_service_error",
        "utter_submit_failed",
        "utter_if_things_get_worse",
        "utter_consent_declined",
    ):
        text = domain["responses"][name][0]["text"]
        assert "988" in text and "911" in text, name


def test_submission_message_carries_the_protocol_payload(domain):
    [variant] = domain["responses"]["utter_referral_submitted"]
    assert variant["custom"] == {
        "submitted": {"reference": "{reference}", "expected_wait": "{expected_wait}"}
    }


CRISIS_RESPONSES = ("utter_crisis_imminent", "utter_crisis_self", "utter_crisis_other", "utter_crisis_danger")


@pytest.mark.parametrize("name", CRISIS_RESPONSES)
def test_crisis_responses_are_fixed_text_with_resources_in_every_profile_and_language(domain, name):
    variants = domain["responses"][name]
    by_condition = {tuple((c["name"], c["value"]) for c in v.get("condition", [])): v for v in variants}
    us, es, uk = (
        by_condition[()],
        by_condition[(("language", "es"), ("service_profile", "us"))],
        by_condition[(("service_profile", "uk"),)],
    )
    assert "911" in us["text"] and "988" in us["text"]
    assert "911" in es["text"] and "988" in es["text"]
    assert "999" in uk["text"]
    for variant in (us, es, uk):
        crisis = variant["custom"]["crisis"]
        assert crisis["level"] in ("crisis", "imminent") and crisis["subject"] in ("self", "other")
        assert all({"name", "call", "text", "chat_url", "hours"} <= set(r) for r in crisis["resources"])
        assert crisis["resources"]


def test_imminent_puts_the_emergency_number_first(domain):
    text = domain["responses"]["utter_crisis_imminent"][-1]["text"]
    assert text.index("911") < text.index("988")


def test_safe_messaging_no_method_words_in_crisis_text(domain):
    method_words = re.compile(r"\b(pills?|tablets?|rope|bridge|overdose|dose|knife|gun|jump|hang)\b", re.I)
    for name, variants in domain["responses"].items():
        if name.startswith(("utter_crisis", "utter_ask_safety_form", "utter_risk")):
            for variant in variants:
                assert not method_words.search(variant["text"]), name


def test_crisis_text_never_captured_as_an_answer(domain):
    from bot.crisis.routing import CRISIS_INTENTS

    for name, slot in domain["slots"].items():
        for mapping in slot["mappings"]:
            if mapping["type"] == "from_text":
                assert set(mapping["not_intent"]) == set(CRISIS_INTENTS), name
