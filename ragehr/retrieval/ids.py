"""Chunk-id filters as boolean masks over a retriever's own id order (BM25 and dense alike)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np


def id_mask(positions: Mapping[str, int], n: int, allowed: Iterable[str]) -> np.ndarray:
    """Boolean mask of length ``n``: True at ``positions[id]`` for each id in ``allowed``
    (ids the retriever does not hold are ignored). A single string is refused: it would be
    read as a collection of one-character ids."""
    if isinstance(allowed, str):
        raise ValueError("allowed must be a collection of chunk ids, not one string")
    out = np.zeros(n, dtype=bool)
    get = positions.get
    idx = [i for i in map(get, allowed) if i is not None]
    if idx:
        out[np.asarray(idx, dtype=np.int64)] = True
    return out
