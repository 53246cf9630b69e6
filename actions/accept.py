"""The one path for every answer: validate, normalise, follow up.

Whatever reached a referral question is accepted here, and only here: the
form's own turn, an answer typed after pause, stop or "delete my answers"
(actions/fallback.py), a risk disclosure stored as its answer
(actions/crisis.py), and changes made at the review. Each returns the slots
to set: the normalised value, or None with the re-ask uttered.

domain.yml needs, for every slot this accepts: ``utter_ask_referral_form_<slot>``
and an ``utter_invalid_<problem>`` response for every problem key
bot.validators can return for it; and utter_show_choices, utter_reach_a_person.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.executor import CollectingDispatcher

from actions.crisis import respond_to_second_line
from actions.settings import rules as _rules
from actions.settings import settings as _settings
from bot import dataset, measures, outbox, referral, services, triage, validators
from bot.crisis import assess
from bot.crisis.types import Assessment
from bot.dataset import NON_ANSWERS, SKIPPED
from bot.store.db import StoreUnavailable
from bot.store.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
# Submission is idempotent, so retrying is safe; keep the total well inside
# Rasa's action timeout.
SUBMIT_ATTEMPTS = 2
SUBMIT_RETRY_DELAY = 0.5
# After this many answers in a row that were not understood, the choices are
# shown as buttons with an example; one more, and how to reach a person.
SHOW_CHOICES_AFTER = 2
OFFER_PERSON_AFTER = 3
SAFETY_WORDS_CHARS = 500
EARLIER_CRISIS_METADATA = "crisis_earlier"  # set by the gateway (bot/web/app.py)


async def accept(
    slot: str,
    value: Any,
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    signals: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Slots to set for ``value`` given as the answer to ``slot``.

    ``signals``: what the crisis detector found in it, kept for triage's
    ``detects:`` rules at submission.
    """
    text = _text(value)
    nlu = _nlu_intent(tracker, text)
    said = len(dispatcher.messages)
    special = _SPECIAL.get(slot)
    if (tracker.get_slot("crisis_asks") or {}).get(slot) and validators.non_answer(text) is not None:
        # Asked again after a crisis response, with "you can skip this": any
        # question may be skipped now, even one that is otherwise required.
        result: dict[str, Any] = {slot: SKIPPED}
    elif special is not None:
        result = await special(value, dispatcher, tracker, nlu)
    else:
        spec = dataset.load().get(slot)
        outcome = validators.check(
            spec, text, _rules(), allow_unknown=referral.is_supported(tracker.slots), nlu=nlu
        )
        if outcome.ok:
            result = await _after_field(slot, outcome.value, dispatcher, tracker)
        else:
            dispatcher.utter_message(response=f"utter_invalid_{outcome.problem}")
            result = {slot: None}
    rejected = any(
        str(m.get("response") or "").startswith("utter_invalid_") for m in dispatcher.messages[said:]
    )
    result.update(_not_understood(slot, rejected, dispatcher, tracker))
    if result.get(slot) is not None:
        # What the detector found in this answer, for triage's `detects:` rules
        # at submission (this server has no encoder to ask again then).
        found = dict(tracker.get_slot("answer_signals") or {})
        found[slot] = list(signals)
        result["answer_signals"] = found
        if validators.is_unclear_safety_answer(slot, text):
            words = dict(tracker.get_slot("safety_words") or {})
            words[slot] = text[:SAFETY_WORDS_CHARS]
            result["safety_words"] = words
    return result


def _nlu_intent(tracker: Tracker, text: str) -> dict | None:
    """Rasa's intent for this text, when it is the message just received."""
    latest = tracker.latest_message or {}
    return latest.get("intent") if text and latest.get("text") == text else None


def _not_understood(
    slot: str, rejected: bool, dispatcher: CollectingDispatcher, tracker: Tracker
) -> dict[str, Any]:
    """Count answers in a row that were not understood; after two, show the
    choices as buttons with an example; after three, also how to reach a person."""
    previous = tracker.get_slot("not_understood") or {}
    if not rejected:
        return {"not_understood": None} if previous else {}
    count = (previous.get("count", 0) if previous.get("field") == slot else 0) + 1
    if count >= SHOW_CHOICES_AFTER:
        choices = _choices(slot)
        if choices:
            dispatcher.utter_message(
                response="utter_show_choices", example=choices[0], json_message={"options": choices}
            )
    if count >= OFFER_PERSON_AFTER:
        config = _settings()[1]
        dispatcher.utter_message(
            response="utter_reach_a_person", team_phone=config.team_phone, team_hours=config.team_hours
        )
    return {"not_understood": {"field": slot, "count": count}}


def _choices(slot: str) -> list[str]:
    spec = dataset.load().get(slot)
    if spec.input == "yes_no":
        return ["Yes", "No"]
    return list(spec.choices)


