"""The statistical layer: a small text classifier trained on our own labelled
examples (data/training.jsonl), never on the evaluation set.

It is trained in-process on first use (well under a second) from data that
ships with the code, so nothing is downloaded and there is no opaque model
file to review. It may add "ask" or "crisis"; the detector never lets it
lower a level.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from bot.crisis.normalise import normalise

TRAINING = Path(__file__).with_name("data") / "training.jsonl"
CRISIS_THRESHOLD = 0.85
ASK_THRESHOLD = 0.80
# Short answers ("Myself", "I feel low") carry too little to judge; the
# patterns still see them.
MIN_WORDS = 3


def examples() -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in TRAINING.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(row["text"], row["label"]) for row in rows]


@functools.lru_cache(maxsize=1)
def model():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, make_pipeline

    texts, labels = zip(*((normalise(t), label) for t, label in examples()), strict=True)
    features = FeatureUnion(
        [
            ("words", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)),
            ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)),
        ]
    )
    pipeline = make_pipeline(
        features, LogisticRegression(C=4.0, max_iter=2000, class_weight="balanced", random_state=0)
    )
    pipeline.fit(texts, labels)
    return pipeline


def probabilities(normalised_text: str) -> dict[str, float]:
    pipeline = model()
    return dict(zip(pipeline.classes_, pipeline.predict_proba([normalised_text])[0], strict=True))


def predict(normalised_text: str) -> str:
    if len(normalised_text.split()) < MIN_WORDS:
        return "none"
    p = probabilities(normalised_text)
    if p.get("crisis", 0.0) >= CRISIS_THRESHOLD:
        return "crisis"
    if p.get("crisis", 0.0) + p.get("ask", 0.0) >= ASK_THRESHOLD:
        return "ask"
    return "none"
