"""Rasa NLU component: the command gate (bot/commands.py).

Placed after the intent classifier and before the crisis detector in
config.yml. When the whole message is a command phrase, the command intent
is set with full confidence; when the classifier guessed a command for
anything else, the intent becomes `inform`, so the message is taken as an
answer. The crisis detector runs after this and overrides both.
"""

from __future__ import annotations

from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot import commands


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=False)
class CommandGate(GraphComponent):
    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> CommandGate:
        commands.phrases()  # read the phrase list at startup, and fail there if it is broken
        return cls()

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            text = message.get(TEXT)
            if not text or text.startswith("/"):
                continue
            command = commands.match(text)
            current = (message.get(INTENT) or {}).get("name")
            if command is not None:
                set_intent(message, command.intent)
            elif current in commands.INTENTS:
                set_intent(message, "inform")
        return messages


def set_intent(message: Message, name: str) -> None:
    """Make ``name`` the message's intent, at full confidence, first in the ranking."""
    intent = {"name": name, "confidence": 1.0}
    ranking = [intent] + [r for r in (message.get(INTENT_RANKING_KEY) or []) if r.get("name") != name]
    message.set(INTENT, intent, add_to_output=True)
    message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)
