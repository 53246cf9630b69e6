"""The referral dialogue's rules, independent of Rasa.

``answers`` everywhere is a mapping of slot name to slot value, as the form
holds them: validated values, or the SKIPPED / UNKNOWN / DECLINED markers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bot import answers as reading
from bot import dataset
from bot.dataset import NON_ANSWERS, FieldSpec

REFERRER_TYPES = {"Myself": "self", "Someone else": "someone_else", "I'm a professional": "professional"}

# Dialogue step slots (see `steps` in dataset.yml).
EASY_READ = "easy_read"  # a dataset field, but asked before everything else
CONSENT = "consent"
REFERRER_TYPE = "referrer_type"
OPTIONAL_QUESTIONS = "optional_questions"
MEASURES_OFFER = "measures_offer"
CHANGE_ITEM = "change_item"
REVIEW = "review"
REVIEW_SEND = "send"
REVIEW_CHANGE = "change"  # wants to change an answer, has not said which yet

# The `wording` slot: every question has an easy-read variation in domain.yml
# chosen by `wording: easy`.
WORDING_STANDARD = "standard"
WORDING_EASY = "easy"

RESUME_RESPONSE = "utter_resume_referral"
OUTCOME_RESPONSES = {
    "submitted": "utter_already_sent",
    "consent_declined": "utter_conversation_closed",
    "deleted": "utter_conversation_deleted",
}
SELF = "self"
# Asked about the person only when it is safe to contact them directly.
PERSON_CONTACT_FIELDS = ("phone", "email", "contact_preference", "safe_to_leave_message")
CONSENT_STATUS_RESPONSES = {
    "They know and agree": "utter_consent_status_agreed",
    "They don't know yet": "utter_consent_status_not_yet",
    "They can't be asked right now": "utter_consent_status_cannot_ask",
}


def required_slots(answers: Mapping[str, object]) -> list[str]:
    """The slots the referral form needs, in order, given what is known so far.

    The form asks the first of these that has no value. Whether to use
    simpler words comes first, so even the privacy notice can be easy read;
    then consent, where a "no" ends the form. Someone referring another person gives their own
    details first, then the person's consent status. Every path then asks the
    reasonable adjustments (each can be skipped), then the dataset about the
    person (contact questions only if it is safe and possible to contact them).
    """
    if answers.get("crisis_pending"):
        return []  # paused for the safety questions; the form resumes after them
    slots = [EASY_READ, CONSENT]
    if answers.get(CONSENT) is not True:
        return slots
    slots.append(REFERRER_TYPE)
    who = answers.get(REFERRER_TYPE)
    if who is None:
        return slots
    ds = dataset.load()
    if who != SELF:
        slots.append("referrer_name")
        slots += (
            ["referrer_role", "referrer_organisation"] if who == "professional" else ["referrer_relationship"]
        )
        slots += ["referrer_phone", "referrer_email", "referrer_contact_ok"]
        slots += [spec.name for spec in ds.section("supported")]
    slots += [spec.name for spec in ds.section("access") if spec.name != EASY_READ]
    skip_contact = who != SELF and answers.get("person_contact_safe") is False
    # With no phone or email for the person, the team goes through the referrer.
    no_route = who != SELF and contact_route_missing(answers)
    for spec in ds.section("core"):
        if skip_contact and spec.name in PERSON_CONTACT_FIELDS:
            continue
        if no_route and spec.name in ("contact_preference", "safe_to_leave_message"):
            continue
        slots.append(spec.name)
        # A professional always gives a risk narrative; others after a yes.
        if spec.name == "current_risk" and (
            who == "professional" or answers.get("current_risk") in ("yes", "unclear")
        ):
            slots.append("current_risk_details")
    if who == SELF:
        # Standard measures are self-report: offered to the person only.
        slots.append(MEASURES_OFFER)
        if answers.get(MEASURES_OFFER) is True:
            slots.extend(spec.name for spec in ds.section("measures"))
    slots.append(OPTIONAL_QUESTIONS)
    if answers.get(OPTIONAL_QUESTIONS) is True:
        slots.extend(spec.name for spec in ds.section("extra"))
    if answers.get(REVIEW) == REVIEW_CHANGE:
        slots.append(CHANGE_ITEM)
    slots.append(REVIEW)
    return slots


def previous_slot(answers: Mapping[str, object], current: str | None) -> str | None:
    """The answered question just before ``current`` ("go back"), or None at the start."""
    order = required_slots(answers)
    if current not in order:
        return None
    for slot in reversed(order[: order.index(current)]):
        if slot != CHANGE_ITEM and answers.get(slot) is not None:
            return slot
    return None


def slots_to_clear(field: str, answers: Mapping[str, object]) -> dict[str, object]:
    """Slots to empty so the form asks ``field`` again, with what hangs on it."""
    cleared: dict[str, object] = {field: None}
    if field == "current_risk":
        cleared["current_risk_details"] = None
    if field == OPTIONAL_QUESTIONS and answers.get(OPTIONAL_QUESTIONS) is False:
        # A "no" marked every optional question skipped; a "yes" now must ask them.
        cleared.update({spec.name: None for spec in dataset.load().section("extra")})
    if field == MEASURES_OFFER and answers.get(MEASURES_OFFER) is False:
        cleared.update({spec.name: None for spec in dataset.load().section("measures")})
    if answers.get(REVIEW) == REVIEW_CHANGE:
        cleared[REVIEW] = None
    return cleared


def answered_field(text: str, answers: Mapping[str, object]) -> str | None:
    """The answered field named in "change my phone number", or None."""
    answered = [spec for spec in asked_fields(answers) if answers.get(spec.name) is not None]
    spec = dataset.load().match_label(text, among=answered)
    return spec.name if spec is not None else None


def asked_fields(answers: Mapping[str, object]) -> list[FieldSpec]:
    """Dataset fields on this conversation's path, in order."""
    ds = dataset.load()
    wanted = set(required_slots(answers))
    return [spec for spec in ds.fields if spec.name in wanted]


