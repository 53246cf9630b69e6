"""Commands that work at any point: which one a message is, if any.

The phrases are the NLU examples in data/nlu/commands.yml, so the classifier
and this gate learn from one list. The gate is deliberately strict: a message
is a command only when, once "please", "can you", punctuation and case are
dropped, it *is* one of those phrases, or "change my <answer name>" naming a
field of the data dictionary. Anything longer is an answer. Someone typing
"I need help with my mood" is answering a question, not asking for the help
menu, and must never have that answer swallowed.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from bot import dataset

COMMANDS_FILE = Path(__file__).resolve().parent.parent / "data" / "nlu" / "commands.yml"
CHANGE_ANSWER = "change_answer"
# Intents only the gate may set; the classifier's guess of one is not enough.
INTENTS = (
    "help",
    "repeat",
    "explain",
    "skip",
    "go_back",
    CHANGE_ANSWER,
    "pause",
    "stop",
    "delete_answers",
    "delete_confirmed",
    "talk_to_person",
    "easy_read_on",
    "easy_read_off",
    "resume_conversation",
    "show_question",  # also sent by the gateway on a page reload
)

_POLITE_START = re.compile(
    r"^(?:(?:ok(?:ay)?|so|um+|sorry|hi|hello|please|pls|plz|can you|could you|would you|will you|"
    r"can i|could i|may i|i want to|i wanna|i would like to|i'd like to|id like to|let me|i need to)\s+)+"
)
_POLITE_END = re.compile(r"(?:\s+(?:please|pls|plz|thanks|thank you|now))+$")
_CHANGE = re.compile(r"^(?:change|edit|fix|correct|update|redo)\s+(?:(?:my|the|their|his|her|your)\s+)?(.+)$")
_POSSESSIVE = re.compile(r"^(?:my|the|their|his|her|your)\s+")


@dataclass(frozen=True)
class Command:
    intent: str
    # For change_answer: the field name as the person wrote it ("phone number").
    field_words: str | None = None


def normalise(text: str) -> str:
    """Lower case, curly quotes made straight, punctuation dropped, polite padding removed."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[^\w\s']", " ", text)
    text = re.sub(r"\s+", " ", text).strip().strip("'")
    previous = None
    while previous != text:
        previous = text
        text = _POLITE_END.sub("", _POLITE_START.sub("", text)).strip()
    return text


def match(text: str) -> Command | None:
    """The command this whole message is, or None when it is an answer."""
    if not text or len(text) > 80:
        return None
    words = normalise(text)
    if not words:
        return None
    intent = phrases().get(words)
    if intent is not None:
        return Command(intent)
    change = _CHANGE.match(words)
    if change and _POSSESSIVE.sub("", change.group(1)) in field_phrases():
        return Command(CHANGE_ANSWER, change.group(1))
    return None


@functools.lru_cache(maxsize=1)
def phrases() -> dict[str, str]:
    """Normalised example phrase -> intent, from data/nlu/commands.yml."""
    doc = yaml.safe_load(COMMANDS_FILE.read_text(encoding="utf-8"))
    table: dict[str, str] = {}
    for block in doc["nlu"]:
        if block.get("intent") not in INTENTS or block["intent"] == CHANGE_ANSWER:
            continue
        for line in block["examples"].splitlines():
            example = line.strip().removeprefix("- ").strip()
            if example:
                key = normalise(example)
                if table.setdefault(key, block["intent"]) != block["intent"]:
                    raise ValueError(f"command phrase {example!r} is listed under two intents")
    return table


@functools.lru_cache(maxsize=1)
def field_phrases() -> frozenset[str]:
    """Every way the data dictionary names a field, without a leading "my"/"their"."""
    out = set()
    for spec in dataset.load().fields:
        for phrase in (spec.label, spec.name.replace("_", " "), *spec.synonyms):
            out.add(_POSSESSIVE.sub("", normalise(phrase)))
    return frozenset(out)
