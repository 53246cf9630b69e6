"""The referral form's validation action: a thin adapter over actions/accept.py.

domain.yml needs, for every slot this validates: a from_text mapping scoped
to ``referral_form`` whose ``not_intent`` lists every intent in
NON_ANSWER_INTENTS, and what actions/accept.py needs.
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import ActionExecutionRejected, EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.accept import accept
from actions.crisis import assess_in_conversation, check_in_if_retracted, respond_in_field
from actions.settings import settings as _settings
from bot import commands, referral
from bot.crisis import routing
from bot.dataset import NON_ANSWERS

log = logging.getLogger(__name__)
FORM = "referral_form"
# Intents that are never an answer. On them the form turn is rejected
# explicitly, so the rules (crisis first, then commands) always get their turn.
# "greet" and "show_question" (a page reload) are also sent by the gateway.
NON_ANSWER_INTENTS = frozenset({*routing.CRISIS_INTENTS, *commands.INTENTS, "greet", "show_question"})


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
        if _is_form_turn(tracker) and _intent(tracker) in NON_ANSWER_INTENTS:
            return [ActionExecutionRejected(FORM)]
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
            if summary != tracker.get_slot("review_summary"):
                events.append(SlotSet("review_summary", summary))
        return events

    async def get_validation_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        """Validate each slot filled this turn; one generic path for every field."""
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
        # Second line behind the NLU component: a crisis that only shows
        # across turns (distress, then a question about heights or doses).
        text = "" if value in NON_ANSWERS or value is None else str(value)
        result = assess_in_conversation(tracker, text)
        if result.at_least_crisis:
            return await respond_in_field(dispatcher, tracker, result, slot, text)
        if tracker.get_slot("crisis_flag") and check_in_if_retracted(dispatcher, text):
            return {slot: None}
        return await accept(slot, value, dispatcher, tracker, signals=result.signals)


def _intent(tracker: Tracker) -> str | None:
    return ((tracker.latest_message or {}).get("intent") or {}).get("name")


def _is_form_turn(tracker: Tracker) -> bool:
    """The form is running on a new message (not being activated or resumed)."""
    return tracker.active_loop_name == FORM and tracker.latest_action_name == "action_listen"
