"""A deterministic fake embedder: feature hashing of words and word pairs.

Each lowercased word (a run of Unicode letters and digits) and each pair of neighbouring
words is hashed with BLAKE2b (stable across processes and machines, unlike Python's
``hash``) to a column and a sign; counts are damped with ``1 + log(tf)`` and the row is
L2-normalised. Texts that share words therefore get a higher cosine than texts that do not,
which is all the tests and the ``--embedder hashing`` mode need.

It is not a semantic model: synonyms ("BP" and "blood pressure") do not meet, and it knows no
clinical vocabulary. It needs only hashlib and numpy.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["DEFAULT_DIM", "HashingEmbedder", "features"]

DEFAULT_DIM = 256
_WORD = re.compile(r"[^\W_]+")
_EMPTY = "\x00empty"
"""The feature of a text with no words, so that every row still has unit norm."""
_BIGRAM_WEIGHT = 0.5


def features(text: str) -> dict[str, float]:
    """The weighted features of ``text``: each word unigram and each neighbouring-word bigram
    (written ``"a b"``) with weight ``base * (1 + log(count))``, base 1 for words and 0.5 for
    bigrams. A text with no words has the single feature of the empty text."""
    words = _WORD.findall(text.lower())
    unigrams = Counter(words)
    bigrams = Counter(f"{a} {b}" for a, b in zip(words, words[1:]))
    out: dict[str, float] = {}
    for base, counts in ((1.0, unigrams), (_BIGRAM_WEIGHT, bigrams)):
        for feat, n in counts.items():
            out[feat] = base * (1.0 + math.log(n))
    if not out:
        out[_EMPTY] = 1.0
    return out


class HashingEmbedder:
    """Signed feature hashing into ``dim`` columns. Deterministic and cheap."""

    def __init__(self, dim: int = DEFAULT_DIM) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self._dim = int(dim)
        self._slots: dict[str, tuple[int, float]] = {}

    @property
    def model_id(self) -> str:
        return f"hashing-v1-d{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def _slot(self, feature: str) -> tuple[int, float]:
        slot = self._slots.get(feature)
        if slot is None:
            digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
            h = int.from_bytes(digest, "little")
            slot = (h % self._dim, -1.0 if (h >> 63) & 1 else 1.0)
            if len(self._slots) < 1_000_000:
                self._slots[feature] = slot
        return slot

    def embed_one(self, text: str) -> np.ndarray:
        """One text as a unit-norm float32 row of length ``dim``."""
        row = np.zeros(self._dim, dtype=np.float64)
        for feat, weight in features(text).items():
            col, sign = self._slot(feat)
            row[col] += sign * weight
        norm = float(np.linalg.norm(row))
        if norm == 0.0:  # every feature cancelled out: fall back to the empty feature
            col, sign = self._slot(_EMPTY)
            row[col] = sign
            norm = 1.0
        return (row / norm).astype(np.float32)

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            stop = min(start + batch_size, len(texts))
            for i in range(start, stop):
                out[i] = self.embed_one(texts[i])
            if progress is not None:
                progress(stop)
        return out