def is_supported(answers: Mapping[str, object]) -> bool:
    """Someone else or a professional is making the referral."""
    return answers.get(REFERRER_TYPE) not in (None, SELF)


def contact_route_missing(answers: Mapping[str, object], prefix: str = "") -> bool:
    """True when both phone and email (or referrer_phone and referrer_email) were answered without a value."""
    phone, email = answers.get(f"{prefix}phone"), answers.get(f"{prefix}email")
    return phone in NON_ANSWERS and email in NON_ANSWERS


def contact_preference_problem(choice: str, answers: Mapping[str, object]) -> str | None:
    """The re-ask key when the chosen route has no phone or email to use."""
    needs = {"Phone call": "phone", "Text message": "phone", "Email": "email"}[choice]
    if answers.get(needs) in NON_ANSWERS or answers.get(needs) is None:
        return f"contact_preference_{needs}"
    return None


def display_value(spec: FieldSpec, value: object) -> str:
    """How an answer reads back in the review summary."""
    if value in NON_ANSWERS:
        return {"skipped": "(skipped)", "unknown": "(don't know)", "declined": "(rather not say)"}[
            NON_ANSWERS[value]
        ]
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if spec.type == "int" and spec.choices and isinstance(value, int):
        return spec.choices[value]
    if spec.name == "current_risk":
        return {"yes": "Yes", "no": "No", "unclear": "Not sure"}.get(str(value), str(value))
    text = str(value)
    return text if len(text) <= 160 else text[:157] + "..."


def summary(answers: Mapping[str, object]) -> str:
    """One line per answered field, "Label: value", in the order asked."""
    lines = []
    for spec in asked_fields(answers):
        if answers.get(spec.name) is not None:
            lines.append(f"- {spec.label}: {display_value(spec, answers[spec.name])}")
    return "\n".join(lines)


@dataclass(frozen=True)
class ReviewChoice:
    action: str  # "send", "change", "which" (wants to change but did not say what)
    field: str | None = None


