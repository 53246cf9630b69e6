"""Plain language: every English response reads at US grade 6 or below (Flesch-Kincaid),
and every easy-read wording and every explanation ("what does that mean") at grade 4.

Spanish variations are not scored (the formula is for English). Slot values in
{braces} are scored as a one-syllable word. A validated questionnaire item
used verbatim may be marked `metadata: {verbatim: true}` and is exempt.
"""

import re

import pytest
import textstat

MAX_GRADE = 6.0
MAX_EASY_READ_GRADE = 4.0


def english_variants(domain):
    for name, variants in domain["responses"].items():
        for variant in variants:
            conditions = variant.get("condition", [])
            if any(c["name"] == "language" and c["value"] != "en" for c in conditions):
                continue
            if (variant.get("metadata") or {}).get("verbatim"):
                continue
            yield name, conditions, re.sub(r"\{[a-z_]+\}", "it", variant["text"])


@pytest.mark.scoring
def test_every_response_reads_at_grade_6_or_below(domain):
    scored = sorted(
        ((textstat.flesch_kincaid_grade(text), name, text) for name, _, text in english_variants(domain)),
        reverse=True,
    )
    print(f"\nReading age: {len(scored)} English responses; the hardest:")
    for grade, name, text in scored[:8]:
        print(f"  grade {grade:4.1f}  {name}: {text[:70]!r}")
    assert [(g, n) for g, n, _ in scored if g > MAX_GRADE] == []


def easy_read_variants(domain):
    for name, conditions, text in english_variants(domain):
        if any(c["name"] == "wording" and c["value"] == "easy" for c in conditions):
            yield name, text
        elif name.startswith("utter_explain_"):
            yield name, text


@pytest.mark.scoring
def test_easy_read_wording_and_explanations_read_at_grade_4_or_below(domain):
    scored = sorted(
        ((textstat.flesch_kincaid_grade(text), name, text) for name, text in easy_read_variants(domain)),
        reverse=True,
    )
    assert len(scored) > 100  # every question has one, and every question an explanation
    print(f"\nEasy read: {len(scored)} wordings and explanations; the hardest:")
    for grade, name, text in scored[:5]:
        print(f"  grade {grade:4.1f}  {name}: {text[:70]!r}")
    assert [(g, n) for g, n, _ in scored if g > MAX_EASY_READ_GRADE] == []


MIN_SPANISH_EASE = 70.0  # Fernández-Huerta: 70 or more reads as fairly easy


@pytest.mark.scoring
def test_every_spanish_response_reaches_a_fernandez_huerta_ease_of_70(domain):
    spanish = [
        (name, re.sub(r"\{[a-z_]+\}", "eso", variant["text"]))
        for name, variants in domain["responses"].items()
        for variant in variants
        if any(c["name"] == "language" and c["value"] == "es" for c in variant.get("condition", []))
    ]
    assert len(spanish) >= 10
    textstat.set_lang("es")
    try:
        scored = sorted((textstat.fernandez_huerta(text), name, text) for name, text in spanish)
    finally:
        textstat.set_lang("en_US")
    print(f"\nSpanish ease (Fernández-Huerta): {len(scored)} responses; the hardest:")
    for ease, name, text in scored[:5]:
        print(f"  ease {ease:5.1f}  {name}: {text[:70]!r}")
    assert [(e, n) for e, n, _ in scored if e < MIN_SPANISH_EASE] == []
