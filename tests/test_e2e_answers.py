"""Answers read the way people write them, with the trained model: the fast
path (bot/answers.py) and then Rasa's NLU, on held-out phrasings written
apart from both (tests/data/answer_phrasings.yml). Prints the figures."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import yaml
from test_referral import answered

from bot import referral, validators

pytestmark = pytest.mark.e2e
PHRASINGS = yaml.safe_load((Path(__file__).parent / "data" / "answer_phrasings.yml").read_text())
# Measured 85-95% per choice (README); a plain answer not understood is asked again.
MIN_UNDERSTOOD = 0.8


def read(choice: str, text: str, intent: dict) -> object:
    if choice in ("yes", "no"):
        return validators.parse_yes_no(text, intent)
    found = referral.parse_review(text, answered(), intent)
    return found.action if found else None


EXPECTED = {"yes": True, "no": False, "send": "send", "change": "which"}
# What each must never be read as: the opposite answer.
WRONG = {"yes": (False,), "no": (True,), "send": ("which",), "change": ("send",), "not_send": ("send",)}


@pytest.fixture(scope="module")
def parse(trained_model):
    from rasa.core.agent import load_agent

    agent = asyncio.run(load_agent(str(trained_model)))

    def intent_of(text: str) -> dict:
        return asyncio.run(agent.parse_message(text))["intent"]

    return intent_of


def test_held_out_answers_are_understood_and_never_read_the_wrong_way(parse):
    print("\nAnswers (held out): understood, and read the wrong way")
    failures = []
    for choice in ("yes", "no", "send", "change", "not_send"):
        texts = PHRASINGS[choice]
        readings = [read("send" if choice == "not_send" else choice, t, parse(t)) for t in texts]
        wrong = [t for t, r in zip(texts, readings, strict=True) if r in WRONG[choice]]
        if choice == "not_send":
            print(f"  {choice:9} {len(texts):3} phrasings, sent by mistake: {len(wrong)}")
        else:
            understood = sum(r == EXPECTED[choice] for r in readings) / len(texts)
            print(f"  {choice:9} {len(texts):3} phrasings, understood {understood:5.1%}, wrong: {len(wrong)}")
            if understood < MIN_UNDERSTOOD:
                failures.append((choice, understood))
        failures += [(choice, t) for t in wrong]
    assert failures == []
