"""The referral form's validation action: a thin adapter over bot.validators.

domain.yml needs, for every slot this validates: a from_text mapping scoped
to ``referral_form``, ``utter_ask_referral_form_<slot>``, and an
``utter_invalid_<problem>`` response for every problem key bot.validators
can return for it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.crisis import assess_in_conversation, check_in_if_retracted, respond_to_second_line
from actions.settings import rules as _rules
from actions.settings import settings as _settings
from bot import dataset, measures, referral, services, triage, validators
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


class ValidateReferralForm(FormValidationAction):
    def name(self) -> str:
        return "validate_referral_form"

    async def required_slots(
        self,
        domain_slots: list[str],
        dispatcher: CollectingDispatcher,
        tracker: Tracker,
        domain: DomainDict,
    ) -> list[str]:
        return referral.required_slots(tracker.slots)

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        events = await super().run(dispatcher, tracker, domain)
        config = _settings()[1]
        # Values the responses interpolate; set once so every response can use them.
        if tracker.get_slot("local_crisis_line") is None:
            events.append(SlotSet("local_crisis_line", config.local_crisis_line))
            events.append(SlotSet("expected_wait", config.expected_wait))
        # super().run() has applied this turn's slot events to tracker.slots.
        answers = tracker.slots
        required = referral.required_slots(answers)
        if next((s for s in required if answers.get(s) is None), None) == referral.REVIEW:
            summary = referral.summary(answers)
            # Only when it changed: Rasa's form treats any slot this action sets
            # as "something was validated" and then never rejects the turn, so
            # a crisis or a command typed at review would be swallowed.
            if summary != tracker.get_slot("review_summary"):
                events.append(SlotSet("review_summary", summary))
        return events

    async def get_validation_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        """Validate each slot filled this turn; one generic path for every field.

        Equivalent to a ``validate_<slot>`` method per slot: each returns the
        normalised value, or utters ``utter_invalid_<problem>`` and clears it.
        """
        wanted = set(referral.required_slots(tracker.slots))
        asked = tracker.get_slot("requested_slot")
        updates: dict[str, Any] = {}
        for slot, value in tracker.slots_to_validate().items():
            # Only the answer to the question just asked. When a form is
            # re-activated Rasa passes every filled slot again, already
            # normalised; checking those again would undo them.
            if slot not in wanted or slot != asked:
                continue
            result = await self.validate_slot(slot, value, dispatcher, tracker)
            updates.update(result)
            tracker.slots.update(result)
        return [SlotSet(slot, value) for slot, value in updates.items()]

    async def validate_slot(
        self, slot: str, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> dict[str, Any]:
        # Second line behind the NLU component: a crisis is never stored as an
        # answer, including one that only shows across turns (distress, then
        # a question about heights or doses).
        text = _text(value)
        result = assess_in_conversation(tracker, text)
        if result.at_least_crisis:
            return {slot: None, **await respond_to_second_line(dispatcher, tracker, result)}
        if tracker.get_slot("crisis_flag") and check_in_if_retracted(dispatcher, text):
            return {slot: None}
        special = getattr(self, f"validate_{slot}", None)
        if special is not None:
            return await special(value, dispatcher, tracker)
        spec = dataset.load().get(slot)
        outcome = validators.check(
            spec, _text(value), _rules(), allow_unknown=referral.is_supported(tracker.slots)
        )
        if not outcome.ok:
            dispatcher.utter_message(response=f"utter_invalid_{outcome.problem}")
            return {slot: None}
        accepted = await self._after_field(slot, outcome.value, dispatcher, tracker)
        if accepted.get(slot) is not None:
            # What the detector found in this answer, for triage's `detects:` rules
            # at submission (this server has no encoder to ask again then).
            signals = dict(tracker.get_slot("answer_signals") or {})
            signals[slot] = list(result.signals)
            accepted["answer_signals"] = signals
        return accepted

    async def _after_field(
        self, slot: str, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
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

    async def validate_easy_read(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> dict[str, Any]:
        text = _text(value)
        if validators.non_answer(text) is not None:
            return {"easy_read": SKIPPED, "wording": referral.WORDING_STANDARD}
        answer = validators.parse_yes_no(text)
        if answer is None:
            dispatcher.utter_message(response="utter_invalid_yes_no")
            return {"easy_read": None}
        wording = referral.WORDING_EASY if answer else referral.WORDING_STANDARD
        return {"easy_read": answer, "wording": wording}

    async def validate_consent(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> dict[str, Any]:
        answer = validators.parse_yes_no(_text(value))
        if answer is None:
            dispatcher.utter_message(response="utter_invalid_yes_no")
            return {"consent": None}
        if not answer:
            return {"consent": False, "referral_outcome": "consent_declined"}
        now = dt.datetime.now(dt.timezone.utc).isoformat()
        return {"consent": True, "consent_given_at": now}

    async def validate_referrer_type(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> dict[str, Any]:
        code = referral.parse_referrer_type(_text(value))
        if code is None:
            dispatcher.utter_message(response="utter_invalid_referrer_type")
            return {"referrer_type": None}
        # Chooses the third-person wording of every question about the person.
        return {"referrer_type": code, "referral_about": "self" if code == referral.SELF else "other"}

    async def validate_measures_offer(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> dict[str, Any]:
        answer = validators.parse_yes_no(_text(value))
        if answer is None and validators.non_answer(_text(value)) is not None:
            answer = False
        if answer is None:
            dispatcher.utter_message(response="utter_invalid_yes_no")
            return {referral.MEASURES_OFFER: None}
        result: dict[str, Any] = {referral.MEASURES_OFFER: answer}
        if not answer:
            result.update({spec.name: SKIPPED for spec in dataset.load().section("measures")})
        return result

    async def validate_optional_questions(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> dict[str, Any]:
        answer = validators.parse_yes_no(_text(value))
        if answer is None:
            dispatcher.utter_message(response="utter_invalid_yes_no")
            return {"optional_questions": None}
        result: dict[str, Any] = {"optional_questions": answer}
        if not answer:
            # Not asked because the person chose not to: recorded as skipped.
            result.update({spec.name: SKIPPED for spec in dataset.load().section("extra")})
        return result

    async def validate_change_item(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> dict[str, Any]:
        choice = referral.parse_review(_text(value), tracker.slots)
        if choice is None or choice.action != "change":
            dispatcher.utter_message(response="utter_invalid_change_item")
            return {"change_item": None}
        return {"change_item": None, "review": None, **referral.slots_to_clear(choice.field, tracker.slots)}

    async def validate_review(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker
    ) -> dict[str, Any]:
        choice = referral.parse_review(_text(value), tracker.slots)
        if choice is None:
            dispatcher.utter_message(response="utter_invalid_review")
            return {"review": None}
        if choice.action == "which":
            return {"review": referral.REVIEW_CHANGE}
        if choice.action == "change":
            return {"review": None, **referral.slots_to_clear(choice.field, tracker.slots)}
        return await self._submit(dispatcher, tracker)

    async def _submit(self, dispatcher: CollectingDispatcher, tracker: Tracker) -> dict[str, Any]:
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
        )
        uow = UnitOfWork(_settings()[0].database_url)
        for attempt in range(SUBMIT_ATTEMPTS):
            try:
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
