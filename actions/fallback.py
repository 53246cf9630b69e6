"""What happens when a message fits no rule: start, or say where things stand."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from bot.referral import OUTCOME_RESPONSES


class ActionHandleUnexpected(Action):
    """RulePolicy's core fallback (config.yml: core_fallback_action_name).

    Before a referral has started, any message starts it. After it has ended,
    the person is told where things stand (already sent, or how to restart).
    """

    def name(self) -> str:
        return "action_handle_unexpected"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        outcome = tracker.get_slot("referral_outcome")
        if outcome in OUTCOME_RESPONSES:
            dispatcher.utter_message(response=OUTCOME_RESPONSES[outcome])
            return []
        dispatcher.utter_message(response="utter_opening")
        return [FollowupAction("referral_form")]
