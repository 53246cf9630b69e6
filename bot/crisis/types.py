"""Detector results. Kept apart from the detector so importing them loads no NLP."""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("none", "ask", "crisis", "imminent")
RANK = {level: rank for rank, level in enumerate(LEVELS)}


def raise_level(current: str, candidate: str) -> str:
    return candidate if RANK[candidate] > RANK[current] else current


@dataclass(frozen=True)
class Evidence:
    text: str
    pattern: str
    category: str
    level: str
    negated: bool = False

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "pattern": self.pattern,
            "category": self.category,
            "level": self.level,
            "negated": self.negated,
        }


@dataclass(frozen=True)
class Assessment:
    level: str = "none"
    subject: str = "unknown"
    categories: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    language: str = "en"
    # What the message is about, for triage (`detects:` in service.yml), at any
    # level: plan_or_preparation, escalating_self_harm, danger_from_others,
    # medication_change, psychosis_with_risk, child_at_risk.
    signals: tuple[str, ...] = ()

    @property
    def at_least_crisis(self) -> bool:
        return RANK[self.level] >= RANK["crisis"]

    def as_dict(self) -> dict:
        return {
            "level": self.level,
            "subject": self.subject,
            "categories": list(self.categories),
            "evidence": [e.as_dict() for e in self.evidence],
            "language": self.language,
            "signals": list(self.signals),
        }
