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


@functools.lru_cache(maxsize=1)
def load() -> dict[str, str]:
    return {name: _responses()[name][0]["text"] for name in GATEWAY_RESPONSES}


def message(name: str) -> dict:
    return {"text": load()[name]}


def crisis_message(level: str, subject: str, profile: str) -> dict:
    """The English crisis response for this level and subject in a service profile (us or uk)."""
    name = CRISIS_RESPONSES["imminent" if level == "imminent" else "other" if subject == "other" else "self"]
    variants = {
        tuple(sorted((c["name"], c["value"]) for c in variant.get("condition") or [])): variant
        for variant in _responses()[name]
    }
    # The profile's own variant, else the default one (US English).
    variant = variants.get((("service_profile", profile),)) or variants[()]
    return {"text": variant["text"], "custom": variant["custom"]}
