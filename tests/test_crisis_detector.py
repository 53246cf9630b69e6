"""The crisis detector, scored on the shared development set and on our own cases.

The scoring tests print a table per category (run pytest with -s, or see the
`make test` output) and assert the acceptance thresholds.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

from bot.crisis import RANK, assess
from bot.crisis import detector as detector_module

ROOT = Path(__file__).resolve().parent.parent
# The shared development set lives beside the project (../shared), as in CI.
DEV_SET = Path(os.environ.get("CRISIS_DEV_SET", ROOT.parent / "shared" / "eval" / "crisis_dev.jsonl"))
OWN_CASES = Path(__file__).parent / "data" / "crisis_cases.jsonl"


def load(path: Path) -> list[dict]:
    if not path.exists():
        pytest.fail(f"{path} is missing: dev set belongs at ../shared/eval (or set CRISIS_DEV_SET)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def meets(expect: str, got: str) -> bool:
    if expect == "imminent":
        return got == "imminent"
    if expect == "crisis":
        return RANK[got] >= RANK["crisis"]
    if expect == "ask":
        return RANK[got] >= RANK["ask"]
    return RANK[got] < RANK["crisis"]


def score(rows: list[dict], title: str) -> tuple[list[dict], int, int]:
    by_category: dict[str, list[bool]] = defaultdict(list)
    failures, none_total, none_crisis = [], 0, 0
    for row in rows:
        result = assess(row["text"], row.get("history", []))
        ok = meets(row["expect"], result.level)
        by_category[f"{row['expect']:8} {row['category']}"].append(ok)
        if row["expect"] == "none":
            none_total += 1
            none_crisis += RANK[result.level] >= RANK["crisis"]
        if not ok:
            failures.append({"text": row["text"], "expect": row["expect"], "got": result.level})
    print(f"\n{title}: {sum(map(len, by_category.values())) - len(failures)}/{len(rows)} meet their target")
    for category, oks in sorted(by_category.items()):
        print(f"  {sum(oks):3}/{len(oks):<3} {category}")
    print(f"  'none' items reaching crisis: {none_crisis}/{none_total}")
    return failures, none_total, none_crisis


@pytest.mark.scoring
@pytest.mark.parametrize("path", [DEV_SET, OWN_CASES], ids=["shared dev set", "own cases"])
def test_detector_meets_the_acceptance_thresholds(path):
    failures, none_total, none_crisis = score(load(path), path.name)
    assert not [f for f in failures if f["expect"] != "none"], failures
    assert none_crisis <= 0.10 * none_total


EXTERNAL = DEV_SET.parent / "external" / "dev_all.jsonl"
# Batches written (by a helper that saw none of the detector, its data or the
# evaluation sets) before the changes they measure, and never edited after:
# crisis_fresh.jsonl before the semantic layer was tuned; crisis_fresh2.jsonl
# before the pattern families of 2026-12-06 (which its misses then shaped, so
# its later figures flatter); crisis_fresh3.jsonl after that, before anything
# was tuned on it; crisis_fresh4.jsonl and crisis_fresh5.jsonl (half of it long
# forum-style posts) each before that day's changes.
FRESH_BATCHES = [Path(__file__).parent / "data" / f"crisis_fresh{n}.jsonl" for n in ("", "2", "3", "4", "5")]
# Regression floors: the figures measured when the semantic layer landed
# (README "Crisis detection"), less a little. They are not issue 15's targets,
# which the table prints beside each figure; a change that lowers a figure
# below its floor fails here.
FLOORS = {
    # each source left out of training: measured 84.6, 97.7, 73.3, 75.9, 9.7, 20.0 (%) after the
    # pattern fixes of 2026-12-08 (found by reading its false alarms); 84.6, 97.7, 73.3, 76.9,
    # 11.5, 21.8 once the crisis threshold's limit counted only ordinary answers that clear ask
    # too (2026-12-08); 81.5, 97.7, 73.3, 76.9, 10.9, 21.8 before
    # with the pattern families and corpus additions of 2026-12-06 (83.1, 97.7, 66.7, 75.9,
    # 9.7, 20.6 with the first 900 of the 2,041 lines added that day); 76.2, 93.8, 46.7,
    # 73.1, 10.9, 20.6 before them; 69.2, 93.1, 26.7, 72.2, 10.3, 21.8 before the heads
    # trained on real text
    "dev_all.jsonl": {
        "crisis_at_crisis": 0.79,
        "crisis_at_ask": 0.96,
        "imminent_at_imminent": 0.65,
        "ask_at_ask": 0.73,
        "none_at_crisis": 0.12,
        "none_at_ask": 0.24,
    },
    # scored once, before anything was tuned on it: 94.9, 97.0, 93.9, 95.5, 9.1, 16.9 (%);
    # with the final corpus 92.9, 99.0, 90.9, 95.5, 7.8, 13.0; trained on real text too,
    # 93.9, 99.0, 93.9, 93.2, 9.1, 11.7; with the corpus additions of 2026-12-06 91.9, 98.0,
    # 90.9, 93.2, 7.8, 11.7
    "crisis_fresh.jsonl": {
        "crisis_at_crisis": 0.90,
        "crisis_at_ask": 0.95,
        "imminent_at_imminent": 0.87,
        "ask_at_ask": 0.92,
        "none_at_crisis": 0.12,
        "none_at_ask": 0.20,
    },
    # scored once before the pattern families of 2026-12-06: 87.1, 91.8, 93.3, 97.8, 8.6, 17.1 (%);
    # after them (its misses shaped the second round) 94.1, 97.6, 100, 100, 8.6, 17.1; with the
    # corpus additions too, 94.1, 98.8, 100, 97.8, 7.1, 14.3
    "crisis_fresh2.jsonl": {
        "crisis_at_crisis": 0.91,
        "crisis_at_ask": 0.95,
        "imminent_at_imminent": 0.95,
        "ask_at_ask": 0.95,
        "none_at_crisis": 0.11,
        "none_at_ask": 0.20,
    },
    # tuned on by nothing. With the patterns before 2026-12-06: 85.9, 92.9, 83.3, 95.6, 14.3, 22.9 (%);
    # with the new pattern families 87.1, 94.1, 83.3, 95.6, 14.3, 22.9; with the corpus additions
    # too (written blind to it), 89.4, 95.3, 86.7, 97.8, 14.3, 20.0
    "crisis_fresh3.jsonl": {
        "crisis_at_crisis": 0.84,
        "crisis_at_ask": 0.91,
        "imminent_at_imminent": 0.80,
        "ask_at_ask": 0.93,
        "none_at_crisis": 0.16,
        "none_at_ask": 0.25,
    },
    # written blind on 2026-12-07 (200 lines; the 18 within difflib 0.85 of a line already in the
    # corpus, the tests or the shared sets were dropped before scoring) and scored once, before any
    # change: 94.0, 98.8, 100, 85.4, 8.6, 8.6 (%). Its 16 misses are in that day's closing note.
    "crisis_fresh4.jsonl": {
        "crisis_at_crisis": 0.92,
        "crisis_at_ask": 0.96,
        "imminent_at_imminent": 0.95,
        "ask_at_ask": 0.82,
        "none_at_crisis": 0.11,
        "none_at_ask": 0.11,
    },
    # written blind on 2026-12-08 (200 lines, half of them long forum-style posts; the 14 within
    # difflib 0.85 of an existing line dropped before scoring) and scored once, before any change:
    # 93.3, 96.6, 97.1, 87.8, 14.3, 25.0 (%); with that day's crisis-limit change 94.4, 96.6, 97.1,
    # 87.8, 14.3, 25.0. Its misses were not read before that change.
    "crisis_fresh5.jsonl": {
        "crisis_at_crisis": 0.92,
        "crisis_at_ask": 0.94,
        "imminent_at_imminent": 0.94,
        "ask_at_ask": 0.85,
        "none_at_crisis": 0.16,
        "none_at_ask": 0.27,
    },
}


def _source(row: dict) -> str:
    source = row.get("source") or "?"
    return (source if isinstance(source, str) else str(source)).split(",")[0][:40]


def _print_and_check(title: str, rows: list[dict], got: list[str], floors: dict) -> None:
    from crisis_figures import FIGURES, by_group, figures, share, table

    expected = [row["expect"] for row in rows]
    print("\n" + table(title, expected, got))
    print("  per source:\n" + by_group(rows, got, _source))
    print("  per category:\n" + by_group(rows, got, lambda r: f"{r['expect']:8} {r.get('category', '?')}"))
    measured = figures(expected, got)
    for name, floor in floors.items():
        kind = FIGURES[name][4]
        value = share(measured[name])
        assert value >= floor if kind == "min" else value <= floor, (name, value, floor)


def _held_out_levels(monkeypatch, source: str, rows: list[dict]) -> list[str]:
    """Each row's level from the whole detector, its semantic layer trained
    without `source` (bot/crisis/data/real/<source>.jsonl): the heads the
    service uses have seen these rows, so their figures here would flatter."""
    from bot.crisis import semantic

    trained_on = {e.text.strip().lower() for e in semantic.load_corpus() + semantic.load_real(without=source)}
    seen = [row["text"][:60] for row in rows if row["text"].strip().lower() in trained_on]
    assert not seen, f"{source}: the heads that score these rows trained on {seen}"
    path, _ = semantic.ensure_heads(without=source)
    held_out = semantic.Scorer(semantic.scorer().encoder, semantic.Heads.load(path))
    with monkeypatch.context() as patch:
        patch.setattr(semantic, "scorer", lambda: held_out)
        return [assess(row["text"], row.get("history", [])).level for row in rows]


@pytest.mark.scoring
def test_detector_figures_on_real_text_each_source_left_out_of_training(monkeypatch):
    """../shared/eval/external/dev_all.jsonl, each of its four source files
    scored with heads trained without it (its README allows training on them
    so long as the figures are on sources not trained on)."""
    from bot.crisis import semantic

    rows: list[dict] = []
    got: list[str] = []
    for source in semantic.real_sources():
        part = load(EXTERNAL.parent / f"{source}.jsonl")
        rows += part
        got += _held_out_levels(monkeypatch, source, part)
    whole = load(EXTERNAL)
    assert sorted(r["text"] for r in rows) == sorted(r["text"] for r in whole), "the sources are not dev_all"
    _print_and_check("dev_all.jsonl, each source left out of training", rows, got, FLOORS["dev_all.jsonl"])


@pytest.mark.scoring
@pytest.mark.parametrize("path", FRESH_BATCHES, ids=[p.name for p in FRESH_BATCHES])
def test_detector_figures_on_the_fresh_batches(path):
    rows = load(path)
    got = [assess(row["text"], row.get("history", [])).level for row in rows]
    _print_and_check(path.name, rows, got, FLOORS[path.name])


@pytest.mark.parametrize("path", [DEV_SET, OWN_CASES], ids=["shared dev set", "own cases"])
def test_subject_is_who_is_at_risk(path):
    wrong = [
        (row["text"], row["subject"], result.subject)
        for row in load(path)
        if row["expect"] != "none"
        and (result := assess(row["text"], row.get("history", []))).subject != row["subject"]
    ]
    assert not wrong


def test_a_layer_never_lowers_an_earlier_one():
    # A denial lowers only its own message; a crisis phrase in the same
    # message is never cleared by it.
    assert assess("I'm not suicidal").level == "none"
    assert assess("I'm not suicidal, but I do want to kill myself").level == "crisis"


def test_the_bridges_pattern_needs_the_distress_before_it():
    question = "Which bridges are taller than 25 m?"
    assert assess(question).level == "none"
    assert assess(question, ["I lost my job. I can't see the point."]).level == "crisis"
    assert assess(question, ["I lost my job", "ok", "thanks", "sure"]).level == "none"  # beyond the window


def test_evidence_names_the_matched_span_and_pattern():
    result = assess("honestly i want to k1ll myself")
    assert result.evidence[0].text == "kill myself"
    assert result.evidence[0].pattern == "kill_self"
    assert "suicidal_ideation" in result.categories


def test_spanish_crisis_is_marked_spanish():
    assert assess("quiero morirme").language == "es"
    assert assess("I want to die").language == "en"


def test_any_internal_error_fails_safe_to_ask(monkeypatch, caplog):
    def broken(text, history, upstream=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(detector_module, "assess_message", broken)
    result = assess("a secret sentence about my day")
    assert (result.level, result.categories) == ("ask", ("detector_error",))
    assert "RuntimeError" in caplog.text
    assert "secret sentence" not in caplog.text


def test_an_encoder_error_at_run_time_fails_safe_to_ask(monkeypatch, caplog):
    from bot.crisis import semantic

    def broken(self, text):
        raise FloatingPointError("encoder")

    monkeypatch.setattr(semantic.Scorer, "score", broken)
    result = assess("a private line about my weekend")
    assert result.level == "ask"
    assert "FloatingPointError" in caplog.text and "private line" not in caplog.text


@pytest.mark.parametrize(
    "text", ["", " ", "😀" * 500, "a" * 5000, "\x00\x01", "<script>x</script>", "k i l l"]
)
def test_odd_input_never_raises(text):
    assert assess(text).level in RANK


def test_the_semantic_layer_raises_what_no_pattern_names():
    # Written for this test: no pattern matches these words, the encoder does.
    assert assess("i've swallowed every one of the tablets in the drawer").level == "imminent"
    assert RANK[assess("honestly everyone would be happier if i just wasnt around anymore").level] >= RANK[
        "ask"
    ]
    assert assess("allergic to penicillin").level == "none"


def test_the_semantic_layer_never_clears_a_pattern_hit(monkeypatch):
    from bot.crisis import semantic

    quiet = semantic.Score(level="none", subject="self", categories=(), decisions={})
    monkeypatch.setattr(semantic.Scorer, "score", lambda self, text: quiet)
    assert assess("I want to kill myself").level == "crisis"


@pytest.mark.parametrize(
    ("text", "semantic", "expected"),
    [
        ("this commute is killing me", "crisis", "none"),  # an idiom explains it away
        ("this commute is killing me", "imminent", "ask"),  # ... but danger now is still asked
        ("i'm not suicidal, i just can't sleep", "crisis", "ask"),  # a denial: asked, not signposted
        ("i want to disappear lol", "crisis", "ask"),  # a joke marker likewise
        ("i want to end it all", "imminent", "imminent"),  # a risk phrase left standing
        ("i found the exam really hard", "crisis", "crisis"),  # no context rule: the layer stands
    ],
)
def test_context_rules_apply_to_the_semantic_layer(text, semantic, expected):
    assert assess(text, upstream={"level": semantic, "subject": "self"}).level == expected


def test_the_action_server_takes_the_semantic_result_from_the_nlu_component():
    upstream = {"level": "crisis", "subject": "other", "signals": ["plan_or_preparation"]}
    result = assess("he has been giving his things away", upstream=upstream)
    assert (result.level, result.subject) == ("crisis", "other")
    assert "plan_or_preparation" in result.signals
    assert assess("hello", upstream={}).level == "none"  # patterns only, no encoder


def test_pattern_files_compile_and_every_phrase_can_match_its_own_words():
    """Each phrase, written out with its first and with its last alternatives,
    must match: catches unknown set names, words the lemmatiser changes
    (dying -> dye) and misspelt alternatives. It cannot tell `a|b c` from a
    meant `a|b` + `c`; reviewers must."""
    import re

    import yaml

    from bot.crisis.patterns import DATA, compiled

    for language in ("en", "es"):
        raw = yaml.safe_load((DATA / f"patterns_{language}.yml").read_text())
        sets = raw.get("sets", {})
        patterns = compiled(language)
        for group in raw["risk"] + raw.get("signals", []):
            for phrase in group["phrases"]:
                for pick in (0, -1):
                    words = []
                    for part in phrase.split():
                        if part == "~":
                            continue
                        alt = part.lstrip("?=").split("|")[pick]
                        words.append(str(sets[alt[1:-1]][pick]) if re.fullmatch(r"<\w+>", alt) else alt)
                    doc = patterns.nlp(" ".join(words))
                    assert patterns.matcher(doc), f"{language}: {phrase!r} does not match {' '.join(words)!r}"


def test_warm_up_builds_every_part():
    from bot.crisis import semantic, warm_up
    from bot.crisis.patterns import compiled

    semantic.scorer.cache_clear()
    compiled.cache_clear()
    warm_up()
    assert semantic.scorer.cache_info().currsize == 1
    assert compiled.cache_info().currsize == 2


def test_no_ordinary_persona_answer_gets_the_safety_question():
    """The end-to-end personas' answers, assessed alone, are no risk: a change to
    the corpus or patterns that turned "He has stopped going to school and stays
    in his room" into `ask` stopped a supported referral with the safety question
    (CI's test_a_parent_referring_a_teenager caught it; this says so in seconds)."""
    import yaml

    personas = yaml.safe_load((Path(__file__).parent / "data" / "personas.yml").read_text(encoding="utf-8"))
    flagged = [
        (name, field, answer, level)
        for name, persona in personas.items()
        for field, answer in persona["answers"].items()
        if isinstance(answer, str) and (level := assess(answer).level) != "none"
    ]
    assert not flagged, flagged


def test_the_lemma_entries_left_out_change_no_match_and_no_negation():
    """The pipelines keep only the lemma entries that the patterns and the
    negation cues can need (patterns.needed_lemmas), not spacy-lookups-data's
    whole tables (about 150 MB a process for Spanish). On every word of the
    whole tables, and on every message of the project's own labelled sets, the
    kept entries must give what the whole table gives: the same words with a
    lemma the detector looks for, and the same matches."""
    import json
    from pathlib import Path

    from bot.crisis.detector import NEGATION_CUES
    from bot.crisis.normalise import tables
    from bot.crisis.patterns import LANGUAGES, build, compiled, lemma_table

    data = Path(__file__).parent / "data"
    texts = [
        json.loads(line)["text"]
        for path in sorted(data.glob("crisis_*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    assert len(texts) > 900
    for language in LANGUAGES:
        whole, kept = build(language, whole_table=True), compiled(language)
        assert kept.lemmas == whole.lemmas
        sought = whole.lemmas | {cue.lower() for cue in NEGATION_CUES}
        table = kept.nlp.get_pipe("lemmatizer").lookups.get_table("lemma_lookup")
        words = list(lemma_table(language))
        assert len(table) < len(words) / 10

        def looked_for(doc, sought=sought) -> list[str | None]:
            # A pattern or a negation cue can only ask whether a lemma is one of these.
            return [t.lemma_ if t.lemma_ in sought else None for t in doc]

        # Every word of the whole table, as the lemmatizer and crisis_lemma_fixes
        # would give its lemma from either pipeline's table.
        fixes = tables()["lemma_fixes"]
        whole_table = whole.nlp.get_pipe("lemmatizer").lookups.get_table("lemma_lookup")
        for word in words:
            before, after = (fixes.get(word.lower(), t.get(word, word).lower()) for t in (whole_table, table))
            assert (before if before in sought else None) == (after if after in sought else None), word
        for text in texts:
            a, b = whole.nlp(text), kept.nlp(text)
            assert looked_for(a) == looked_for(b), text
            assert whole.matcher(a) == kept.matcher(b), text
