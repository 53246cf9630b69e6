"""Plain language: every English response reads at US grade 6 or below (Flesch-Kincaid).

Spanish variations are not scored (the formula is for English). Slot values in
{braces} are scored as a one-syllable word. A validated questionnaire item
used verbatim may be marked `metadata: {verbatim: true}` and is exempt.
"""

import re

import pytest
import textstat

MAX_GRADE = 6.0


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
