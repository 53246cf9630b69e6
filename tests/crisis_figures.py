"""The crisis detector's figures on a labelled set, as issue 15's acceptance states them.

Used by the scoring tests (tests/test_crisis_detector.py) and bench/encoders.py.
A row has `text`, `expect` (none/ask/crisis/imminent) and optionally
`history`, `source` and `category`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

from bot.crisis.types import RANK

# name -> (description, which rows, what counts as met, target, "at least" or "at most")
FIGURES = {
    "crisis_at_crisis": ("crisis and imminent items at crisis or above", 2, 2, 0.95, "min"),
    "crisis_at_ask": ("crisis and imminent items at ask or above", 2, 1, 0.99, "min"),
    "imminent_at_imminent": ("imminent items at imminent", 3, 3, 0.85, "min"),
    "ask_at_ask": ("ask items at ask or above", 1, 1, 0.90, "min"),
    "none_at_crisis": ("none items at crisis or above", 0, 2, 0.10, "max"),
    "none_at_ask": ("none items at ask or above", 0, 1, 0.30, "max"),
}


def figures(expected: Sequence[str], got: Sequence[str]) -> dict[str, tuple[int, int]]:
    """name -> (items counted as met, items in the group)."""
    out = {}
    for name, (_, group, least, _, _) in FIGURES.items():
        rows = [
            (e, g)
            for e, g in zip(expected, got, strict=True)
            if (RANK[e] >= group if group == 2 else RANK[e] == group)
        ]
        out[name] = (sum(RANK[g] >= least for _, g in rows), len(rows))
    return out


def share(pair: tuple[int, int]) -> float:
    met, total = pair
    return met / total if total else float("nan")


def meets_target(name: str, pair: tuple[int, int]) -> bool:
    _, _, _, target, kind = FIGURES[name]
    value = share(pair)
    return value >= target if kind == "min" else value <= target


def table(title: str, expected: Sequence[str], got: Sequence[str]) -> str:
    lines = [f"{title} ({len(expected)} items)"]
    for name, pair in figures(expected, got).items():
        description, _, _, target, kind = FIGURES[name]
        if not pair[1]:
            continue
        mark = "met" if meets_target(name, pair) else "NOT MET"
        bound = ">=" if kind == "min" else "<="
        lines.append(
            f"  {description:45} {share(pair):6.1%} ({pair[0]}/{pair[1]}) target {bound} {target:.0%}: {mark}"
        )
    return "\n".join(lines)


def by_group(rows: Sequence[dict], got: Sequence[str], key: Callable[[dict], str]) -> str:
    """One line per group: risk items meeting their level, and none items at crisis or ask."""
    groups: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for row, level in zip(rows, got, strict=True):
        groups[key(row)].append((row["expect"], level))
    lines = []
    for name, pairs in sorted(groups.items()):
        risk = [(e, g) for e, g in pairs if e != "none"]
        none = [g for e, g in pairs if e == "none"]
        parts = []
        if risk:
            met = sum(RANK[g] >= min(RANK[e], RANK["crisis"]) for e, g in risk)
            parts.append(f"risk met {met}/{len(risk)}")
        if none:
            parts.append(
                f"none at crisis {sum(RANK[g] >= 2 for g in none)}/{len(none)}, "
                f"at ask {sum(RANK[g] >= 1 for g in none)}/{len(none)}"
            )
        lines.append(f"  {name[:70]:70} {'; '.join(parts)}")
    return "\n".join(lines)
