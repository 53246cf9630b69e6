"""Property tests (hypothesis): every validator and the crisis detector take
any text without raising and within a deadline, and a crisis phrase is still
found wherever it sits inside unrelated text.

The deadline is hypothesis's own per-example limit: generous, so a slow
machine never fails it, but it stops a catastrophic (for example regex
backtracking) case. Speed figures come from bench/crisis.py.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import dataset, validators
from bot.crisis.detector import assess_message

CASES = [json.loads(line) for line in (Path(__file__).parent / "data" / "crisis_cases.jsonl").open()]
# (message, the messages before it): some phrases are a crisis only after what came before.
CRISIS_PHRASES = [
    (c["text"], tuple(c.get("history", ()))) for c in CASES if c["expect"] in ("crisis", "imminent")
]
RULES = {
    "us": validators.Rules(postal_format="us", phone_region="US", today=dt.date(2026, 11, 22)),
    "uk": validators.Rules(postal_format="uk", phone_region="GB", today=dt.date(2026, 11, 22)),
}
FUZZ = settings(
    max_examples=60,
    deadline=dt.timedelta(seconds=5),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# Any text: every Unicode category, control characters and long runs included.
ANY_TEXT = st.text(max_size=2000) | st.text(
    alphabet=st.sampled_from("aA1 .,!?/-'\n\t\u200b\u202e"), max_size=3000
)
# Filler that cannot carry meaning: no vowels, so no negation, joke or quotation words.
FILLER = st.text(alphabet=st.sampled_from("bcdfghjklmnpqrstvwxz0123456789 "), max_size=200)


@pytest.mark.parametrize("spec", dataset.load().fields + dataset.load().steps, ids=lambda s: s.name)
@pytest.mark.parametrize("profile", ["us", "uk"])
@FUZZ
@given(text=ANY_TEXT)
def test_no_validator_raises_on_any_text(spec, profile, text):
    outcome = validators.check(spec, text, RULES[profile], allow_unknown=True)
    assert outcome is not None


@FUZZ
@given(text=ANY_TEXT, history=st.lists(ANY_TEXT, max_size=3))
def test_the_detector_never_raises_on_any_text(text, history):
    assessment = assess_message(text, history)
    assert assessment.level in ("none", "ask", "crisis", "imminent")


@FUZZ
@given(phrase=st.sampled_from(CRISIS_PHRASES), before=FILLER, after=FILLER)
def test_a_crisis_phrase_inside_random_text_is_still_found(phrase, before, after):
    message, history = phrase
    text = f"{before}. {message}. {after}" if before.strip() else f"{message}. {after}"
    assert assess_message(text, history).at_least_crisis, (text, history)
