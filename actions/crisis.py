"""Crisis actions: the follow-up after a crisis response, and the safety questions.

The first crisis message is a fixed response uttered by a rule (it needs
neither this server nor the store). These actions add what depends on the
conversation: the local crisis team, the record for staff, the flag that
stays, and the safety questions.

domain.yml needs: the crisis responses named in bot.crisis.routing.RESPONSES,
utter_crisis_local_team, utter_crisis_ask_postal_code, utter_crisis_interpreter, the safety_form with
utter_ask_safety_form_<slot> for risk_check, safe_now, continue_referral, and
utter_crisis_not_safe / _safe / _check_in, utter_risk_no.
"""

from __future__ import annotations

import logging
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.forms import FormValidationAction
from rasa_sdk.types import DomainDict

from actions.settings import settings as _settings
from bot import answers, dataset, outbox, validators
from bot.crisis import RANK, Assessment, assess, is_retraction, policy, raise_level, routing
from bot.crisis import directory as crisis_directory
from bot.dataset import SKIPPED
from bot.store.unit_of_work import UnitOfWork

log = logging.getLogger(__name__)
HISTORY_TURNS = 3
SAFETY_SLOTS = ("risk_check", "safe_now", "continue_referral")
NOT_ASKED = "not_asked"
REFERRAL_FORM = "referral_form"


def recent_user_texts(tracker: Tracker, turns: int = HISTORY_TURNS) -> list[str]:
    """The person's earlier messages in this conversation, newest last, not counting the latest."""
    texts = [e.get("text") for e in tracker.events if e.get("event") == "user" and e.get("text")]
    texts = [t for t in texts if not t.startswith("/")]
    return texts[-(turns + 1) : -1]


def assess_in_conversation(tracker: Tracker, text: str | None = None) -> Assessment:
    """A message (the latest, by default) assessed again with its recent history.

    The NLU component saw the message alone; with history the co-occurrence
    rule can raise the level (and the per-text cache makes this cheap). Its
    result, in the parse data, stands in for the semantic layer, so this
    server never loads the sentence encoder: a text that is not the latest
    message gets the patterns and history only.
    """
    latest = tracker.latest_message or {}
    if text is None:
        text = latest.get("text") or ""
    upstream = latest.get("crisis") if latest.get("text") == text else None
    return assess(text, recent_user_texts(tracker), upstream=upstream or {})


def latest_assessment(tracker: Tracker) -> Assessment:
    return assess_in_conversation(tracker)


def directory() -> crisis_directory.Directory:
    return crisis_directory.load(profile=_settings()[1].postal_format)


def signpost(
    dispatcher: CollectingDispatcher, tracker: Tracker, result: Assessment, first_response: bool
) -> list[dict]:
    """Utter what this level calls for; return the resources shown.

    `first_response` is true when no rule has uttered the crisis response yet
    (a crisis found by a second-line check); then it is uttered here.
    """
    who = routing.audience(result)
    postal = tracker.get_slot("postal_code")
    payload = routing.payload(result, directory(), postal if isinstance(postal, str) else None)
    # This server records every crisis it signposts (record(), with the
    # outbox); the gateway records the ones whose payload lacks this mark.
    payload["crisis"]["recorded"] = True
    resources = payload["crisis"]["resources"]
    if who is None or who == "ask":
        return []
    if first_response:
        dispatcher.utter_message(response=routing.RESPONSES[who], json_message=payload)
    local = next((r for r in resources if r.get("local")), None)
    if local:
        dispatcher.utter_message(
            response="utter_crisis_local_team",
            json_message=payload,
            local_team_name=local["name"],
            local_team_call=local["call"],
            local_team_hours=local["hours"],
        )
    elif not first_response:
        dispatcher.utter_message(response="utter_crisis_ask_postal_code", json_message=payload)
    return resources


async def record(tracker: Tracker, result: Assessment, resources: list[dict]) -> None:
    """Store the crisis event (no message text); if the store is down or slow,
    it goes to the outbox (bot/outbox.py). Never blocks signposting for long."""
    from bot.crisis.patterns import versions

    current = _settings()[0]
    version = ",".join(f"{k}:{v}" for k, v in versions().items())
    item = outbox.event(
        tracker.sender_id, result.level, result.subject, list(result.categories), resources, version
    )
    await outbox.record(UnitOfWork(current.database_url), current.var_dir, item)


