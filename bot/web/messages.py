"""The gateway's own messages, read from domain.yml so all wording lives there."""

from __future__ import annotations

import functools

import yaml

from bot.config import PROJECT_ROOT

GATEWAY_RESPONSES = (
    "utter_service_error",
    "utter_invalid_too_long",
    "utter_invalid_empty",
    "utter_message_not_text",
    "utter_delete_failed",
    "utter_resume_code_unknown",
    "utter_resume_code_limit",
    "utter_session_ended",
    "utter_service_unavailable",
    "utter_actions_paused",
    "utter_busy",
)
# What the gateway shows by itself when Rasa cannot answer and the detector
# finds a crisis: the same fixed, reviewed wording the assistant uses.
CRISIS_RESPONSES = {
    "imminent": "utter_crisis_imminent",
    "self": "utter_crisis_self",
    "other": "utter_crisis_other",
}


@functools.lru_cache(maxsize=1)
def _responses() -> dict[str, list[dict]]:
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))
    return domain["responses"]


@functools.lru_cache(maxsize=4)
def load(profile: str = "us") -> dict[str, str]:
    """The gateway's messages in a service profile (us or uk): its numbers."""
    return {name: _variant(name, profile)["text"] for name in GATEWAY_RESPONSES}


def message(name: str, profile: str = "us") -> dict:
    return {"text": load(profile)[name]}


def _variant(name: str, profile: str) -> dict:
    """The response's variant for this profile alone, else its default (US English)."""
    variants = {
        tuple(sorted((c["name"], c["value"]) for c in variant.get("condition") or [])): variant
        for variant in _responses()[name]
    }
    return variants.get((("service_profile", profile),)) or variants[()]


def crisis_message(level: str, subject: str, profile: str) -> dict:
    """The English crisis response for this level and subject in a service profile (us or uk)."""
    name = CRISIS_RESPONSES["imminent" if level == "imminent" else "other" if subject == "other" else "self"]
    variant = _variant(name, profile)
    return {"text": variant["text"], "custom": variant["custom"]}
