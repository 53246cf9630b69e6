from bot import dataset, referral
from bot.dataset import DECLINED, SKIPPED, UNKNOWN
from bot.dataset import load as load_dataset

ACCESS = {spec.name for spec in load_dataset().section("access")}
MEASURES = {spec.name for spec in load_dataset().section("measures")}


def answered(**overrides):
    """Every core field answered, as the form would hold it."""
    values = {
        "consent": True,
        "referrer_type": "self",
        "full_name": "Jane",
        "preferred_name": SKIPPED,
        "pronouns": SKIPPED,
        "date_of_birth": "1990-03-14",
        "postal_code": "90210",
        "phone": "+14155552671",
        "email": SKIPPED,
        "contact_preference": "Phone call",
        "safe_to_leave_message": True,
        "presenting_problem": "low",
        "problem_duration": "months",
        "functional_impact": "work",
        "reason_for_referral_now": "worse",
        "current_risk": "no",
        "self_harm_history": DECLINED,
        "safeguarding_concerns": "no",
        "current_medications": "none",
        "current_supports": "sister",
        "measures_offer": False,
    }
    values.update({spec.name: SKIPPED for spec in dataset.load().section("access")})
    values.update({spec.name: SKIPPED for spec in dataset.load().section("measures")})
    values.update(overrides)
    return values


def test_simple_words_then_consent_come_first_and_no_ends_the_form():
    assert referral.required_slots({}) == ["easy_read", "consent"]
    assert referral.required_slots({"consent": False}) == ["easy_read", "consent"]
    assert referral.required_slots({"consent": True}) == ["easy_read", "consent", "referrer_type"]


def supported(who="someone_else", **overrides):
    values = answered(
        referrer_type=who,
        referrer_name="Pat",
        referrer_relationship="Parent",
        referrer_role="GP or primary care",
        referrer_organisation="Oak Clinic",
        referrer_phone="+14155550199",
        referrer_email=SKIPPED,
        referrer_contact_ok=True,
        person_consent_status="They don't know yet",
        person_contact_safe=True,
    )
    values.update(overrides)
    return values


def test_someone_else_gives_their_details_then_consent_status_then_the_dataset():
    slots = referral.required_slots(supported())
    assert slots[3:10] == [
        "referrer_name",
        "referrer_relationship",
        "referrer_phone",
        "referrer_email",
        "referrer_contact_ok",
        "person_consent_status",
        "person_contact_safe",
    ]
    assert "referrer_role" not in slots and slots[10] == "preferred_language"
    assert slots[slots.index("feel_safer") + 1] == "full_name"


def test_a_professional_gives_role_and_organisation_and_always_a_risk_narrative():
    slots = referral.required_slots(supported("professional"))
    assert slots[3:6] == ["referrer_name", "referrer_role", "referrer_organisation"]
    assert "current_risk_details" in slots  # even after "no"


def test_person_contact_questions_are_skipped_when_contacting_them_is_not_safe():
    slots = referral.required_slots(supported(person_contact_safe=False))
    assert not set(referral.PERSON_CONTACT_FIELDS) & set(slots)


def test_supported_record_keeps_the_referrer_apart_and_lists_what_is_missing():
    minimum = ("full_name", "current_risk", "current_risk_details", "reason_for_referral_now")
    record = referral.record(
        supported("professional", current_risk=UNKNOWN, current_risk_details=UNKNOWN), minimum
    )
    assert record["referrer"]["referrer_name"] == "Pat" and "referrer_name" not in record
    assert record["needs_clarification"] is True
    assert record["missing_fields"] == ["current_risk", "current_risk_details"]
    assert record["dataset_complete"] is False
    assert referral.record(answered(), minimum[:1])["referrer"] is None


def test_self_path_asks_core_fields_then_optional_gate_then_review():
    slots = referral.required_slots(answered())
    access = [s.name for s in dataset.load().section("access") if s.name != "easy_read"]
    core = [s.name for s in dataset.load().section("core")]
    assert slots[:3] == ["easy_read", "consent", "referrer_type"]
    assert slots[3 : 3 + len(access)] == access  # reasonable adjustments first
    assert slots[3 + len(access) : 3 + len(access) + len(core)] == core
    assert slots[-2:] == ["optional_questions", "review"]
    assert "current_risk_details" not in slots


