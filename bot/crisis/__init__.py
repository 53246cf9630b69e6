"""Crisis detection. No Rasa imports: used by the NLU component, the actions and the CLI.

from bot.crisis import assess
assess("I want to end it all", history=["I lost my job"]).level  # "crisis"
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from bot.crisis.types import LEVELS, RANK, Assessment, Evidence, raise_level

log = logging.getLogger(__name__)
FAIL_SAFE = Assessment(level="ask", subject="unknown", categories=("detector_error",))


def assess(text: str, history: Sequence[str] = (), upstream: Mapping | None = None) -> Assessment:
    """Assess one message with its recent history. Never raises.

    `upstream` is this same message's assessment from an earlier process (the
    NLU component's, in the parse data): the semantic layer's result is taken
    from it instead of loading the encoder here. The action server uses it.

    If any part fails the answer is "ask", so the person is asked directly,
    and the error is logged without the message text.
    """
    from bot.crisis.detector import assess_message

    try:
        return assess_message(text or "", tuple(history or ()), upstream)
    except Exception as err:  # noqa: BLE001 - fail safe, whatever went wrong
        log.error("crisis detector failed (%s); treating the message as 'ask'", type(err).__name__)
        return FAIL_SAFE


def warm_up(semantic_layer: bool = True) -> None:
    """Build the pipelines, load the encoder and its heads now rather than on the first message.

    Raises EncoderUnavailable (saying why) when the encoder cannot load: a
    process that assesses messages must then refuse to start. The action
    server passes semantic_layer=False: it reads the NLU component's result.
    """
    from bot.crisis.patterns import LANGUAGES, compiled

    for language in LANGUAGES:
        compiled(language)
    if semantic_layer:
        from bot.crisis import semantic

        semantic.scorer()
        assess("warming up the crisis detector")
    else:
        assess("warming up the crisis detector", upstream={})


def signals_of(text: str) -> tuple[str, ...]:
    """What a free-text answer is about, for triage's `detects:` rules (semantic.SIGNAL_CATEGORIES)."""
    return assess(text).signals


__all__ = ["LEVELS", "RANK", "Assessment", "Evidence", "assess", "raise_level", "signals_of", "warm_up"]


def is_retraction(text: str) -> bool:
    """ "jk", "forget it", "I'm fine" and the like: taking back what was said."""
    import re

    from bot.crisis.normalise import tables

    words = re.sub(r"[^\w\s']", " ", (text or "").lower().replace("\u2019", "'"))
    words = re.sub(r"\s+", " ", words).strip()
    return words in set(tables()["retractions"])