def crisis_slots(tracker: Tracker, result: Assessment) -> dict[str, Any]:
    """Slots after a crisis response: the flag that stays, and fresh safety questions."""
    decision = policy.decide(result, field_state(tracker, None))
    slots: dict[str, Any] = {
        "crisis_level": decision.level,
        "crisis_subject": result.subject,
        "crisis_pending": False,
        "after_safety": None,
        "risk_check": None if result.level == "ask" else NOT_ASKED,
        "safe_now": None,
        "continue_referral": None,
    }
    if decision.flagged:
        slots["crisis_flag"] = True
    if result.subject == "other" and result.level != "ask":
        slots["safe_now"] = NOT_ASKED  # they are asking for someone else
    return slots


async def respond_to_second_line(
    dispatcher: CollectingDispatcher, tracker: Tracker, result: Assessment
) -> dict[str, Any]:
    """A crisis found while checking an answer: signpost, record, and pause for safety."""
    resources = signpost(dispatcher, tracker, result, first_response=True)
    await record(tracker, result, resources)
    return {**crisis_slots(tracker, result), "crisis_pending": True}


def field_state(tracker: Tracker, field: str | None) -> policy.State:
    """The crisis state of the conversation, at the referral question ``field``."""
    data = dataset.load()
    try:
        narrative = field is not None and data.get(field).risk_narrative
    except KeyError:
        field, narrative = None, False
    return policy.State(
        level=tracker.get_slot("crisis_level") or "none",
        flagged=bool(tracker.get_slot("crisis_flag")),
        field=field,
        risk_narrative=narrative,
        interruptions=(tracker.get_slot("crisis_asks") or {}).get(field, 0) if field else 0,
        skippable=field in data.names,
    )


async def field_outcome(
    decision: policy.Decision,
    dispatcher: CollectingDispatcher,
    tracker: Tracker,
    field: str | None,
    text: str,
    result: Assessment,
) -> dict[str, Any]:
    """What a crisis response does to the question it interrupted (bot.crisis.policy)."""
    if field is None or not (decision.store_answer or decision.ask_again or decision.skip_field):
        return {}
    if decision.store_answer:
        from actions.accept import accept  # accept uses this module too

        return await accept(field, text, dispatcher, tracker, signals=result.signals)
    asks = dict(tracker.get_slot("crisis_asks") or {})
    asks[field] = asks.get(field, 0) + 1
    if decision.skip_field:
        log.info("question %s skipped after a second crisis response", field)
        return {field: SKIPPED, "crisis_asks": asks, "skip_offer_pending": None}
    return {field: None, "crisis_asks": asks, "skip_offer_pending": field}


async def respond_in_field(
    dispatcher: CollectingDispatcher, tracker: Tracker, result: Assessment, field: str, text: str
) -> dict[str, Any]:
    """A crisis found while checking the answer to ``field``: signpost and record
    first; then store it (a risk narrative) or ask once more, as the policy says."""
    decision = policy.decide(result, field_state(tracker, field))
    slots = await respond_to_second_line(dispatcher, tracker, result)
    slots.update(await field_outcome(decision, dispatcher, tracker, field, text, result))
    return slots


def _asked_in_referral(tracker: Tracker) -> str | None:
    """The referral question a crisis message interrupted, if any."""
    if tracker.active_loop_name != REFERRAL_FORM:
        return None
    asked = tracker.get_slot("requested_slot")
    return asked if isinstance(asked, str) else None


class ActionCrisisFollowUp(Action):
    """After the rule's fixed crisis response: local team, record, flags."""

    def name(self) -> str:
        return "action_crisis_follow_up"

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        result = latest_assessment(tracker)
        intent = (tracker.latest_message.get("intent") or {}).get("name")
        if RANK[result.level] < RANK["ask"] and intent in routing.CRISIS_INTENTS:
            # The classifier was confident where the rules found nothing: ask directly.
            result = Assessment(
                level="ask", subject="unknown", categories=("classifier",), language=result.language
            )
        if result.language not in routing.RESPONSE_LANGUAGES:
            dispatcher.utter_message(response="utter_crisis_interpreter")
        resources = signpost(dispatcher, tracker, result, first_response=False)
        await record(tracker, result, resources)
        field = _asked_in_referral(tracker)
        decision = policy.decide(result, field_state(tracker, field))
        text = tracker.latest_message.get("text") or ""
        slots = crisis_slots(tracker, result)
        slots.update(await field_outcome(decision, dispatcher, tracker, field, text, result))
        return [SlotSet(k, v) for k, v in slots.items()]


