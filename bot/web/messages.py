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
)


@functools.lru_cache(maxsize=1)
def load() -> dict[str, str]:
    domain = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text(encoding="utf-8"))
    return {name: domain["responses"][name][0]["text"] for name in GATEWAY_RESPONSES}


def message(name: str) -> dict:
    return {"text": load()[name]}
