"""Settings shared by the actions, read once per process on first use."""

from __future__ import annotations

import functools

from bot import validators
from bot.config import ServiceConfig, Settings


@functools.lru_cache(maxsize=1)
def settings() -> tuple[Settings, ServiceConfig]:
    current = Settings.from_env()
    return current, current.service_config()


def rules() -> validators.Rules:
    config = settings()[1]
    return validators.Rules(postal_format=config.postal_format, phone_region=config.phone_region)
