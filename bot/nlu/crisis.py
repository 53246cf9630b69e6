"""Rasa NLU component: run the crisis detector on every user message.

Placed after the intent classifier in config.yml. At `crisis` or `imminent`
it replaces the intent with one of the crisis intents, so a rule fires
whatever the dialogue state (inside any form, at review, after submission);
at `ask` it sets `risk_check`. Anything any layer scores at `ask` or above
reaches the direct safety question: a crisis intent the general intent
classifier guesses with confidence (CLASSIFIER_ASK_CONFIDENCE) where the
detector found nothing becomes `risk_check`; an unsure guess becomes `inform`.
The assessment goes into the parse data (`crisis`), where the action server
reads the semantic layer's result instead of loading the encoder itself.

It also adds entities that fill slots before any response is chosen:
`crisis_flag` (true at crisis or above: the sticky flag, set by Rasa itself,
so it holds with the action server down), and
`crisis_language` (es or en, on crisis messages, so the crisis response comes
in that language; other languages get the English wording and, from the
follow-up action, the line about interpreters) and `service_profile` (us or uk, from the service
configuration, so the numbers fit the country).
"""

from __future__ import annotations

import logging
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import ENTITIES, INTENT, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.crisis import assess, policy, routing, warm_up
from bot.crisis.types import RANK
from bot.nlu.commands import set_intent

log = logging.getLogger(__name__)
CLASSIFIER_ASK_CONFIDENCE = 0.8


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False)
class CrisisDetector(GraphComponent):
    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {"service_profile": None}

    def __init__(self, config: dict[str, Any]) -> None:
        self.profile = config.get("service_profile") or _configured_profile()

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> CrisisDetector:
        return cls(config)

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> CrisisDetector:
        component = cls(config)
        warm_up()  # build the pipelines at startup, not on someone's first message
        return component

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            self._process(message)
        return messages

    def _process(self, message: Message) -> None:
        text = message.get(TEXT)
        if not text or text.startswith("/"):
            return
        result = assess(text)
        message.set("crisis", result.as_dict(), add_to_output=True)
        current = message.get(INTENT) or {}
        decision = policy.decide(result)
        if decision.is_crisis:
            set_intent(message, decision.intent)
        elif current.get("name") in routing.CRISIS_INTENTS:
            # The intent classifier is a layer too: its confident crisis guess,
            # where the detector found nothing, is a reason to ask directly. Its
            # unsure ones (0.3-0.45 on ordinary answers such as "It is getting
            # worse every week") would stop referrals for nothing.
            confident = (current.get("confidence") or 0.0) >= CLASSIFIER_ASK_CONFIDENCE
            set_intent(message, routing.INTENTS["ask"] if confident else "inform")
        entities = list(message.get(ENTITIES) or [])
        if RANK[result.level] >= RANK["ask"] or result.language == "es":
            wording = result.language if result.language in routing.RESPONSE_LANGUAGES else "en"
            entities.append(_entity("crisis_language", wording, text))
        entities.append(_entity("service_profile", self.profile, text))
        if decision.flagged:
            # Fills the sticky crisis_flag slot in Rasa itself (a from_entity
            # mapping), so it holds even when the action server is down.
            entities.append(_entity("crisis_flag", True, text))
        message.set(ENTITIES, entities, add_to_output=True)


def _entity(name: str, value: object, text: str) -> dict:
    return {
        "entity": name,
        "value": value,
        "start": 0,
        "end": len(text),
        "extractor": "CrisisDetector",
        "confidence_entity": 1.0,
    }


def _configured_profile() -> str:
    from bot.config import ConfigError, Settings

    try:
        return Settings.from_env().service_config().postal_format
    except ConfigError as err:
        log.warning("service configuration unreadable (%s); crisis numbers default to the US profile", err)
        return "us"
