"""The referral data dictionary, loaded from ``dataset.yml``.

Field names are a contract shared by the store, the export and the chat
protocol. Everything that needs to know "which fields exist, in what order,
and how each is answered" asks this module rather than keeping its own list.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DATASET_FILE = Path(__file__).with_name("dataset.yml")

# Slot values that stand for "answered, but not with data". They are recorded
# as such (skipped_fields, unknown_fields, declined_fields), never as empty.
SKIPPED = "__skipped__"
UNKNOWN = "__unknown__"
DECLINED = "__declined__"
NON_ANSWERS = {SKIPPED: "skipped", UNKNOWN: "unknown", DECLINED: "declined"}

REQUIRED = "required"
DECLINABLE = "declinable"
OPTIONAL = "optional"
CONTACT = "contact"  # phone and email: each optional, but one of the two is required


@dataclass(frozen=True)
class FieldSpec:
    name: str
    input: str
    requirement: str = REQUIRED
    type: str = "text"
    section: str = "core"
    label: str = ""
    synonyms: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    free_text: bool = False
    risk_narrative: bool = False  # a disclosure flagged as a crisis is this question's answer

    @property
    def optional(self) -> bool:
        """Whether the chat protocol marks the question optional (skip allowed)."""
        return self.requirement in (OPTIONAL, CONTACT)

    @property
    def may_decline(self) -> bool:
        return self.requirement in (OPTIONAL, DECLINABLE, CONTACT)


@dataclass(frozen=True)
class Dataset:
    version: int
    fields: tuple[FieldSpec, ...]
    steps: tuple[FieldSpec, ...] = field(default=())

    def get(self, name: str) -> FieldSpec:
        for spec in self.fields + self.steps:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def section(self, section: str) -> list[FieldSpec]:
        return [f for f in self.fields if f.section == section]

    @property
    def referrer_fields(self) -> list[FieldSpec]:
        """Stored apart from the person, in the referrers table."""
        return self.section("referrer")

    @property
    def person_fields(self) -> list[FieldSpec]:
        """Stored on the referral itself."""
        return [f for f in self.fields if f.section != "referrer"]

    def match_label(self, text: str, among: list[FieldSpec] | None = None) -> FieldSpec | None:
        """The field a person names in "change my phone number", or None.

        Only fields in ``among`` (default: all) are candidates. Longest
        synonym wins, so "email address" beats "address".
        """
        words = _words(text)
        best: tuple[int, FieldSpec] | None = None
        for spec in self.fields if among is None else among:
            for phrase in (spec.label, spec.name.replace("_", " "), *spec.synonyms):
                target = _words(phrase)
                if target and _contains(words, target):
                    if best is None or len(target) > best[0]:
                        best = (len(target), spec)
        return best[1] if best else None


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower().replace("'", ""))


def _contains(words: list[str], target: list[str]) -> bool:
    n = len(target)
    return any(words[i : i + n] == target for i in range(len(words) - n + 1))


def _spec(raw: dict) -> FieldSpec:
    raw = dict(raw)
    raw["synonyms"] = tuple(raw.get("synonyms", ()))
    raw["choices"] = tuple(raw.get("choices", ()))
    return FieldSpec(**raw)


@functools.lru_cache(maxsize=1)
def load() -> Dataset:
    raw = yaml.safe_load(DATASET_FILE.read_text(encoding="utf-8"))
    return Dataset(
        version=int(raw["version"]),
        fields=tuple(_spec(f) for f in raw["fields"]),
        steps=tuple(_spec(s) for s in raw["steps"]),
    )