_CHANGE = re.compile(r"\b(change|edit|fix|update|wrong|mistake|go back)\b", re.I)


def parse_review(text: str, answers: Mapping[str, object], nlu: dict | None = None) -> ReviewChoice | None:
    """What a person wants at the review step: the fast path (bot.answers),
    then a field named, then Rasa's confident guess; None if still unclear."""
    fast = reading.review(text)
    if fast == reading.SEND:
        return ReviewChoice("send")
    spec = dataset.load().match_label(text, among=asked_fields(answers))
    if spec is not None:
        return ReviewChoice("change", spec.name)
    if fast == reading.CHANGE or _CHANGE.search(text):
        return ReviewChoice("which")
    if reading.is_qualified(text) or reading.is_hold(text) or reading.is_mixed(text):
        return None  # "not yet", "maybe": ask again, never send on a guess
    guess = reading.nlu_guess(nlu, reading.NLU_REVIEW)
    if guess == reading.SEND:
        return ReviewChoice("send")
    return ReviewChoice("which") if guess == reading.CHANGE else None


_SELF = re.compile(r"\b(me|myself|my self|for me|mine|i am|i'm|im)\b", re.I)
_PROFESSIONAL = re.compile(
    r"\b(professional|doctor|gp|nurse|counsel+or|social worker|clinician|therapist|"
    r"teacher|support worker|case ?worker|patient|client)\b",
    re.I,
)
_OTHER = re.compile(
    r"\b(someone|somebody|other|else|my (son|daughter|child|kid|partner|wife|husband|"
    r"mum|mom|dad|father|mother|friend|brother|sister|parent|boyfriend|girlfriend))\b",
    re.I,
)


def parse_referrer_type(text: str) -> str | None:
    """ "self", "someone_else" or "professional" from a choice or a few words."""
    from bot.validators import match_choice

    choice = match_choice(text, tuple(REFERRER_TYPES))
    if choice is not None:
        return REFERRER_TYPES[choice]
    if _PROFESSIONAL.search(text):
        return "professional"
    if _OTHER.search(text):
        return "someone_else"
    if _SELF.search(text):
        return "self"
    return None


def record(answers: Mapping[str, object], minimum: Sequence[str] = ()) -> dict:
    """The referral record: person fields, the referrer apart, non-answers listed.

    ``dataset_complete`` is true when every required field on this path has a
    value (a declinable one may be declined) and there is a contact route.
    ``minimum`` is the route's minimum information (service configuration):
    anything in it without a value is listed in ``missing_fields`` and the
    referral ``needs_clarification``; nothing is ever rejected for it.
    """
    ds = dataset.load()
    values: dict[str, object] = {}
    lists: dict[str, list[str]] = {"skipped": [], "unknown": [], "declined": []}
    for spec in ds.fields:
        value = answers.get(spec.name)
        if value in NON_ANSWERS:
            lists[NON_ANSWERS[value]].append(spec.name)
            value = None
        values[spec.name] = value
    asked = asked_fields(answers)
    contact_ok = (
        not contact_route_missing(answers)
        if not is_supported(answers)
        else not contact_route_missing(answers, "referrer_")
    )
    complete = contact_ok and all(
        values.get(spec.name) is not None
        or (spec.requirement == dataset.DECLINABLE and spec.name in lists["declined"] + lists["unknown"])
        for spec in asked
        if spec.requirement in (dataset.REQUIRED, dataset.DECLINABLE)
    )
    missing = [name for name in minimum if values.get(name) is None]
    referrer = {spec.name: values.pop(spec.name) for spec in ds.referrer_fields}
    return {
        **values,
        "referrer": referrer if is_supported(answers) else None,
        "declined_fields": lists["declined"],
        "skipped_fields": lists["skipped"],
        "unknown_fields": lists["unknown"],
        "dataset_complete": complete,
        "needs_clarification": bool(missing),
        "missing_fields": missing,
    }
