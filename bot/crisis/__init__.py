"""Crisis detection. No Rasa imports: used by the NLU component, the actions and the CLI.

from bot.crisis import assess
assess("I want to end it all", history=["I lost my job"]).level  # "crisis"
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bot.crisis.types import LEVELS, RANK, Assessment, Evidence, raise_level

log = logging.getLogger(__name__)
FAIL_SAFE = Assessment(level="ask", subject="unknown", categories=("detector_error",))


def assess(text: str, history: Sequence[str] = ()) -> Assessment:
    """Assess one message with its recent history. Never raises.

    If any part fails the answer is "ask", so the person is asked directly,
    and the error is logged without the message text.
    """
    from bot.crisis.detector import assess_message

    try:
        return assess_message(text or "", tuple(history or ()))
    except Exception as err:  # noqa: BLE001 - fail safe, whatever went wrong
        log.error("crisis detector failed (%s); treating the message as 'ask'", type(err).__name__)
        return FAIL_SAFE


def warm_up() -> None:
    """Build the pipelines and the classifier now rather than on the first message."""
    from bot.crisis import classifier
    from bot.crisis.patterns import LANGUAGES, compiled

    for language in LANGUAGES:
        compiled(language)
    classifier.model()
    assess("warming up the crisis detector")


__all__ = ["LEVELS", "RANK", "Assessment", "Evidence", "assess", "raise_level", "warm_up"]


def is_retraction(text: str) -> bool:
    """ "jk", "forget it", "I'm fine" and the like: taking back what was said."""
    import re

    from bot.crisis.normalise import tables

    words = re.sub(r"[^\w\s']", " ", (text or "").lower().replace("\u2019", "'"))
    words = re.sub(r"\s+", " ", words).strip()
    return words in set(tables()["retractions"])