def test_risk_details_are_asked_after_a_yes_or_an_unclear_answer():
    for value in ("yes", "unclear"):
        slots = referral.required_slots(answered(current_risk=value))
        assert slots[slots.index("current_risk") + 1] == "current_risk_details"


def test_extra_questions_only_when_agreed():
    slots = referral.required_slots(answered(optional_questions=True))
    assert {s.name for s in dataset.load().section("extra")} <= set(slots)


def test_change_item_is_asked_when_the_person_wants_to_change_but_has_not_said_what():
    slots = referral.required_slots(answered(optional_questions=False, review="change"))
    assert slots[-2:] == ["change_item", "review"]


def test_review_understands_send_change_and_which():
    answers = answered()
    assert referral.parse_review("Send my referral", answers).action == "send"
    assert referral.parse_review("yes", answers).action == "send"
    choice = referral.parse_review("change my phone number", answers)
    assert (choice.action, choice.field) == ("change", "phone")
    assert referral.parse_review("Email address", answers).field == "email"
    assert referral.parse_review("Change an answer", answers).action == "which"
    assert referral.parse_review("the weather is nice", answers) is None


def test_a_field_not_on_the_path_cannot_be_chosen():
    # extra questions were not asked, so "allergies" is not offered as a change
    assert referral.parse_review("change allergies", answered(optional_questions=False)).action == "which"


def test_contact_route_rules():
    assert referral.contact_route_missing({"phone": SKIPPED, "email": UNKNOWN})
    assert not referral.contact_route_missing({"phone": "+14155552671", "email": SKIPPED})
    answers = {"phone": SKIPPED, "email": "a@example.com"}
    assert referral.contact_preference_problem("Text message", answers) == "contact_preference_phone"
    assert referral.contact_preference_problem("Email", answers) is None


def test_record_lists_non_answers_and_completeness():
    record = referral.record(answered(allergies=UNKNOWN))
    assert record["declined_fields"] == ["self_harm_history"]
    assert set(record["skipped_fields"]) == {"preferred_name", "pronouns", "email"} | ACCESS | MEASURES
    assert record["unknown_fields"] == ["allergies"]
    assert record["self_harm_history"] is None
    assert record["dataset_complete"] is True


def test_record_is_incomplete_when_a_required_field_is_missing():
    assert referral.record(answered(presenting_problem=None))["dataset_complete"] is False


def test_summary_reads_back_every_answer_in_order():
    lines = referral.summary(answered()).splitlines()
    assert lines[:2] == ["- Simple words: (skipped)", "- Language: (skipped)"]  # adjustments first
    assert "- Full name: Jane" in lines
    assert "- Email address: (skipped)" in lines
    assert "- Self-harm in the past: (rather not say)" in lines


def test_referrer_type_from_choice_or_words():
    assert referral.parse_referrer_type("Myself") == "self"
    assert referral.parse_referrer_type("it's for me") == "self"
    assert referral.parse_referrer_type("my son") == "someone_else"
    assert referral.parse_referrer_type("I'm a GP") == "professional"
    assert referral.parse_referrer_type("banana") is None


def test_every_field_label_finds_its_own_field():
    ds = dataset.load()
    for spec in ds.fields:
        assert ds.match_label(f"change the {spec.label}") == spec, spec.name


def test_change_my_phone_number_means_the_referrers_own_on_a_supported_referral():
    assert referral.parse_review("change my phone number", supported()).field == "referrer_phone"
    assert referral.parse_review("change their phone number", supported()).field == "phone"
    assert referral.parse_review("change my phone number", answered()).field == "phone"


def test_no_contact_route_for_the_person_skips_how_to_contact_them():
    slots = referral.required_slots(supported(phone=UNKNOWN, email=UNKNOWN))
    assert "contact_preference" not in slots and "safe_to_leave_message" not in slots
