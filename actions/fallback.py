"""What happens when a message fits no rule: start, or say where things stand."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.accept import accept
from actions.crisis import (
    assess_in_conversation,
    check_in_if_retracted,
    respond_in_field,
    respond_to_second_line,
)
from bot.referral import OUTCOME_RESPONSES, RESUME_RESPONSE


class ActionHandleUnexpected(Action):
    """RulePolicy's core fallback (config.yml: core_fallback_action_name).

    Before a referral has started, any message starts it; part-way through
    (after the safety questions), it carries on. When the form is waiting
    after pause, stop or "delete my answers", a message is the answer to its
    question. After it has ended, the
    person is told where things stand (already sent, or how to restart).
    Every message is checked for crisis first, with its recent history.
    """

    def name(self) -> str:
        return "action_handle_unexpected"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        text = tracker.latest_message.get("text") or ""
        result = assess_in_conversation(tracker, text)
        asked = tracker.get_slot("requested_slot") if tracker.active_loop_name == "referral_form" else None
        if result.at_least_crisis:
            if asked:
                slots = await respond_in_field(dispatcher, tracker, result, asked, text)
            else:
                slots = await respond_to_second_line(dispatcher, tracker, result)
            return [SlotSet(k, v) for k, v in {**slots, "crisis_pending": False}.items()] + [
                FollowupAction("safety_form")
            ]
        if tracker.get_slot("crisis_flag") and check_in_if_retracted(dispatcher, text):
            return []
        if asked and text and not text.startswith("/"):
            # The form is waiting after a command that did not re-ask (pause,
            # stop, "delete my answers"), and the person answered the question
            # instead: the answer takes the one path every answer takes, then
            # the form asks what comes next (or this question again).
            slots = await accept(asked, text, dispatcher, tracker, signals=result.signals)
            return [SlotSet(k, v) for k, v in slots.items()] + [FollowupAction("referral_form")]
        outcome = tracker.get_slot("referral_outcome")
        if outcome in OUTCOME_RESPONSES:
            dispatcher.utter_message(response=OUTCOME_RESPONSES[outcome])
            return []
        if tracker.get_slot("consent") is True:
            dispatcher.utter_message(response=RESUME_RESPONSE)
        else:
            dispatcher.utter_message(response="utter_opening")
        events: list[EventType] = []
        if tracker.get_slot("skip_offer_pending"):
            # Back at a question a crisis response interrupted: it may be skipped.
            dispatcher.utter_message(response="utter_crisis_can_skip")
            events.append(SlotSet("skip_offer_pending", None))
        return events + [FollowupAction("referral_form")]
