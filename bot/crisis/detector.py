"""Crisis detection: patterns, context rules written for chat, co-occurrence,
and the semantic layer (a sentence encoder and a trained head, semantic.py).
A layer can only raise the level.

Levels: none < ask < crisis < imminent.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from spacy.tokens import Doc

from bot.crisis import language as languages
from bot.crisis import semantic
from bot.crisis.normalise import normalise
from bot.crisis.patterns import LANGUAGES, Compiled, PatternInfo, compiled
from bot.crisis.types import RANK, Assessment, Evidence, raise_level

HISTORY_TURNS = 3

NEGATION_CUES = {
    "not",
    "never",
    "no",
    "nobody",
    "nothing",
    "without",
    "nor",
    "neither",
    "n't",
    "nunca",
    "jamás",
}
NEGATION_WINDOW = 3
# A denial often puts a few words of having thoughts between its cue and the
# phrase ("I don't have any thoughts of hurting myself", "I'm not having any
# urges to cut"): past the window, but made only of these words. The cue must
# come right before them: "I do not want to have thoughts of ..." (the person
# has them) stops at "want" and is not negated. No "the" or "is": "No the
# plan is to kill myself", an answer with its comma left out, is not a denial.
DENIAL_BRIDGE = {
    "do", "does", "did", "'ve", "been",
    "have", "has", "had", "having", "got", "get", "getting",
    "any", "ever", "currently", "current", "recent", "active", "such",
    "thoughts", "thought", "ideas", "idea", "ideation", "urges", "urge", "intent", "intention",
    "intentions", "plans", "plan", "feelings", "of", "about", "to",
}  # fmt: skip
DENIAL_BRIDGE_MAX = 6
CLAUSE_BREAKS = {
    ",",
    ";",
    ":",
    ".",
    "!",
    "?",
    "but",
    "however",
    "although",
    "though",
    "-",
    "—",
    "pero",
    "aunque",
}
SENTENCE_BREAKS = {".", "!", "?", ";", "\n"}
FIRST_PERSON = {"i", "me", "my", "myself", "yo", "mí"}
SPANISH_HINTS = {
    "que",
    "quiero",
    "estoy",
    "mi",
    "de",
    "la",
    "el",
    "y",
    "en",
    "me",
    "no",
    "es",
    "por",
    "una",
    "un",
    "con",
    "para",
    "se",
    "lo",
    "muy",
    "pero",
    "tengo",
    "soy",
}


@dataclass
class _Match:
    info: PatternInfo
    start: int
    end: int
    doc: Doc
    level: str = "none"
    subject: str = "self"
    negated: bool = False

    @property
    def text(self) -> str:
        return self.doc[self.start : self.end].text


@dataclass
class _Analysis:
    """One message, one language: risk matches after context rules, and signals."""

    language: str
    risks: list[_Match] = field(default_factory=list)
    signals: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    neutralised: bool = False  # an idiom or safe context ("killing me", "to die for") is in it

    @property
    def counted(self) -> list[_Match]:
        return [m for m in self.risks if not m.negated and m.level != "none"]


def _clause_bounds(doc: Doc, index: int, breaks: set[str]) -> tuple[int, int]:
    start = index
    while start > 0 and doc[start - 1].lower_ not in breaks:
        start -= 1
    end = index
    while end < len(doc) and doc[end].lower_ not in breaks:
        end += 1
    return start, end


def _analyse_language(text: str, compiled_language: Compiled) -> _Analysis:
    doc = compiled_language.nlp(text)
    analysis = _Analysis(compiled_language.language)
    neutral: list[tuple[int, int]] = []
    raw: list[_Match] = []
    for match_id, start, end in compiled_language.matcher(doc):
        info = compiled_language.info[compiled_language.nlp.vocab.strings[match_id]]
        if info.kind == "neutraliser":
            neutral.append((start, end))
        elif info.kind == "signal":
            analysis.signals.setdefault(info.category, []).append((start, end))
        else:
            raw.append(_Match(info, start, end, doc, level=info.level))
    # Keep the longest match per pattern group and start.
    best: dict[tuple[str, int], _Match] = {}
    for m in raw:
        key = (m.info.id, m.start)
        if key not in best or m.end > best[key].end:
            best[key] = m
    matches = [m for m in best.values() if not any(ns <= m.start and m.end <= ne for ns, ne in neutral)]
    analysis.neutralised = bool(neutral)
    risk_tokens = {i for m in matches for i in range(m.start, m.end)}
    for m in matches:
        _apply_context(m, matches, analysis, risk_tokens)
    analysis.risks = matches
    return analysis


def _apply_context(m: _Match, matches: list[_Match], analysis: _Analysis, risk_tokens: set[int]) -> None:
    doc = m.doc
    clause_start, _ = _clause_bounds(doc, m.start, CLAUSE_BREAKS)
    sentence_start, sentence_end = _clause_bounds(doc, m.start, SENTENCE_BREAKS)
    in_sentence = lambda spans: any(sentence_start <= s < sentence_end for s, _ in spans)  # noqa: E731

    # Negation: a cue close before the phrase, in the same clause, that is not
    # itself part of a risk phrase ("I'm not fine, I want to ..." is not negated;
    # "don't want to live" matches as a whole first).
    for i in range(max(clause_start, m.start - NEGATION_WINDOW), m.start):
        if doc[i].lower_ in NEGATION_CUES or doc[i].lemma_ in NEGATION_CUES:
            # "if nothing changes I ..." - a new first-person subject starts a new clause.
            restarted = any(doc[j].lower_ in FIRST_PERSON for j in range(i + 1, m.start))
            if i not in risk_tokens and not restarted:
                m.negated = True
                break
    if not m.negated:
        i = m.start - 1
        while i >= clause_start and m.start - i <= DENIAL_BRIDGE_MAX and doc[i].lower_ in DENIAL_BRIDGE:
            i -= 1
        cue = i >= clause_start and (doc[i].lower_ in NEGATION_CUES or doc[i].lemma_ in NEGATION_CUES)
        if cue and m.start - i > NEGATION_WINDOW and i not in risk_tokens:
            m.negated = True

    # A past attempt is "ask", unless something says it is happening now.
    now = in_sentence(analysis.signals.get("time_now", []))
    if m.info.category == "attempt_in_progress" and in_sentence(analysis.signals.get("past", [])) and not now:
        m.level = "ask"
    if (
        m.info.category != "past_attempt"
        and any(o.info.category == "past_attempt" and o.start <= m.start and m.end <= o.end for o in matches)
        and not now
    ):
        m.level = "ask"

    # A plan, means or stated intent with a time that is now or tonight is imminent.
    if m.info.category in ("plan_or_means", "suicidal_ideation") and analysis.signals.get("time_now"):
        if not in_sentence(analysis.signals.get("past", [])):
            m.level = raise_level(m.level, "imminent")

    # "If I fail this exam I'm done with life", "... I'll kill myself lol":
    # conditional or joking framing makes it a question to ask, never nothing.
    conditional = any(sentence_start <= s < m.start for s, _ in analysis.signals.get("conditional", []))
    joking = analysis.signals.get("hyperbole") and not analysis.signals.get("serious")
    if m.level == "crisis" and (conditional or joking):
        m.level = "ask"

    # Subject: someone else at risk, unless the danger comes from someone else.
    if m.info.subject:
        m.subject = m.info.subject
    elif m.info.danger_from_others or any(t.lower_ in FIRST_PERSON for t in doc[m.start : m.end]):
        m.subject = "self"
    else:
        m.subject = _subject_before(doc, m.start, sentence_start, analysis)


def _subject_before(doc: Doc, start: int, sentence_start: int, analysis: _Analysis) -> str:
    # "my dad" is third person even though it starts with "my".
    third = {i for s, e in analysis.signals.get("third_person", []) for i in range(s, e)}
    for i in range(start - 1, sentence_start - 1, -1):
        if i in third:
            return "other"
        if doc[i].lower_ in FIRST_PERSON:
            return "self"
    return "self"


@functools.lru_cache(maxsize=4096)
def _analyse(text: str) -> tuple[_Analysis, ...]:
    normalised = normalise(text)
    return tuple(_analyse_language(normalised, compiled(language)) for language in LANGUAGES)


def _language(text: str, analyses: Sequence[_Analysis]) -> str:
    by_language = {a.language: a for a in analyses}
    spanish = by_language.get("es")
    if spanish and spanish.counted and not by_language["en"].counted:
        return "es"
    words = [w for w in normalise(text).split() if w.isalpha()]
    hints = sum(w in SPANISH_HINTS for w in words)
    if words and hints / len(words) >= 0.3 and hints >= 2:
        return "es"
    return languages.detect(text)


def _has(analyses: Sequence[_Analysis], category: str) -> bool:
    return any(a.signals.get(category) for a in analyses)


UNGATED_SIGNALS = {"medication_change"}
# Pattern categories that are also semantic signals (for triage's `detects:`).
PATTERN_SIGNALS = {
    "plan_or_means": "plan_or_preparation",
    "abuse_or_danger_from_others": "danger_from_others",
    "child_at_risk": "child_at_risk",
    "psychosis_with_risk": "psychosis_with_risk",
}


def _semantic(text: str, upstream: Mapping | None) -> semantic.Score | None:
    if upstream is not None:
        if upstream.get("level") not in RANK:
            return None
        return semantic.Score(
            level=upstream["level"],
            subject=upstream.get("subject") if upstream.get("subject") in ("self", "other") else "self",
            categories=tuple(c for c in upstream.get("signals") or () if c in semantic.SIGNAL_CATEGORIES),
            decisions={},
        )
    if not text.strip():
        return None
    return semantic.scorer().score(text)


def _context_level(
    analyses: Sequence[_Analysis], counted: list[_Match], negated: list[_Match], level: str
) -> str:
    """The semantic layer's level after the context rules:
    - a joke marker ("lol", no "I'm serious") caps it at ask, as it does a
      pattern's crisis: the person is asked, never signposted, never unasked;
    - where no risk phrase is left standing, an idiom or safe context ("the
      waiting list is killing me") explains it away (none), unless the layer
      finds danger now, which is still asked about; a denial ("I'm not
      suicidal, ...") caps it at ask.
    Otherwise the semantic level stands."""
    if level == "none":
        return level
    if _has(analyses, "hyperbole") and not _has(analyses, "serious"):
        return "ask"
    if counted:
        return level
    if any(a.neutralised for a in analyses):
        return "ask" if level == "imminent" else "none"
    if negated:
        return "ask"
    return level


def assess_message(text: str, history: Sequence[str] = (), upstream: Mapping | None = None) -> Assessment:
    """The detector without its fail-safe wrapper (see bot.crisis.assess)."""
    analyses = _analyse(text)
    counted = [m for a in analyses for m in a.counted]
    negated = [m for a in analyses for m in a.risks if m.negated]
    level = "none"
    for m in counted:
        level = raise_level(level, m.level)
    categories: list[str] = []
    for m in sorted(counted, key=lambda m: -RANK[m.level]):
        if m.info.category not in categories:
            categories.append(m.info.category)

    # Co-occurrence: distress, then a question about heights, doses or means,
    # in this message or the last few turns.
    if _has(analyses, "means_question"):
        recent = [_analyse(h) for h in list(history)[-HISTORY_TURNS:]]
        distressed = _has(analyses, "distress") or any(
            _has(past, "distress") or any(a.counted for a in past) for past in recent
        )
        if distressed:
            level = raise_level(level, "crisis")
            categories.append("means_seeking_after_distress")

    # Semantic layer: may raise the level, never lower it. Given `upstream`
    # (this same message already assessed in full, by the NLU component), its
    # result stands in for the encoder, so a process that has it need not load one.
    score = _semantic(text, upstream)
    semantic_subject = None
    signals = [PATTERN_SIGNALS[c] for c in categories if c in PATTERN_SIGNALS]
    if score is not None:
        candidate = _context_level(analyses, counted, negated, score.level)
        if RANK[candidate] > RANK[level]:
            level = candidate
            semantic_subject = score.subject
            categories.append("semantic")
        signals.extend(score.categories)
        if RANK[level] >= RANK["ask"]:
            categories.extend(c for c in score.categories if c not in categories)
    # Danger-now evidence from any layer: a crisis with "now", "tonight", "right now".
    if level == "crisis" and _has(analyses, "time_now") and not _has(analyses, "past"):
        level = "imminent"
        categories.append("time_now")

    subject = "unknown"
    if level != "none":
        top = [m for m in counted if m.level == level]
        if semantic_subject is not None and not top:
            subjects = {semantic_subject}
        else:
            subjects = {m.subject for m in top or counted}
        subject = "self" if "self" in subjects else (subjects.pop() if subjects else "self")
    elif negated:
        categories.append("denial")
    evidence = tuple(
        Evidence(m.text, m.info.id, m.info.category, m.level, m.negated) for m in counted + negated
    )
    # A red flag is a risk: a signal counts only where the message is one
    # (a change of medicine is a flag by itself).
    signals = [s for s in signals if s in UNGATED_SIGNALS or RANK[level] >= RANK["ask"]]
    return Assessment(
        level,
        subject,
        tuple(categories),
        evidence,
        _language(text, analyses),
        signals=tuple(dict.fromkeys(signals)),
    )
