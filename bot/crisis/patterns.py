"""Compile the reviewable phrase patterns (data/patterns_*.yml) into spaCy matchers.

Each language gets a blank spaCy pipeline with the lookup lemmatizer from
spacy-lookups-data (no model download). Pattern words are lemmatised by the
same pipeline, so "killing" in a pattern and "killed" in a message meet at
"kill".
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # spaCy's thinc imports TensorFlow if present

import spacy  # noqa: E402
import yaml  # noqa: E402
from spacy.language import Language  # noqa: E402
from spacy.lookups import Lookups, load_language_data  # noqa: E402
from spacy.matcher import Matcher  # noqa: E402
from spacy.util import registry  # noqa: E402

from bot.crisis.normalise import tables  # noqa: E402

DATA = Path(__file__).with_name("data")
LANGUAGES = ("en", "es")
GAP = [{"IS_PUNCT": False, "OP": "?"}] * 3


@dataclass(frozen=True)
class PatternInfo:
    id: str
    kind: str  # "risk", "signal" or "neutraliser"
    level: str = "none"
    category: str = ""
    subject: str | None = None
    danger_from_others: bool = False


@dataclass
class Compiled:
    language: str
    version: str
    nlp: Language
    matcher: Matcher
    info: dict[str, PatternInfo] = field(default_factory=dict)
    lemmas: set[str] = field(default_factory=set)  # every lemma a pattern asks for


@Language.component("crisis_lemma_fixes")
def _lemma_fixes(doc):
    fixes = tables()["lemma_fixes"]
    for token in doc:
        lemma = token.lemma_.lower() or token.lower_
        token.lemma_ = fixes.get(token.lower_, lemma)
    return doc


def _pipeline(language: str, lemma_table: dict[str, str] | None = None) -> Language:
    """A blank pipeline with the lookup lemmatizer: spacy-lookups-data's
    table for the language, or ``lemma_table`` (word -> lemma) in its place."""
    nlp = spacy.blank(language)
    nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    nlp.add_pipe("crisis_lemma_fixes")
    if lemma_table is None:
        nlp.initialize()
    else:
        nlp.get_pipe("lemmatizer").initialize(lookups=_lookups(lemma_table))
    return nlp


def _lookups(lemma_table: dict[str, str]) -> Lookups:
    lookups = Lookups()
    lookups.add_table("lemma_lookup", lemma_table)
    return lookups


def lemma_table(language: str) -> dict[str, str]:
    """spacy-lookups-data's whole lemma table for the language (word -> lemma)."""
    return load_language_data(registry.lookups.get(language)["lemma_lookup"])


def needed_lemmas(table: dict[str, str], lemmas: set[str]) -> dict[str, str]:
    """The entries of ``table`` that can change whether a word's lemma is one of
    ``lemmas`` (all lower case): those whose word or lemma is one, lower-cased.

    A word without an entry is its own lemma (the lemmatizer's fallback), and
    crisis_lemma_fixes lower-cases every lemma. So for a word whose entry is
    left out, the lemma was one not in ``lemmas`` and is now the word itself,
    also not in ``lemmas``: every test of a lemma against them, which is all
    the detector does with lemmas (the patterns' LEMMA IN and the negation
    cues), gives the same answer. The Spanish table has 491,547 entries,
    about 150 MB in each process that detects crises."""
    kept = ((word, lemma) for word, lemma in table.items() if {word.lower(), lemma.lower()} & lemmas)
    # Copies, so that none of the whole table's strings outlive it: memory
    # freed in whole blocks can go back to the system (heap.settle).
    return {word.encode().decode(): lemma.encode().decode() for word, lemma in kept}


def _lemma(nlp: Language, word: str) -> str:
    doc = nlp(word)
    return doc[0].lemma_ if len(doc) == 1 else word


def _token_specs(nlp: Language, phrase: str, sets: dict[str, list[str]], lemmas: set[str]) -> list[dict]:
    specs: list[dict] = []
    for part in phrase.split():
        if part == "~":
            specs.extend(GAP)
            continue
        optional = part.startswith("?")
        part = part.lstrip("?")
        if part.startswith("="):
            spec: dict = {"LOWER": {"IN": part[1:].split("|")}}
        else:
            words: list[str] = []
            for alt in part.split("|"):
                if alt.startswith("<") and alt.endswith(">"):
                    words.extend(str(w) for w in sets[alt[1:-1]])
                else:
                    words.append(alt)
            # A written word may be split by the tokenizer ("'ll"); match its lemma
            # and, for safety, its own lower-case form.
            values = sorted({_lemma(nlp, w.lower()) for w in words} | {w.lower() for w in words})
            lemmas.update(values)
            spec = {"LEMMA": {"IN": values}}
        if optional:
            spec = {**spec, "OP": "?"}
        specs.append(spec)
    return specs


@functools.lru_cache(maxsize=len(LANGUAGES))
def compiled(language: str) -> Compiled:
    """The language's patterns, built once per process."""
    return build(language)


def build(language: str, whole_table: bool = False) -> Compiled:
    """The patterns compiled, with a pipeline that keeps only the lemma entries
    they need (or, ``whole_table``, all of them: tests compare the two)."""
    raw = yaml.safe_load((DATA / f"patterns_{language}.yml").read_text(encoding="utf-8"))
    table = lemma_table(language)
    nlp = _pipeline(language, table)
    matcher = Matcher(nlp.vocab)
    result = Compiled(language, str(raw["version"]), nlp, matcher)
    sets = raw.get("sets", {})
    for group in raw.get("risk", []):
        info = PatternInfo(
            id=group["id"],
            kind="risk",
            level=group["level"],
            category=group["category"],
            subject=group.get("subject"),
            danger_from_others=bool(group.get("danger_from_others")),
        )
        _add(result, info, group["phrases"], sets)
    for group in raw.get("signals", []):
        info = PatternInfo(id=f"signal:{group['id']}", kind="signal", category=group["category"])
        _add(result, info, group["phrases"], sets)
    for number, phrase in enumerate(raw.get("neutralisers", [])):
        _add(result, PatternInfo(id=f"neutraliser:{number}", kind="neutraliser"), [phrase], sets)
    # The patterns were lemmatised with the whole table; messages need only the
    # entries that can matter (needed_lemmas). The negation cues are tested by
    # lemma too (detector.py), and that module imports this one.
    from bot.crisis.detector import NEGATION_CUES

    if whole_table:
        return result
    kept = needed_lemmas(table, result.lemmas | {cue.lower() for cue in NEGATION_CUES})
    table.clear()
    result.nlp.get_pipe("lemmatizer").initialize(lookups=_lookups(kept))
    return result


def _add(result: Compiled, info: PatternInfo, phrases: list[str], sets: dict) -> None:
    patterns = [_token_specs(result.nlp, phrase, sets, result.lemmas) for phrase in phrases]
    result.info[info.id] = info
    result.matcher.add(info.id, patterns)


def versions() -> dict[str, str]:
    return {language: compiled(language).version for language in LANGUAGES}
