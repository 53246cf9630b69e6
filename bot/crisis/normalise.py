"""Undo the ways people obscure or shorten crisis language before matching.

Leetspeak (k1ll), spaced-out letters (k i l l), repeated letters (dieee),
common misspellings (sucidal), chat abbreviations (kms, ctb, unalive) and
emoji (🔪 -> knife). Tables live in data/normalisation.yml. Leetspeak and
letter repairs apply only when they produce a word the patterns use, so
"50mg" stays "50mg".
"""

from __future__ import annotations

import functools
import re
import unicodedata
from pathlib import Path

import yaml

DATA = Path(__file__).with_name("data")


@functools.lru_cache(maxsize=1)
def tables() -> dict:
    return yaml.safe_load((DATA / "normalisation.yml").read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=1)
def lexicon() -> frozenset[str]:
    """Every word the patterns or the normalisation tables can produce."""
    words: set[str] = set()
    for name in ("patterns_en.yml", "patterns_es.yml"):
        raw = yaml.safe_load((DATA / name).read_text(encoding="utf-8"))
        for values in raw.get("sets", {}).values():
            words.update(str(v).lower() for v in values)
        for group in raw.get("risk", []) + raw.get("signals", []):
            for phrase in group["phrases"]:
                words.update(re.findall(r"[a-záéíóúñü']+", phrase.lower()))
    t = tables()
    for value in list(t["words"].values()) + list(t["phrases"].values()) + list(t["emoji"].values()):
        words.update(str(value).split())
    words.update(t["words"].keys())
    return frozenset(w for w in words if len(w) > 1)


_SPACED = re.compile(r"(?<![\w])((?:[a-z] ){2,}[a-z])(?![\w])")
_WORD = re.compile(r"[\w@$!'0-9]+")
_REPEATS = re.compile(r"(\w)\1{2,}")


def _segment(letters: str) -> str:
    """Split joined letters into lexicon words ("killmyself" -> "kill myself")."""
    words = lexicon()
    best: list[list[str] | None] = [None] * (len(letters) + 1)
    best[0] = []
    for end in range(1, len(letters) + 1):
        for start in range(max(0, end - 15), end):
            if best[start] is not None and letters[start:end] in words:
                candidate = best[start] + [letters[start:end]]
                if best[end] is None or len(candidate) < len(best[end]):
                    best[end] = candidate
    return " ".join(best[-1]) if best[-1] else letters


def _fix_word(match: re.Match) -> str:
    word = match.group(0)
    t = tables()
    words = lexicon()
    if word in t["words"]:
        return t["words"][word]
    core = word.strip("!'")
    if core in t["words"]:
        return word.replace(core, t["words"][core])
    if any(ch in t["leet"] for ch in core) and any(ch.isalpha() for ch in core):
        candidate = "".join(t["leet"].get(ch, ch) for ch in core)
        if candidate in words or candidate in t["words"]:
            return t["words"].get(candidate, candidate)
    if _REPEATS.search(core):
        for repl in (r"\1\1", r"\1"):
            candidate = _REPEATS.sub(repl, core)
            if candidate in words or candidate in t["words"]:
                return t["words"].get(candidate, candidate)
    return word


def normalise(text: str) -> str:
    t = tables()
    out = unicodedata.normalize("NFKC", text)
    for emoji, word in t["emoji"].items():
        out = out.replace(emoji, f" {word} ")
    out = out.lower().replace("\u2019", "'").replace("\u2018", "'")
    out = _SPACED.sub(lambda m: _segment(m.group(1).replace(" ", "")), out)
    out = _WORD.sub(_fix_word, out)
    for phrase, replacement in t["phrases"].items():
        out = re.sub(rf"(?<![\w]){re.escape(phrase)}(?![\w])", replacement, out)
    return re.sub(r"\s+", " ", out).strip()
