"""From an assessment to what the person is shown: which fixed response, which resources.

The wording is in domain.yml; this only chooses among the responses there and
builds the machine-readable resources (custom.crisis) from the directory.
"""

from __future__ import annotations

from bot.crisis.directory import Directory
from bot.crisis.types import RANK, Assessment

DANGER_CATEGORIES = {"abuse_or_danger_from_others", "child_at_risk"}

# audience -> NLU intent the crisis component sets, and the response the rule utters
INTENTS = {
    "imminent": "crisis_imminent",
    "crisis": "crisis",
    "other": "crisis_other",
    "danger": "crisis_danger",
    "ask": "risk_check",
}
RESPONSES = {
    "imminent": "utter_crisis_imminent",
    "crisis": "utter_crisis_self",
    "other": "utter_crisis_other",
    "danger": "utter_crisis_danger",
}
CRISIS_INTENTS = frozenset(INTENTS.values())
# Languages with their own crisis wording in domain.yml. A message in any other
# language gets the English wording and utter_crisis_interpreter.
RESPONSE_LANGUAGES = ("en", "es")


def audience(assessment: Assessment) -> str | None:
    """Who the response is for: imminent, crisis, other, danger, ask; None below ask."""
    if RANK[assessment.level] < RANK["ask"]:
        return None
    if assessment.level == "ask":
        return "ask"
    if DANGER_CATEGORIES & set(assessment.categories):
        return "danger"
    if assessment.subject == "other":
        return "other"
    return "imminent" if assessment.level == "imminent" else "crisis"


def payload(assessment: Assessment, directory: Directory, postal_code: str | None = None) -> dict:
    """custom.crisis for a crisis message: level, subject and resources to show as buttons."""
    who = audience(assessment) or "ask"
    return {
        "crisis": {
            "level": assessment.level,
            "subject": assessment.subject,
            "resources": directory.resources(who, postal_code, assessment.language),
        }
    }