class ValidateSafetyForm(FormValidationAction):
    """The safety questions: a direct question at "ask", then "are you safe now",
    then whether to carry on with the referral."""

    def name(self) -> str:
        return "validate_safety_form"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        return list(SAFETY_SLOTS)

    async def get_validation_events(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        """Validate only the answer to the question just asked (see ValidateReferralForm)."""
        asked = tracker.get_slot("requested_slot")
        updates: dict[str, Any] = {}
        for slot, value in tracker.slots_to_validate().items():
            if slot in SAFETY_SLOTS and slot == asked:
                result = await getattr(self, f"validate_{slot}")(value, dispatcher, tracker, domain)
                updates.update(result)
                tracker.slots.update(result)
        return [SlotSet(slot, value) for slot, value in updates.items()]

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[EventType]:
        events = await super().run(dispatcher, tracker, domain)
        slots = tracker.slots
        if tracker.get_slot("continue_referral") is None and tracker.get_slot("safe_now") is not None:
            outcome = tracker.get_slot("referral_outcome")
            if outcome == "submitted":
                events.append(SlotSet("continue_referral", "done"))
            elif outcome in ("consent_declined", "other_referrer"):
                events.append(SlotSet("continue_referral", "stay"))
            slots = {**slots, **{e["name"]: e["value"] for e in events if e.get("event") == "slot"}}
        if all(slots.get(s) is not None for s in SAFETY_SLOTS):
            events.append(SlotSet("after_safety", _after_safety(slots)))
            events.append(SlotSet("crisis_pending", False))
        return events

    async def validate_risk_check(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        # Only a clear no is a no; anything else is treated as yes, and its
        # words are kept for staff.
        if answers.clear_no(str(value)):
            dispatcher.utter_message(response="utter_risk_no")
            return {"risk_check": "no", "safe_now": NOT_ASKED, "continue_referral": "resume"}
        result = Assessment(
            level="crisis",
            subject="self",
            categories=("answered_risk_check",),
            language=tracker.get_slot("language") or "en",
        )
        resources = signpost(dispatcher, tracker, result, first_response=True)
        await record(tracker, result, resources)
        words = dict(tracker.get_slot("safety_words") or {})
        if not answers.clear_yes(str(value)):
            words["risk_check"] = str(value)[:500]
        return {
            "risk_check": "yes",
            "safety_words": words,
            "crisis_flag": True,
            "crisis_level": raise_level(tracker.get_slot("crisis_level") or "none", "crisis"),
        }

    async def validate_safe_now(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = str(value)
        if check_in_if_retracted(dispatcher, text):
            return {"safe_now": "retracted"}
        postal = validators.normalise_postal_code(text, _settings()[1].postal_format)
        if postal is not None:
            # A postal code for the local team; the safety question stands.
            result = Assessment(
                level=tracker.get_slot("crisis_level") or "crisis",
                subject=tracker.get_slot("crisis_subject") or "self",
            )
            signpost(dispatcher, _with_postal(tracker, postal), result, first_response=False)
            return {"safe_now": None, "postal_code": tracker.get_slot("postal_code") or postal}
        if answers.clear_yes(text, safe=True):
            dispatcher.utter_message(response="utter_crisis_safe")
            return {"safe_now": "yes"}
        # "No", or anything unclear ("yes but..."), is treated as not safe.
        dispatcher.utter_message(response="utter_crisis_not_safe")
        slots: dict[str, Any] = {"safe_now": "no"}
        if not answers.clear_no(text):
            slots["safety_words"] = {**(tracker.get_slot("safety_words") or {}), "safe_now": text[:500]}
        return slots

    async def validate_continue_referral(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        text = str(value)
        if check_in_if_retracted(dispatcher, text):
            return {"continue_referral": "no"}
        latest = tracker.latest_message or {}
        answer = validators.parse_yes_no(text, latest.get("intent") if latest.get("text") == text else None)
        if answer is None:
            dispatcher.utter_message(response="utter_invalid_yes_no")
            return {"continue_referral": None}
        return {"continue_referral": "yes" if answer else "no"}


def check_in_if_retracted(dispatcher: CollectingDispatcher, text: str) -> bool:
    """ "jk", "forget it", "I'm fine": a gentle check-in and the resources again; the flag stays."""
    if is_retraction(text):
        dispatcher.utter_message(response="utter_crisis_check_in")
        return True
    return False


def _after_safety(slots: dict[str, Any]) -> str:
    return {"yes": "continue", "resume": "resume", "done": "done"}.get(slots.get("continue_referral"), "stay")


def _with_postal(tracker: Tracker, postal: str) -> Tracker:
    copy = tracker.copy()
    copy.slots["postal_code"] = postal
    return copy
