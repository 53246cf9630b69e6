"""Validation and normalisation of every answer in the referral dialogue.

``check(spec, text, rules)`` returns an :class:`Outcome`: either the value to
store, or ``problem``, a key naming the re-ask. The adapter utters
``utter_invalid_<problem>`` (defined in domain.yml) and asks again. Nothing
here raises on bad input: any string, however odd, gets an outcome.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

import email_validator
import phonenumbers

from bot import answers
from bot.config import MAX_MESSAGE_CHARS
from bot.dataset import (
    CONTACT,
    DECLINABLE,
    DECLINED,
    OPTIONAL,
    SKIPPED,
    UNKNOWN,
    FieldSpec,
)


@dataclass(frozen=True)
class Rules:
    """Local rules that depend on the service configuration."""

    postal_format: str = "us"
    phone_region: str = "US"
    today: dt.date | None = None

    @property
    def date_today(self) -> dt.date:
        return self.today or dt.date.today()


@dataclass(frozen=True)
class Outcome:
    value: object = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def problem(key: str) -> Outcome:
    return Outcome(problem=key)


# ---------------------------------------------------------------- phrases


def _norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().replace("\u2019", "'")
    text = re.sub(r"[^\w\s']", " ", text)
    return re.sub(r"\s+", " ", text).strip()


_SKIP = {
    "skip",
    "skip it",
    "skip this",
    "skip that",
    "pass",
    "next",
    "next question",
    "skip please",
    "please skip",
    "none of your business",
}
_UNKNOWN = {
    "i don't know",
    "i dont know",
    "dont know",
    "don't know",
    "idk",
    "not sure",
    "i'm not sure",
    "im not sure",
    "unsure",
    "no idea",
    "i have no idea",
    "dunno",
}
_DECLINE = {
    "i'd rather not say",
    "id rather not say",
    "rather not say",
    "i'd rather not",
    "id rather not",
    "rather not",
    "prefer not to say",
    "i prefer not to say",
    "i would rather not say",
    "i would prefer not to say",
    "no comment",
    "decline",
    "i decline",
    "i don't want to say",
    "i dont want to say",
    "not telling",
    "private",
    "prefer not to answer",
    "i'd prefer not to say",
}
def non_answer(text: str) -> str | None:
    """SKIPPED, UNKNOWN or DECLINED when the text is one of those phrases."""
    words = _norm(text)
    if words in _SKIP:
        return SKIPPED
    if words in _UNKNOWN:
        return UNKNOWN
    if words in _DECLINE:
        return DECLINED
    return None


def parse_yes_no(text: str, nlu: dict | None = None) -> bool | None:
    """An ordinary yes/no answer (bot.answers), or the NLU's confident guess; None if unclear.

    A hedged answer ("yes but only after 5") or a mixed one ("yeah no
    problem") is None whatever the NLU says.
    """
    answer = answers.yes_no(text)
    if answer is None and not (answers.is_qualified(text) or answers.is_mixed(text)):
        answer = answers.nlu_guess(nlu, answers.NLU_YES_NO)
    return answer


def has_words(text: str) -> bool:
    """At least one letter or digit: emoji-only or punctuation-only text is not an answer."""
    return any(ch.isalnum() for ch in text)


_MARKUP = re.compile(r"<\s*/?\s*[a-zA-Z!][^>]*>")


# ---------------------------------------------------------------- formats

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan", "enero"),
            ("february", "feb", "febrero"),
            ("march", "mar", "marzo"),
            ("april", "apr", "abril"),
            ("may", "mayo"),
            ("june", "jun", "junio"),
            ("july", "jul", "julio"),
            ("august", "aug", "agosto"),
            ("september", "sep", "sept", "septiembre"),
            ("october", "oct", "octubre"),
            ("november", "nov", "noviembre"),
            ("december", "dec", "diciembre"),
        ],
        start=1,
    )
    for name in names
}
_ORDINAL = r"(\d{1,2})(?:st|nd|rd|th)?"


def parse_date(text: str, day_first: bool) -> dt.date | None:
    """A calendar date from common written forms, or None.

    Understands 1990-03-14, 14/03/1990 (or 03/14/1990 where the month comes
    first), 14 March 1990, March 14 1990, 14th of March, 1990. Impossible
    dates (31 February) give None.
    """
    raw = text.strip().lower().replace(",", " ")
    raw = re.sub(r"\s+", " ", raw)
    try:
        m = re.fullmatch(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})", raw)
        if m:
            return dt.date(int(m[1]), int(m[2]), int(m[3]))
        m = re.fullmatch(r"(\d{1,2})[-/.](\d{1,2})[-/.](\d{2}|\d{4})", raw)
        if m:
            a, b, year = int(m[1]), int(m[2]), _year(m[3])
            if a > 12 and b <= 12:
                day, month = a, b
            elif b > 12 and a <= 12:
                month, day = a, b
            else:
                day, month = (a, b) if day_first else (b, a)
            return dt.date(year, month, day)
        m = re.fullmatch(_ORDINAL + r"(?: of| de)? ([a-z]+)\.?(?: de)? (\d{4})", raw)
        if m and m[2] in _MONTHS:
            return dt.date(int(m[3]), _MONTHS[m[2]], int(m[1]))
        m = re.fullmatch(r"([a-z]+)\.? " + _ORDINAL + r" (\d{4})", raw)
        if m and m[1] in _MONTHS:
            return dt.date(int(m[3]), _MONTHS[m[1]], int(m[2]))
    except ValueError:
        return None
    return None


def _year(raw: str) -> int:
    if len(raw) == 4:
        return int(raw)
    this_year = dt.date.today().year % 100
    return 2000 + int(raw) if int(raw) <= this_year else 1900 + int(raw)


def age_on(born: dt.date, today: dt.date) -> int:
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def normalise_phone(text: str, region: str) -> str | None:
    """E.164 form of a valid phone number, or None."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(text: str) -> str | None:
    """An email address as the standards allow it (``José@example.com`` too),
    with its domain in lower case; None if it is not one. No DNS look-up."""
    try:
        return email_validator.validate_email(text.strip(), check_deliverability=False).normalized
    except email_validator.EmailNotValidError:
        return None


_ZIP = re.compile(r"(\d{5})(?:[- ]?(\d{4}))?")
_UK_POSTCODE = re.compile(r"([A-Z]{1,2}[0-9][A-Z0-9]?) ?([0-9][A-Z]{2})")


def normalise_postal_code(text: str, postal_format: str) -> str | None:
    candidate = text.strip().upper()
    if postal_format == "uk":
        m = _UK_POSTCODE.fullmatch(re.sub(r"\s+", " ", candidate))
        return f"{m[1]} {m[2]}" if m else None
    m = _ZIP.fullmatch(candidate)
    if not m:
        return None
    return f"{m[1]}-{m[2]}" if m[2] else m[1]


def match_choice(text: str, choices: tuple[str, ...]) -> str | None:
    """The choice a person picked, by its words or its number in the list."""
    words = _norm(text)
    if not words:
        return None
    if words.isdigit() and 1 <= int(words) <= len(choices):
        return choices[int(words) - 1]
    for choice in choices:
        if words == _norm(choice):
            return choice
    hits = [c for c in choices if _norm(c).startswith(words) or words in _norm(c).split()]
    if len(hits) == 1:
        return hits[0]
    hits = [c for c in choices if _norm(c) in words]
    return hits[0] if len(hits) == 1 else None


# ---------------------------------------------------------------- fields


def check(
    spec: FieldSpec, text: str | None, rules: Rules, allow_unknown: bool = False, nlu: dict | None = None
) -> Outcome:
    """Validate one answer to ``spec``'s question.

    ``allow_unknown``: on a supported referral a required field may be
    answered "I don't know"; the referrer cannot know everything.
    ``nlu``: Rasa's intent for this text, used where the fast path cannot
    read a yes or a no.
    """
    if text is None or not text.strip():
        return problem("empty")
    if len(text) > MAX_MESSAGE_CHARS:
        return problem("too_long")
    text = text.strip()

    status = non_answer(text)
    if spec.name == "current_risk" and status == UNKNOWN and allow_unknown:
        return Outcome(UNKNOWN)  # a referrer who does not know: listed as missing for staff
    if spec.name in _SAFETY_CHECKERS:
        # Unsure, "rather not say", only an emoji, "no but...": all take the careful side.
        return _SAFETY_CHECKERS[spec.name](text)
    if status is not None:
        if spec.requirement in (OPTIONAL, CONTACT):
            return Outcome(status)
        if spec.requirement == DECLINABLE:
            return Outcome(DECLINED if status != UNKNOWN else UNKNOWN)
        if allow_unknown and status == UNKNOWN:
            return Outcome(UNKNOWN)
        return problem("cannot_skip")
    if spec.type == "int" and spec.choices:
        return _check_score(spec, text)
    if not has_words(text):
        return problem("no_words")
    if spec.input == "yes_no":
        answer = parse_yes_no(text, nlu)
        return problem("yes_no") if answer is None else Outcome(answer)
    checker = _CHECKERS.get(spec.name) or _CHECKERS.get(spec.input, _check_text)
    return checker(spec, text, rules)


def _check_score(spec: FieldSpec, text: str) -> Outcome:
    """A questionnaire answer: its score, the position of the choice (0 to 3).

    A bare number is asked again: "2" could be the score or the second choice.
    """
    choice = None if text.strip().isdigit() else match_choice(text, spec.choices)
    if choice is not None:
        return Outcome(spec.choices.index(choice))
    return problem("frequency")


def _check_text(spec: FieldSpec, text: str, rules: Rules) -> Outcome:
    return Outcome(text)


# Names are letters in any script, with spaces, hyphens, apostrophes, dots and commas.
_NOT_IN_NAMES = re.compile(r"[0-9<>{}\[\];=|\\@#$%^*_~+/]")


def _check_name(spec: FieldSpec, text: str, rules: Rules) -> Outcome:
    if _NOT_IN_NAMES.search(text) or len(text) > 200 or not any(ch.isalpha() for ch in text):
        return problem(spec.name)
    return Outcome(re.sub(r"\s+", " ", text))


def _check_date(spec: FieldSpec, text: str, rules: Rules) -> Outcome:
    day_first = rules.postal_format == "uk"
    born = parse_date(text, day_first=day_first)
    if born is None:
        return problem(spec.name)
    if born > rules.date_today:
        return problem(f"{spec.name}_future")
    if age_on(born, rules.date_today) > 120:
        return problem(f"{spec.name}_too_old")
    return Outcome(born.isoformat())


def _check_phone(spec: FieldSpec, text: str, rules: Rules) -> Outcome:
    value = normalise_phone(text, rules.phone_region)
    return Outcome(value) if value else problem(spec.name)


def _check_email(spec: FieldSpec, text: str, rules: Rules) -> Outcome:
    value = normalise_email(text)
    return Outcome(value) if value else problem(spec.name)


def _check_postal_code(spec: FieldSpec, text: str, rules: Rules) -> Outcome:
    value = normalise_postal_code(text, rules.postal_format)
    if value:
        return Outcome(value)
    return problem(f"{spec.name}_uk" if rules.postal_format == "uk" else spec.name)


def _check_choice(spec: FieldSpec, text: str, rules: Rules) -> Outcome:
    choice = match_choice(text, spec.choices)
    if choice is not None:
        return Outcome(choice)
    if spec.free_text:
        return Outcome(text)
    return problem(spec.name)


def _check_current_risk(text: str) -> Outcome:
    """Only a clear no is "no"; a plain yes is "yes"; anything else is "unclear",
    which is handled as a yes (the details question, and a flag at triage)."""
    if answers.clear_no(text):
        return Outcome("no")
    return Outcome("yes" if answers.clear_yes(text) else "unclear")


def _check_contact_safe(text: str) -> Outcome:
    """Only a clear yes means it is safe to contact the person directly;
    anything else takes the careful side: contact goes through the referrer."""
    return Outcome(answers.clear_yes(text))


def is_unclear_safety_answer(field: str, text: str) -> bool:
    """A safety question answered with anything but a plain answer: kept word for word for staff."""
    if field not in _SAFETY_CHECKERS and field not in SAFETY_QUESTIONS:
        return False
    return not (answers.clear_no(text) or answers.clear_yes(text, safe=True))


def _check_medications(spec: FieldSpec, text: str, rules: Rules) -> Outcome:
    if _norm(text) in {
        "none",
        "no",
        "nothing",
        "no medication",
        "no medicine",
        "no medicines",
        "i don't take any",
        "i dont take any",
        "not taking any",
        "nope",
    }:
        return Outcome("none")
    return Outcome(text)


# Safety questions: a clear answer only; anything else takes the careful side.
_SAFETY_CHECKERS = {"current_risk": _check_current_risk, "person_contact_safe": _check_contact_safe}
# The safety form's questions, read the same way (actions/crisis.py).
SAFETY_QUESTIONS = ("risk_check", "safe_now")

_CHECKERS = {
    "full_name": _check_name,
    "preferred_name": _check_name,
    "referrer_name": _check_name,
    "current_medications": _check_medications,
    "date": _check_date,
    "phone": _check_phone,
    "email": _check_email,
    "postal_code": _check_postal_code,
    "choice": _check_choice,
}

__all__ = [
    "Outcome",
    "Rules",
    "check",
    "non_answer",
    "parse_date",
    "parse_yes_no",
    "match_choice",
    "normalise_phone",
    "normalise_email",
    "normalise_postal_code",
    "age_on",
]
