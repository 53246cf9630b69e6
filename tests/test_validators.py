import datetime as dt

import pytest

from bot import dataset
from bot.dataset import DECLINED, SKIPPED, UNKNOWN
from bot.validators import (
    Rules,
    check,
    match_choice,
    normalise_email,
    normalise_phone,
    normalise_postal_code,
    parse_date,
    parse_yes_no,
)

US = Rules(postal_format="us", phone_region="US", today=dt.date(2026, 11, 22))
UK = Rules(postal_format="uk", phone_region="GB", today=dt.date(2026, 11, 22))


def spec(name):
    return dataset.load().get(name)


@pytest.mark.parametrize(
    "text, day_first, expected",
    [
        ("14/03/1990", False, "1990-03-14"),
        ("14/03/1990", True, "1990-03-14"),
        ("03/14/1990", False, "1990-03-14"),
        ("03/04/1990", False, "1990-03-04"),
        ("03/04/1990", True, "1990-04-03"),
        ("1990-03-14", False, "1990-03-14"),
        ("March 14 1990", False, "1990-03-14"),
        ("March 14, 1990", False, "1990-03-14"),
        ("14 March 1990", False, "1990-03-14"),
        ("14th of March 1990", False, "1990-03-14"),
        ("14 Mar 1990", False, "1990-03-14"),
        ("14 de marzo de 1990", False, "1990-03-14"),
        ("14.03.1990", True, "1990-03-14"),
    ],
)
def test_dates_in_common_formats_are_understood(text, day_first, expected):
    assert parse_date(text, day_first).isoformat() == expected


@pytest.mark.parametrize(
    "text",
    ["31/02/1990", "30 February 1990", "1990-13-01", "32/01/1990", "yesterday", "1990", "14 Smarch 1990", ""],
)
def test_impossible_or_unreadable_dates_are_rejected(text):
    assert parse_date(text, day_first=False) is None


@pytest.mark.parametrize(
    "text, problem",
    [
        ("31/02/1990", "date_of_birth"),
        ("1 January 2030", "date_of_birth_future"),
        ("1 January 1890", "date_of_birth_too_old"),
        ("", "empty"),
        ("skip", "cannot_skip"),
        ("😀😀", "no_words"),
    ],
)
def test_bad_dates_of_birth_get_specific_reasks(text, problem):
    assert check(spec("date_of_birth"), text, US).problem == problem


def test_date_of_birth_is_stored_iso():
    assert check(spec("date_of_birth"), "March 14 1990", US).value == "1990-03-14"


@pytest.mark.parametrize(
    "text, region, expected",
    [
        ("(415) 555-2671", "US", "+14155552671"),
        ("415.555.2671", "US", "+14155552671"),
        ("+1 415 555 2671", "US", "+14155552671"),
        ("07911 123456", "GB", "+447911123456"),
    ],
)
def test_phone_numbers_are_normalised_to_e164(text, region, expected):
    assert normalise_phone(text, region) == expected


@pytest.mark.parametrize("text", ["12345", "phone", "+1 000 000 0000", "<script>alert(1)</script>"])
def test_invalid_phone_numbers_are_rejected(text):
    assert check(spec("phone"), text, US).problem == "phone"


def test_email_domain_is_lowercased_and_bad_addresses_rejected():
    assert normalise_email("Jane.Public@Example.COM") == "Jane.Public@example.com"
    for bad in ["jane", "jane@", "jane@example", "jane@@example.com", "a..b@example.com", "a b@c.com"]:
        assert normalise_email(bad) is None


def test_postal_codes_follow_the_configured_profile():
    assert normalise_postal_code("90210", "us") == "90210"
    assert normalise_postal_code("90210 1234", "us") == "90210-1234"
    assert normalise_postal_code("9021", "us") is None
    assert normalise_postal_code("sw1a1aa", "uk") == "SW1A 1AA"
    assert check(spec("postal_code"), "ABC", UK).problem == "postal_code_uk"
    assert check(spec("postal_code"), "ABC", US).problem == "postal_code"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("yes", True),
        ("Yeah!", True),
        ("y", True),
        ("No", False),
        ("nope", False),
        ("no thanks", False),
        ("maybe", None),
        ("", None),
    ],
)
def test_yes_no(text, expected):
    assert parse_yes_no(text) is expected


