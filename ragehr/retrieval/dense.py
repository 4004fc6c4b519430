"""Exact dense retrieval: cosine similarity over unit-norm chunk vectors, with FAISS.

:class:`DenseIndex` holds one float32 row per chunk id and answers "the top k chunks by inner
product with this query vector", optionally among an allowed subset of ids. Search is exact
(``faiss.IndexFlatIP``); results are ordered by ``(-score, chunk_id)`` so ties always break by
chunk id, including at the k-th place.

On disk an index is a folder of plain files, with no FAISS binary format and no pickle::

    vectors.npy        float32 (n, dim), unit rows
    dense_ids.json     the n chunk ids, in row order
    dense_meta.json    {"format": ..., "model_id": ..., "dim": ..., "n": ..., "metric": "ip"}

The FAISS index is rebuilt from ``vectors.npy`` when first searched (cheap and exact).

This is the only module of ragehr that imports faiss, and only inside functions, so importing
it stays light. It does not embed text (see :mod:`ragehr.embeddings`), fuse rankings or write
the index manifest; a missing, corrupt or mismatched file raises
:class:`ragehr.errors.CorruptIndexError` naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragehr.errors import CorruptIndexError, StaleIndexError
from ragehr.fsutil import atomic_save_npy, atomic_write_text
from ragehr.retrieval.ids import id_mask
from ragehr.types.retrieval import ScoredId

__all__ = ["DENSE_FORMAT", "NORM_TOLERANCE", "DenseIndex"]

DENSE_FORMAT = "ragehr-dense-v1"
NORM_TOLERANCE = 1e-3
"""Rows whose L2 norm is further than this from 1 are normalised by :meth:`DenseIndex.build`
and rejected by :meth:`DenseIndex.load`."""

VECTORS_FILE = "vectors.npy"
IDS_FILE = "dense_ids.json"
META_FILE = "dense_meta.json"


def _unit_rows(vectors: np.ndarray, what: str) -> np.ndarray:
    """``vectors`` with every row of unit norm (rows already within tolerance are kept)."""
    norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
    if (norms == 0).any():
        raise ValueError(f"{what}: {int((norms == 0).sum())} zero row(s) cannot be normalised")
    if np.all(np.abs(norms - 1.0) <= NORM_TOLERANCE):
        return vectors
    return (vectors / norms[:, None]).astype(np.float32)


class DenseIndex:
    """Unit-norm chunk vectors searchable by inner product (= cosine). Build with
    :meth:`build` or :meth:`load`; the constructor is internal."""

    def __init__(self, vectors: np.ndarray, ids: tuple[str, ...], model_id: str) -> None:
        self._vectors = vectors
        self._vectors.setflags(write=False)
        self._ids = ids
        self._pos = {cid: i for i, cid in enumerate(ids)}
        self._model_id = model_id
        self._faiss: Any = None
        self._rank: np.ndarray | None = None

    # --- construction -------------------------------------------------------------------

    @classmethod
    def build(cls, vectors: np.ndarray, ids: Sequence[str], model_id: str) -> DenseIndex:
        """An index of ``vectors`` (shape ``(n, dim)``), row i being chunk ``ids[i]``.

        Vectors are copied as float32; rows not of unit norm (within ``NORM_TOLERANCE``) are
        normalised. Raises ``ValueError`` for a shape that does not match ``ids``, repeated
        ids, non-finite values or zero rows."""
        arr = np.array(vectors, dtype=np.float32, copy=True)
        if arr.ndim != 2:
            raise ValueError(f"vectors must be 2-D (n, dim), got shape {arr.shape}")
        id_tuple = tuple(ids)
        if arr.shape[0] != len(id_tuple):
            raise ValueError(f"{len(id_tuple)} ids but {arr.shape[0]} vectors")
        if arr.shape[1] < 1:
            raise ValueError("vectors must have at least one dimension")
        if not all(isinstance(i, str) for i in id_tuple):
            raise ValueError("chunk ids must be strings")
        if len(set(id_tuple)) != len(id_tuple):
            raise ValueError("chunk ids must be unique")
        if not np.isfinite(arr).all():
            raise ValueError("vectors hold NaN or infinite values")
        if arr.shape[0]:
            arr = np.ascontiguousarray(_unit_rows(arr, "vectors"))
        return cls(arr, id_tuple, model_id)

    # --- properties ---------------------------------------------------------------------

    @property
    def model_id(self) -> str:
        """The embedder that made the vectors; queries must come from the same one."""
        return self._model_id

    @property
    def dim(self) -> int:
        return int(self._vectors.shape[1])

    @property
    def ids(self) -> tuple[str, ...]:
        """Chunk ids in row order."""
        return self._ids

    @property
    def vectors(self) -> np.ndarray:
        """The (read-only) float32 rows, in the order of :attr:`ids`."""
        return self._vectors

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._pos

    # --- search -------------------------------------------------------------------------

    def _index(self) -> Any:
        if self._faiss is None:
            import faiss

            index = faiss.IndexFlatIP(self.dim)
            if len(self):
                index.add(self._vectors)
            self._faiss = index
        return self._faiss

    def _query(self, query_vector: np.ndarray) -> np.ndarray:
        q = np.asarray(query_vector, dtype=np.float32)
        if q.ndim == 2 and q.shape[0] == 1:
            q = q[0]
        if q.shape != (self.dim,):
            raise ValueError(f"query vector must have shape ({self.dim},), got {q.shape}")
        if not np.isfinite(q).all():
            raise ValueError("query vector holds NaN or infinite values")
        return np.ascontiguousarray(_unit_rows(q[None, :], "query vector"), dtype=np.float32)

    def mask(self, allowed: Iterable[str]) -> np.ndarray:
        """Boolean mask over :attr:`ids` of the chunk ids in ``allowed`` (others ignored)."""
        return id_mask(self._pos, len(self._ids), allowed)

    def search(
        self,
        query_vector: np.ndarray,
        k: int,
        allowed: Iterable[str] | np.ndarray | None = None,
    ) -> list[ScoredId]:
        """The top ``k`` chunks by cosine with ``query_vector``, best first, ties by chunk id.

        ``k`` larger than the candidates returns them all; ``k <= 0`` returns nothing. With
        ``allowed``, only those chunks are candidates and the result is the exact top ``k``
        among them: either chunk ids (ids not in the index are ignored) or a boolean mask over
        :attr:`ids` (see :meth:`mask`). The restriction is applied inside FAISS's scan (a
        bitmap selector), before the top-k cut, so no allowed chunk is lost to disallowed
        ones however few are allowed. A query that is not of unit norm is normalised."""
        rows, scores = self.search_rows(query_vector, k, allowed)
        ids = self._ids
        # ids and finite floats read from the index itself: no need to validate each pair again
        return [ScoredId.model_construct(chunk_id=ids[r], score=s) for r, s in zip(rows.tolist(), scores.tolist())]

    def search_rows(
        self,
        query_vector: np.ndarray,
        k: int,
        allowed: Iterable[str] | np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` as arrays: the rows (positions in :attr:`ids`, int64) and their
        scores (float32 values as float64), best first, ties by chunk id."""
        q = self._query(query_vector)
        empty = np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        if k <= 0 or len(self) == 0:
            return empty
        params: Any = None
        keep_alive: Any = None
        if allowed is None:
            n_candidates = len(self)
        else:
            if isinstance(allowed, np.ndarray):
                if allowed.dtype != np.bool_ or allowed.shape != (len(self),):
                    raise ValueError(
                        f"an allowed mask must be bool of shape ({len(self)},), got {allowed.dtype} {allowed.shape}"
                    )
                mask = allowed
            else:
                mask = self.mask(allowed)
            n_candidates = int(np.count_nonzero(mask))
            if not n_candidates:
                return empty
            if n_candidates < len(self):
                import faiss

                bits = np.packbits(mask, bitorder="little")
                selector = faiss.IDSelectorBitmap(len(self), faiss.swig_ptr(bits))
                params = faiss.SearchParameters(sel=selector)  # type: ignore[call-arg]  # SWIG takes it as a keyword
                keep_alive = (bits, selector)  # FAISS holds raw pointers into these
        index = self._index()
        want = min(k, n_candidates)
        fetch = min(n_candidates, want + 1)  # one past the k-th, to see whether a tie continues
        while True:
            scores, labels = index.search(q, fetch, params=params)
            got = labels[0] >= 0
            s, lab = scores[0][got], labels[0][got]
            # Ties at the k-th score may continue past what was fetched: fetch more until the
            # last fetched score is strictly worse than the k-th, or nothing is left.
            if fetch >= n_candidates or s.size < fetch or s[-1] < s[want - 1]:
                break
            fetch = min(n_candidates, fetch * 2)
        del keep_alive
        if s.size >= want:
            keep = s >= s[want - 1]
            s, lab = s[keep], lab[keep]
        order = np.lexsort((self._id_rank()[lab], -s))[:want]
        return lab[order].astype(np.int64, copy=False), s[order].astype(np.float64)

    def _id_rank(self) -> np.ndarray:
        """Each row's place in the sorted chunk ids (the tie-break order), made once."""
        if self._rank is None:
            rank = np.empty(len(self._ids), dtype=np.int64)
            rank[sorted(range(len(self._ids)), key=self._ids.__getitem__)] = np.arange(len(self._ids))
            self._rank = rank
        return self._rank

    # --- files --------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write ``vectors.npy``, ``dense_ids.json`` and, last, ``dense_meta.json`` into
        ``folder`` (created if needed), each atomically."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_save_npy(folder / VECTORS_FILE, np.ascontiguousarray(self._vectors))
        atomic_write_text(folder / IDS_FILE, json.dumps(list(self._ids)) + "\n")
        meta = {
            "format": DENSE_FORMAT,
            "model_id": self._model_id,
            "dim": self.dim,
            "n": len(self),
            "metric": "ip",
        }
        atomic_write_text(folder / META_FILE, json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path, *, expected_model_id: str | None = None) -> DenseIndex:
        """Read an index written by :meth:`save`, checking every file against the meta.

        Raises :class:`CorruptIndexError` naming the file that is missing, unreadable or
        inconsistent, and :class:`StaleIndexError` when ``expected_model_id`` is given and the
        index was built with another embedder."""
        folder = Path(folder)
        meta_path, ids_path, vec_path = folder / META_FILE, folder / IDS_FILE, folder / VECTORS_FILE

        def bad(path: Path, problem: str) -> CorruptIndexError:
            return CorruptIndexError(f"{path}: {problem}")

        for path in (meta_path, ids_path, vec_path):
            if not path.is_file():
                raise bad(path, "missing")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise bad(meta_path, f"unreadable ({type(exc).__name__})") from exc
        if not isinstance(meta, dict):
            raise bad(meta_path, "not a JSON object")
        if meta.get("format") != DENSE_FORMAT:
            raise bad(meta_path, f"format {meta.get('format')!r}, expected {DENSE_FORMAT!r}")
        model_id, dim, n = meta.get("model_id"), meta.get("dim"), meta.get("n")
        if not isinstance(model_id, str) or not model_id:
            raise bad(meta_path, "model_id missing")
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise bad(meta_path, f"dim must be a positive integer, got {dim!r}")
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise bad(meta_path, f"n must be a non-negative integer, got {n!r}")
        if meta.get("metric", "ip") != "ip":
            raise bad(meta_path, f"metric {meta.get('metric')!r}, expected 'ip'")

        try:
            ids = json.loads(ids_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise bad(ids_path, f"unreadable ({type(exc).__name__})") from exc
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise bad(ids_path, "not a JSON list of strings")
        if len(ids) != n:
            raise bad(ids_path, f"{len(ids)} ids, {META_FILE} says {n}")
        if len(set(ids)) != len(ids):
            raise bad(ids_path, "repeated chunk ids")

        try:
            vectors = np.load(vec_path, allow_pickle=False)
        except Exception as exc:  # truncated or not an .npy file: numpy raises several kinds
            raise bad(vec_path, f"unreadable ({type(exc).__name__})") from exc
        if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32:
            raise bad(vec_path, f"dtype {getattr(vectors, 'dtype', None)}, expected float32")
        if vectors.shape != (n, dim):
            raise bad(vec_path, f"shape {vectors.shape}, {META_FILE} says {(n, dim)}")
        if not np.isfinite(vectors).all():
            raise bad(vec_path, "NaN or infinite values")
        if n:
            norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
            if not np.all(np.abs(norms - 1.0) <= NORM_TOLERANCE):
                raise bad(vec_path, "rows are not of unit norm")

        if expected_model_id is not None and model_id != expected_model_id:
            raise StaleIndexError(f"{meta_path}: built with embedder {model_id!r}, not {expected_model_id!r}")
        return cls(np.ascontiguousarray(vectors), tuple(ids), model_id)
