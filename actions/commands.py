"""Commands that work at any point: help, repeat, explain, skip, go back,
change an answer, pause, stop, delete, talk to a person, simpler words.

The NLU command gate (bot/nlu/commands.py) sets the intent only when the
whole message is a command phrase. Inside the referral form a rule runs this
action and then the form, which asks its current question again (so "help",
"repeat" and "what does that mean" end with the question). Pause, stop and
delete wait for the person instead. "Yes, delete everything" is
action_delete_answers.

domain.yml needs: the intents in bot.commands.INTENTS; ``utter_explain_<slot>``
for every slot of referral_form; the responses named below; the slot
``wording``; and ``referral_outcome`` with the value ``deleted``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import ActiveLoop, AllSlotsReset, EventType, FollowupAction, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.settings import settings as _settings
from bot import commands, referral, resume
from bot.store.db import StoreUnavailable
from bot.store.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
FORM = "referral_form"
SAFETY_FORM = "safety_form"
SHOW_QUESTION = "show_question"  # sent by the gateway on a page reload
# Commands that only mean something while a question is being asked; outside
# the form they get the usual "where things stand" answer. (Inside the form
# "skip" never comes here: it is an answer, checked by the validators.)
NEEDS_A_QUESTION = ("repeat", "explain", "skip", "go_back", commands.CHANGE_ANSWER)


class ActionHandleCommand(Action):
    def name(self) -> str:
        return "action_handle_command"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        in_form = tracker.active_loop_name == FORM
        asked = tracker.get_slot("requested_slot") if in_form else None
        log.info("command %s (question: %s)", intent, asked)
        if intent == SHOW_QUESTION:
            # A page reload: whichever form is asking repeats its question.
            if tracker.active_loop_name in (FORM, SAFETY_FORM):
                return []
            return [FollowupAction("action_handle_unexpected")]
        if intent in NEEDS_A_QUESTION and asked is None:
            return [FollowupAction("action_handle_unexpected")]
        if intent == "pause" and tracker.get_slot("referral_outcome"):
            return [FollowupAction("action_handle_unexpected")]  # sent or ended: nothing to come back to
        handler = getattr(self, f"_{intent}", None)
        if handler is None:  # not a command intent: nothing to do but carry on
            return [FollowupAction("action_handle_unexpected")]
        slots = await handler(dispatcher, tracker, asked)
        return [SlotSet(name, value) for name, value in slots.items()] if isinstance(slots, dict) else slots

    async def _help(self, dispatcher, tracker, asked) -> dict[str, Any]:
        dispatcher.utter_message(response="utter_help")
        return {}

    async def _repeat(self, dispatcher, tracker, asked) -> dict[str, Any]:
        return {}  # the form asks its question again

    async def _explain(self, dispatcher, tracker, asked) -> dict[str, Any]:
        dispatcher.utter_message(response=f"utter_explain_{asked}")
        return {}

    async def _go_back(self, dispatcher, tracker, asked) -> dict[str, Any]:
        if asked == referral.REVIEW:
            # Every answer is on screen: ask which one, as "Change an answer" does.
            return {referral.REVIEW: referral.REVIEW_CHANGE}
        previous = referral.previous_slot(tracker.slots, asked)
        if previous is None:
            dispatcher.utter_message(response="utter_cannot_go_back")
            return {}
        dispatcher.utter_message(response="utter_going_back")
        return referral.slots_to_clear(previous, tracker.slots)

    async def _change_answer(self, dispatcher, tracker, asked) -> dict[str, Any]:
        field = referral.answered_field(tracker.latest_message.get("text") or "", tracker.slots)
        if field is None:
            dispatcher.utter_message(response="utter_change_not_answered")
            return {}
        dispatcher.utter_message(response="utter_going_back")
        return {referral.CHANGE_ITEM: None, **referral.slots_to_clear(field, tracker.slots)}

    async def _pause(self, dispatcher, tracker, asked) -> dict[str, Any]:
        current, config = _settings()
        try:
            code = await asyncio.to_thread(
                resume.issue,
                UnitOfWork(current.database_url),
                tracker.sender_id,
                current.session_secret(),
                config.resume_days,
            )
        except StoreUnavailable as err:
            log.error("could not store a pause code: %s", err)
            dispatcher.utter_message(response="utter_pause_failed")
            return {}
        dispatcher.utter_message(response="utter_paused", resume_code=code, resume_days=config.resume_days)
        return {}

    async def _stop(self, dispatcher, tracker, asked) -> dict[str, Any]:
        dispatcher.utter_message(response="utter_stop_options")
        return {}

    async def _delete_answers(self, dispatcher, tracker, asked) -> dict[str, Any]:
        dispatcher.utter_message(response="utter_confirm_delete")
        return {}

    async def _talk_to_person(self, dispatcher, tracker, asked) -> dict[str, Any]:
        config = _settings()[1]
        dispatcher.utter_message(
            response="utter_talk_to_person", team_phone=config.team_phone, team_hours=config.team_hours
        )
        return {}

    async def _easy_read_on(self, dispatcher, tracker, asked) -> dict[str, Any]:
        dispatcher.utter_message(response="utter_easy_read_on")
        slots: dict[str, Any] = {"wording": referral.WORDING_EASY, referral.EASY_READ: True}
        if asked == "communication_needs":
            # Asked what helps them read, they said "simple words": that is the answer.
            slots["communication_needs"] = tracker.latest_message.get("text")
        return slots

    async def _easy_read_off(self, dispatcher, tracker, asked) -> dict[str, Any]:
        dispatcher.utter_message(response="utter_easy_read_off")
        return {"wording": referral.WORDING_STANDARD, referral.EASY_READ: False}

    async def _resume_conversation(self, dispatcher, tracker, asked) -> list[EventType]:
        if asked is not None:
            dispatcher.utter_message(response="utter_welcome_back")
            return []
        return [FollowupAction("action_handle_unexpected")]


class ActionDeleteAnswers(Action):
    """ "Yes, delete everything": end the referral and forget what was given.

    A separate action from the other commands because it ends the form and
    sets ``referral_outcome``; Rasa's rules need that to be said of every
    rule an action appears in.
    """

    def name(self) -> str:
        return "action_delete_answers"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        current, config = _settings()
        try:
            await asyncio.to_thread(resume.revoke, UnitOfWork(current.database_url), tracker.sender_id)
        except StoreUnavailable as err:
            # Codes expire anyway, and the chat they would open is deleted below.
            log.error("could not remove pause codes: %s", err)
        if tracker.get_slot("referral_outcome") == "submitted":
            dispatcher.utter_message(
                response="utter_deleted_after_submitted",
                reference=tracker.get_slot("reference"),
                team_phone=config.team_phone,
            )
        else:
            dispatcher.utter_message(response="utter_answers_deleted")
        log.info("answers deleted at the person's request")
        # The web service deletes the stored chat when it sees this response's
        # payload (custom.conversation: deleted); the slots are emptied now.
        return [ActiveLoop(None), AllSlotsReset(), SlotSet("referral_outcome", "deleted")]