async def _after_field(
    slot: str, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
) -> dict[str, Any]:
    """Follow-ups that depend on an accepted answer."""
    answers = {**tracker.slots, slot: value}
    supported = referral.is_supported(answers)
    if slot == "date_of_birth":
        age = validators.age_on(dt.date.fromisoformat(value), dt.date.today())
        if age < _settings()[1].minimum_age:
            dispatcher.utter_message(response="utter_under_minimum_age")
    elif slot == "current_risk" and value in ("yes", "unclear"):
        dispatcher.utter_message(response="utter_risk_support")
    elif slot in ("phone", "email") and not supported and referral.contact_route_missing(answers):
        dispatcher.utter_message(response="utter_invalid_contact_route")
        return {"phone": None, "email": None}
    elif slot in ("referrer_phone", "referrer_email") and referral.contact_route_missing(
        answers, "referrer_"
    ):
        dispatcher.utter_message(response="utter_invalid_referrer_contact_route")
        return {"referrer_phone": None, "referrer_email": None}
    elif slot == measures.ITEM_9 and measures.item_9_positive(value):
        # Any answer above zero to PHQ-9 item 9: the direct safety question
        # at once (the safety form), and a red flag at triage.
        result = Assessment(
            level="ask",
            subject="self",
            categories=("phq9_item9",),
            language=tracker.get_slot("language") or "en",
        )
        return {slot: value, **await respond_to_second_line(dispatcher, tracker, result)}
    elif slot == "person_consent_status":
        dispatcher.utter_message(response=referral.CONSENT_STATUS_RESPONSES[value])
    elif slot == "contact_preference":
        problem = referral.contact_preference_problem(value, answers)
        if problem:
            dispatcher.utter_message(response=f"utter_invalid_{problem}")
            return {slot: None}
    return {slot: value}


async def _validate_easy_read(
    value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, nlu: dict | None
) -> dict[str, Any]:
    text = _text(value)
    if validators.non_answer(text) is not None:
        return {"easy_read": SKIPPED, "wording": referral.WORDING_STANDARD}
    answer = validators.parse_yes_no(text, nlu)
    if answer is None:
        dispatcher.utter_message(response="utter_invalid_yes_no")
        return {"easy_read": None}
    wording = referral.WORDING_EASY if answer else referral.WORDING_STANDARD
    return {"easy_read": answer, "wording": wording}


async def _validate_consent(
    value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, nlu: dict | None
) -> dict[str, Any]:
    answer = validators.parse_yes_no(_text(value), nlu)
    if answer is None:
        dispatcher.utter_message(response="utter_invalid_yes_no")
        return {"consent": None}
    if not answer:
        return {"consent": False, "referral_outcome": "consent_declined"}
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    return {"consent": True, "consent_given_at": now}


async def _validate_referrer_type(
    value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, nlu: dict | None
) -> dict[str, Any]:
    code = referral.parse_referrer_type(_text(value))
    if code is None:
        dispatcher.utter_message(response="utter_invalid_referrer_type")
        return {"referrer_type": None}
    # Chooses the third-person wording of every question about the person.
    return {"referrer_type": code, "referral_about": "self" if code == referral.SELF else "other"}


def _offer(slot: str, section: str, skip_means_no: bool):
    """A yes/no offer of a group of questions (the measures, the optional
    questions). A no records each of them as skipped: not asked because the
    person chose not to."""

    async def validate(
        value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, nlu: dict | None
    ) -> dict[str, Any]:
        answer = validators.parse_yes_no(_text(value), nlu)
        if answer is None and skip_means_no and validators.non_answer(_text(value)) is not None:
            answer = False
        if answer is None:
            dispatcher.utter_message(response="utter_invalid_yes_no")
            return {slot: None}
        result: dict[str, Any] = {slot: answer}
        if not answer:
            result.update({spec.name: SKIPPED for spec in dataset.load().section(section)})
        return result

    return validate


_validate_measures_offer = _offer(referral.MEASURES_OFFER, "measures", skip_means_no=True)
_validate_optional_questions = _offer(referral.OPTIONAL_QUESTIONS, "extra", skip_means_no=False)


async def _validate_change_item(
    value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, nlu: dict | None
) -> dict[str, Any]:
    choice = referral.parse_review(_text(value), tracker.slots, nlu)
    if choice is None or choice.action != "change":
        dispatcher.utter_message(response="utter_invalid_change_item")
        return {"change_item": None}
    return {"change_item": None, "review": None, **referral.slots_to_clear(choice.field, tracker.slots)}


async def _validate_review(
    value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, nlu: dict | None
) -> dict[str, Any]:
    choice = referral.parse_review(_text(value), tracker.slots, nlu)
    if choice is None:
        dispatcher.utter_message(response="utter_invalid_review")
        return {"review": None}
    if choice.action == "which":
        return {"review": referral.REVIEW_CHANGE}
    if choice.action == "change":
        return {"review": None, **referral.slots_to_clear(choice.field, tracker.slots)}
    return await _submit(dispatcher, tracker)


