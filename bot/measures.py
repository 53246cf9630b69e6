"""PHQ-9 and GAD-7: totals and severity bands from the item scores (0 to 3).

Standard scoring (Kroenke, Spitzer and Williams 2001; Spitzer et al. 2006).
A total is only given when every item is answered: a partial questionnaire
is not a score. Any PHQ-9 item 9 answer above zero brings up the direct
safety question in the chat (actions/forms.py) and is a red flag in triage.
"""

from __future__ import annotations

from collections.abc import Mapping

PHQ9_ITEMS = tuple(f"phq9_{i}" for i in range(1, 10))
GAD7_ITEMS = tuple(f"gad7_{i}" for i in range(1, 8))
ITEM_9 = "phq9_9"

# (lowest total, band), highest first.
PHQ9_BANDS = ((20, "severe"), (15, "moderately severe"), (10, "moderate"), (5, "mild"), (0, "minimal"))
GAD7_BANDS = ((15, "severe"), (10, "moderate"), (5, "mild"), (0, "minimal"))


def item_scores(answers: Mapping[str, object], items: tuple[str, ...]) -> list[int] | None:
    scores = [answers.get(name) for name in items]
    if all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 3 for s in scores):
        return scores  # type: ignore[return-value]
    return None


def _band(total: int, bands: tuple[tuple[int, str], ...]) -> str:
    return next(name for lowest, name in bands if total >= lowest)


def scores(answers: Mapping[str, object]) -> dict[str, object]:
    """phq9_score, phq9_severity, gad7_score, gad7_severity (None when incomplete)."""
    out: dict[str, object] = {}
    for prefix, items, bands in (("phq9", PHQ9_ITEMS, PHQ9_BANDS), ("gad7", GAD7_ITEMS, GAD7_BANDS)):
        given = item_scores(answers, items)
        total = sum(given) if given is not None else None
        out[f"{prefix}_score"] = total
        out[f"{prefix}_severity"] = _band(total, bands) if total is not None else None
    return out


def item_9_positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
