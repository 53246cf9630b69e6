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


def referral_form_slots() -> list[str]:
    import yaml

    domain = yaml.safe_load((ROOT / "domain.yml").read_text())
    return domain["forms"][FORM]["required_slots"]


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


def _condition(variant) -> dict:
    return {c["name"]: c["value"] for c in variant.get("condition", [])}


@pytest.mark.parametrize(
    "spec",
    [
        f
        for f in dataset.load().fields
        # Standard measures are self-report, offered on self-referrals only.
        if f.section not in ("referrer", "supported", "measures") and f.name != referral.EASY_READ
    ],
    ids=lambda s: s.name,
)
def test_every_question_about_the_person_has_a_third_person_wording(domain, spec):
    variants = domain["responses"][f"utter_ask_{FORM}_{spec.name}"]
    by_condition = {tuple(sorted(_condition(v).items())): v for v in variants}
    assert len(by_condition) == len(variants) == 4
    standard = by_condition[(("referral_about", "other"), ("wording", "standard"))]
    easy = by_condition[(("referral_about", "other"), ("wording", "easy"))]
    for other in (standard, easy):
        assert re.search(r"\b(they|their|them)\b", other["text"], re.I), other["text"]


@pytest.mark.parametrize("slot", referral_form_slots())
def test_every_question_has_an_easy_read_wording_and_an_explanation(domain, slot):
    variants = domain["responses"][f"utter_ask_{FORM}_{slot}"]
    easy = [v for v in variants if _condition(v).get("wording") == "easy"]
    if all((v.get("metadata") or {}).get("verbatim") for v in variants):
        # A validated questionnaire item: its wording is never replaced; the
        # plain help sits around it and in the explanation.
        assert easy == []
    else:
        assert easy, "no easy-read wording"
    default = next(v for v in variants if not v.get("condition"))
    assert all(v["custom"] == default["custom"] for v in easy if "referral_about" not in _condition(v))
    [explanation] = domain["responses"][f"utter_explain_{slot}"]
    assert "We ask" in explanation["text"] or slot in ("change_item", "review", "optional_questions")


def test_at_most_one_conditional_wording_fits_any_conversation(domain):
    """Rasa picks at random among the conditional variations that match, so they must exclude each other."""
    import itertools

    values = {
        name: domain["slots"][name]["values"]
        for name in ("wording", "referral_about", "language", "service_profile")
    }
    for name, variants in domain["responses"].items():
        conditional = [_condition(v) for v in variants if v.get("condition")]
        for combo in itertools.product(*values.values()):
            state = dict(zip(values, combo, strict=True))
            fitting = [c for c in conditional if all(state.get(k) == v for k, v in c.items())]
            assert len(fitting) <= 1, (name, state, fitting)


def test_form_asks_in_data_dictionary_order(domain):
    required = domain["forms"][FORM]["required_slots"]
    names = [f.name for f in dataset.load().fields]
    # Simple words is asked before everything, so even the privacy notice can be easy read.
    names.remove(referral.EASY_READ)
    assert required[:2] == [referral.EASY_READ, "consent"]
    assert [n for n in required if n in names] == names


def test_every_problem_has_a_specific_reask(domain):
    missing = {k for k in problem_keys() if f"utter_invalid_{k}" not in domain["responses"]}
    assert not missing


def test_every_response_named_in_code_exists(domain):
    # Whole names only: "utter_invalid_" is a prefix the code matches on.
    named = set(re.findall(r"\"(utter_[a-z0-9_]*[a-z0-9])\"", code_text()))
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
    # action_handle_command: f"utter_explain_{requested_slot}"
    by_code |= {f"utter_explain_{slot}" for slot in domain["forms"][FORM]["required_slots"]}
    unused = set(catalogue.catalogue_responses()) - form_asks - by_code
    assert not unused, f"responses no code utters: {sorted(unused)}"


def test_crisis_numbers_are_in_the_opening_and_every_failure_message(domain):
    for name in (
        "utter_opening",
        "utter_service_error",
        "utter_service_unavailable",
        "utter_actions_paused",
        "utter_busy",
        "utter_submit_failed",
        "utter_if_things_get_worse",
        "utter_consent_declined",
    ):
        for profile, numbers in (("us", ("988", "911")), ("uk", ("116 123", "999"))):
            [variant] = _shown(domain["responses"][name], {**_initial(domain), "service_profile": profile})
            assert all(n in variant["text"] for n in numbers), (name, profile)


def test_submission_message_carries_the_protocol_payload(domain):
    [variant] = domain["responses"]["utter_referral_submitted"]
    submitted = {"reference": "{reference}", "expected_wait": "{expected_wait}", "band": "{urgency_band}"}
    assert variant["custom"] == {"submitted": submitted}


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


def test_crisis_text_and_commands_never_captured_as_an_answer(domain):
    from bot.commands import INTENTS as COMMANDS
    from bot.crisis.routing import CRISIS_INTENTS

    for name, slot in domain["slots"].items():
        for mapping in slot["mappings"]:
            if mapping["type"] == "from_text":
                [condition] = mapping["conditions"]
                # "greet" and "show_question" come only from the gateway (a new chat, a reload).
                expected = set(CRISIS_INTENTS) | {"greet", "show_question"}
                if condition["active_loop"] == FORM:
                    # "skip" is an answer: the validators record it as skipped.
                    expected |= set(COMMANDS) - {"skip"}
                assert set(mapping["not_intent"]) == expected, name


def _initial(domain):
    return {name: slot.get("initial_value") for name, slot in domain["slots"].items()}


def _shown(variants, slots):
    """The variants Rasa may choose from, given these slot values (its rule: the
    conditional variants whose every condition holds, else the default ones)."""
    holds = [
        v
        for v in variants
        if v.get("condition") and all(slots.get(c["name"]) == c["value"] for c in v["condition"])
    ]
    return holds or [v for v in variants if not v.get("condition")]


def test_the_uk_profile_never_shows_988_or_911(domain):
    """Every response naming a number follows the service profile, whatever else
    its variants depend on (wording, language, who the referral is about)."""
    checked = 0
    for name, variants in domain["responses"].items():
        texts = " ".join(v.get("text", "") for v in variants)
        if "988" not in texts and "911" not in texts:
            continue
        states = [_initial(domain)] + [
            {
                **_initial(domain),
                **{c["name"]: c["value"] for c in v.get("condition") or [] if c["name"] != "service_profile"},
            }
            for v in variants
        ]
        for state in states:
            for variant in _shown(variants, {**state, "service_profile": "uk"}):
                assert "988" not in variant["text"] and "911" not in variant["text"], (name, state)
            for variant in _shown(variants, {**state, "service_profile": "us"}):
                assert "116 123" not in variant["text"] and "999" not in variant["text"], (name, state)
        checked += 1
    assert checked >= 30


def test_the_gateways_own_messages_follow_the_profile():
    for name in messages.GATEWAY_RESPONSES:
        uk = messages.message(name, "uk")["text"]
        assert "988" not in uk and "911" not in uk, name