def test_choices_match_by_words_or_number():
    choices = ("Phone call", "Text message", "Email")
    assert match_choice("text", choices) == "Text message"
    assert match_choice("2", choices) == "Text message"
    assert match_choice("EMAIL", choices) == "Email"
    assert match_choice("carrier pigeon", choices) is None


@pytest.mark.parametrize(
    "field, text, expected",
    [
        ("allergies", "skip", SKIPPED),
        ("allergies", "I don't know", UNKNOWN),
        ("allergies", "I'd rather not say", DECLINED),
        ("self_harm_history", "I'd rather not say", DECLINED),
        ("self_harm_history", "skip", DECLINED),
        ("current_medications", "none", "none"),
        ("phone", "skip", SKIPPED),
    ],
)
def test_non_answers_are_recorded_as_such(field, text, expected):
    assert check(spec(field), text, US).value == expected


@pytest.mark.parametrize("field", ["full_name", "presenting_problem", "current_supports"])
def test_required_fields_cannot_be_skipped(field):
    assert check(spec(field), "skip", US).problem == "cannot_skip"


@pytest.mark.parametrize("text", ["I don't know", "I'd rather not say", "skip", "not sure"])
def test_current_risk_unsure_or_declined_is_unclear_for_the_person_and_unknown_for_a_referrer(text):
    assert check(spec("current_risk"), text, US).value == "unclear"
    assert check(spec("current_risk"), "I don't know", US, allow_unknown=True).value == UNKNOWN


def test_current_risk_treats_anything_but_a_clear_no_as_yes():
    assert check(spec("current_risk"), "no", US).value == "no"
    assert check(spec("current_risk"), "yes", US).value == "yes"
    assert check(spec("current_risk"), "sometimes maybe", US).value == "unclear"


@pytest.mark.parametrize(
    "text",
    [
        "<script>alert('x')</script>",
        "<b>Jane</b>",
        "😀",
        "   ",
        "x" * 2001,
        "\u0000",
        "'; DROP TABLE referrals;--",
    ],
)
def test_hostile_or_odd_input_never_raises(text):
    for field in dataset.load().fields:
        outcome = check(field, text, US)
        assert outcome.ok or outcome.problem


def test_markup_is_not_a_name_but_is_kept_as_free_text():
    assert check(spec("full_name"), "<script>alert(1)</script>", US).problem == "full_name"
    text = "I typed <b>this</b>"
    assert check(spec("presenting_problem"), text, US).value == text


def test_too_long_is_refused():
    assert check(spec("presenting_problem"), "a" * 2001, US).problem == "too_long"
    assert check(spec("presenting_problem"), "a" * 2000, US).ok


@pytest.mark.parametrize(
    "text", ["José Álvarez-Núñez", "Siobhán O'Neill", "Dr. A. N. Other", "李小龙", "Mary, Jane"]
)
def test_names_in_any_script_are_accepted(text):
    assert check(spec("full_name"), text, US).value == text


@pytest.mark.parametrize("text", ["'; DROP TABLE referrals;--", "jane@example.com", "R2D2", "{{name}}"])
def test_symbols_are_not_names(text):
    assert check(spec("full_name"), text, US).problem == "full_name"


def test_international_email_addresses_are_accepted_and_broken_ones_refused():
    assert normalise_email("José@example.com") == "José@example.com"
    assert normalise_email("user@münchen.de") == "user@münchen.de"
    assert normalise_email("Jane.Public@Example.COM") == "Jane.Public@example.com"
    for bad in ["a@b", "jane@", "José@", "two@@example.com"]:
        assert normalise_email(bad) is None, bad