async def _submit(dispatcher: CollectingDispatcher, tracker: Tracker) -> dict[str, Any]:
    consent_at = tracker.get_slot("consent_given_at")
    who = tracker.get_slot("referrer_type")
    submission = services.Submission(
        conversation_id=tracker.sender_id,
        referrer_type=tracker.get_slot("referrer_type"),
        answers=tracker.slots,
        consent_given_at=dt.datetime.fromisoformat(consent_at) if consent_at else None,
        crisis_flag=bool(tracker.get_slot("crisis_flag")),
        minimum=_settings()[1].routes.get(who, ()),
        criteria=_settings()[1].criteria,
        person_secret=_settings()[0].person_key_secret(),
        detect=_answer_signals(tracker),
        safety_words=dict(tracker.get_slot("safety_words") or {}),
        earlier_crisis=_earlier_crisis(tracker),
    )
    uow = UnitOfWork(_settings()[0].database_url)
    for attempt in range(SUBMIT_ATTEMPTS):
        try:
            # Crisis events kept while the store was down count for this referral.
            await asyncio.to_thread(outbox.flush, uow, _settings()[0].var_dir)
            result = await asyncio.to_thread(services.submit_referral, uow, submission)
            break
        except StoreUnavailable as err:
            log.error("referral store unavailable at submission (attempt %d): %s", attempt + 1, err)
            if attempt + 1 < SUBMIT_ATTEMPTS:
                await asyncio.sleep(SUBMIT_RETRY_DELAY)
    else:
        # Nothing is lost: every answer stays in the conversation and the
        # form asks again, so the next "send" retries.
        dispatcher.utter_message(response="utter_submit_failed")
        return {"review": None}
    log.info("referral submitted (created=%s, band=%s)", result.created, result.band)
    config = _settings()[1]
    fit = triage.fit(config.criteria, tracker.slots)
    if fit:
        dispatcher.utter_message(response="utter_service_fit", service_fit="\n".join(fit))
    if result.redirect_to:
        _redirect_with_safety(dispatcher, config.criteria, result.redirect_to)
    if who == "someone_else":
        _signpost_carer_support(dispatcher)
    return {
        "review": referral.REVIEW_SEND,
        "reference": result.reference,
        "referral_outcome": "submitted",
        "urgency_band": result.band,
        "expected_wait": config.criteria.waits.get(result.band or "", config.expected_wait),
    }


def _redirect_with_safety(
    dispatcher: CollectingDispatcher, criteria: triage.Criteria, alternative_id: str
) -> None:
    """A named alternative, how to reach it, what happens today, and that they can come back."""
    alternative = criteria.alternatives[alternative_id]
    reason = next((r.reason for r in criteria.exclusions if r.redirect == alternative_id), "")
    dispatcher.utter_message(
        response="utter_redirect",
        redirect_reason=reason,
        alternative_name=alternative.name,
        alternative_call=alternative.call,
        alternative_how=alternative.how,
        alternative_cost=alternative.cost,
        alternative_languages=alternative.languages,
        alternative_access=alternative.access,
        alternative_transport=alternative.transport,
    )


def _signpost_carer_support(dispatcher: CollectingDispatcher) -> None:
    """Support for the carer themselves, from the crisis directory's carer lines."""
    from bot.crisis import directory

    lines = directory.load(profile=_settings()[1].postal_format).carer_support
    if lines:
        line = lines[0]
        dispatcher.utter_message(
            response="utter_carer_support",
            carer_line_name=line.name,
            carer_line_call=line.call,
            carer_line_hours=line.hours,
        )


def _earlier_crisis(tracker: Tracker) -> bool:
    """The gateway marks each message from a browser that was shown crisis
    wording in an earlier chat (its signed cookie), in the message metadata."""
    return any(
        (e.get("metadata") or {}).get(EARLIER_CRISIS_METADATA)
        for e in tracker.events
        if e.get("event") == "user"
    )


def _text(value: Any) -> str:
    if value in NON_ANSWERS or value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _answer_signals(tracker: Tracker) -> triage.Detector:
    """Triage's `detects:` from what the detector found in each answer as it was
    given (the NLU component's semantic layer included); an answer without
    that record is assessed again here, with the patterns only."""
    recorded = tracker.get_slot("answer_signals") or {}

    def detect(field: str, text: str) -> list[str]:
        if field in recorded:
            return list(recorded[field])
        return list(assess(text, upstream={}).signals)

    return detect


_SPECIAL = {
    "easy_read": _validate_easy_read,
    "consent": _validate_consent,
    "referrer_type": _validate_referrer_type,
    referral.MEASURES_OFFER: _validate_measures_offer,
    "optional_questions": _validate_optional_questions,
    referral.CHANGE_ITEM: _validate_change_item,
    referral.REVIEW: _validate_review,
}
