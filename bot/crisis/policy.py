"""The one crisis policy: from an assessment and the conversation's crisis
state, what to do. No Rasa imports.

The NLU component (which intent, so the fixed response goes out by rule), the
actions (signposting, flags, the field being asked) and the web gateway (its
own fixed response when Rasa cannot answer) all ask this module, so the
three cannot drift apart.

The state table (tests/test_crisis_policy.py checks it row by row):

=====================  ===========  ===========  =========================
assessment level       response     flag         the question being asked
=====================  ===========  ===========  =========================
none                   -            unchanged    answered as usual
ask                    the direct   unchanged    risk narrative: stored;
                       question                  other field: asked once
                                                 more (with a skip line),
                                                 then skipped; a step
                                                 (consent, review): asked
                                                 again if they carry on
crisis, imminent       fixed crisis set, stays   the same as at ask
                       wording
=====================  ===========  ===========  =========================

Every response at ask or above records a crisis event, and starts the safety
questions. Which fields are risk narratives is in bot/dataset.yml.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.crisis import routing
from bot.crisis.types import RANK, Assessment, raise_level

# A question is asked at most this many times in all once a crisis response
# has interrupted it: the first time, and once more.
MAX_ASKS_AFTER_CRISIS = 2


@dataclass(frozen=True)
class State:
    """What the conversation already holds about crisis."""

    level: str = "none"  # highest level shown so far
    flagged: bool = False  # the sticky crisis flag
    field: str | None = None  # the referral question being asked, if any
    risk_narrative: bool = False  # that question asks about risk (bot/dataset.yml)
    interruptions: int = 0  # crisis responses already given at that question
    # A data field may be skipped; a dialogue step (consent, review) cannot,
    # so it simply comes back if the person chooses to carry on.
    skippable: bool = True


@dataclass(frozen=True)
class Decision:
    audience: str | None  # routing audience (imminent, crisis, other, danger, ask); None: no crisis
    response: str | None  # the fixed response to utter first (None at ask: the safety form asks)
    intent: str | None  # the NLU intent that makes the rule utter it
    level: str  # the conversation's level after this message
    flagged: bool  # the sticky flag after this message
    record_event: bool  # a crisis event must be stored (or put in the outbox)
    safety_questions: bool  # start the safety form
    store_answer: bool = False  # the message is the answer to the question being asked
    ask_again: bool = False  # ask the question once more, saying it can be skipped
    skip_field: bool = False  # the question is not asked a third time: recorded as skipped

    @property
    def is_crisis(self) -> bool:
        return self.audience is not None


def decide(assessment: Assessment, state: State = State()) -> Decision:
    """What this message calls for, given the conversation so far."""
    who = routing.audience(assessment)
    if who is None:
        return Decision(None, None, None, state.level, state.flagged, False, False)
    level = raise_level(state.level, assessment.level)
    flagged = state.flagged or RANK[assessment.level] >= RANK["crisis"]
    store = ask_again = skip = False
    if state.field is not None and state.skippable:
        if state.risk_narrative:
            store = True
        elif state.interruptions + 1 >= MAX_ASKS_AFTER_CRISIS:
            skip = True
        else:
            ask_again = True
    return Decision(
        audience=who,
        response=routing.RESPONSES.get(who),
        intent=routing.INTENTS[who],
        level=level,
        flagged=flagged,
        record_event=True,
        safety_questions=True,
        store_answer=store,
        ask_again=ask_again,
        skip_field=skip,
    )


def gateway_response(assessment: Assessment) -> str | None:
    """The fixed response the gateway shows by itself when Rasa cannot answer:
    only at crisis or above (the direct question needs the dialogue)."""
    return decide(assessment).response if assessment.at_least_crisis else None
