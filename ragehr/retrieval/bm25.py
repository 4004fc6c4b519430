"""BM25 over a patient's chunks: the only module that imports ``bm25s``.

What it does: :class:`BM25Index` tokenizes chunk texts with ragehr's own
:class:`~ragehr.retrieval.analyzer.Analyzer` (never bm25s's tokenizer), hands the token ids
and a sorted vocabulary to ``bm25s`` to precompute the sparse score matrix, and answers
queries exactly: every document is scored, then the top ``k`` with a positive score are
returned in ``(-score, chunk_id)`` order. ``k`` may exceed the corpus; an optional
``allowed`` set restricts the ranking to those chunk ids *before* the cut, so the result is
the true top ``k`` among them. The analyzer config is saved with the index, so queries are
tokenized exactly as the documents were.

What it does not do: no dense retrieval, no fusion (:mod:`ragehr.retrieval.fusion`), no
time filters of its own (callers pass ``allowed``), no pickle. ``bm25s`` is imported only
when an index is built or loaded, so importing this module stays cheap.

On disk an index is a folder of plain files (see :meth:`BM25Index.save`)::

    bm25.json                 manifest: format version, params, analyzer config and hash,
                              counts, bm25s version, sha256 of every other file
    ids.json                  chunk ids, in document order
    data.csc.index.npy        bm25s's CSC score matrix (saved with allow_pickle=False)
    indices.csc.index.npy
    indptr.csc.index.npy
    vocab.index.json          term -> column
    params.index.json         bm25s's own parameter file

Scores are bm25s's float32 values, widened to float64 when returned.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from ragehr.errors import ConfigError, CorruptIndexError
from ragehr.fsutil import atomic_write_text
from ragehr.retrieval.analyzer import Analyzer
from ragehr.retrieval.ids import id_mask
from ragehr.types.retrieval import ScoredId


def _import_bm25s() -> Any:
    """Import bm25s, which sets its own logger to DEBUG on import; put it back to WARNING
    (ragehr's --debug is for ragehr, and bm25s's messages say nothing a user needs)."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    return bm25s


if TYPE_CHECKING:
    import bm25s

FORMAT = "ragehr.bm25"
FORMAT_VERSION = 1
MANIFEST = "bm25.json"
IDS = "ids.json"
_BM25S_FILES = (
    "data.csc.index.npy",
    "indices.csc.index.npy",
    "indptr.csc.index.npy",
    "vocab.index.json",
    "params.index.json",
)

Method = Literal["lucene", "robertson", "atire"]
"""bm25s variants whose score is zero for a document without a query term (BM25L and BM25+
are left out: they give every document a score)."""


class BM25Params(BaseModel):
    """BM25 scoring parameters, as bm25s names them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    k1: float = 1.5
    b: float = 0.75
    method: Method = "lucene"
    """Term-frequency (and by default idf) variant, after Kamphuis et al., ECIR 2020."""
    idf_method: Method | None = None
    """idf variant when different from ``method`` (None: same as ``method``)."""


class _Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["ragehr.bm25"]
    format_version: Literal[1]
    params: BM25Params
    analyzer: dict[str, Any]
    analyzer_hash: str
    n_docs: int
    n_terms: int
    bm25s_version: str | None
    files: dict[str, str]
    """File name -> sha256 hex of its bytes."""


class BM25Index:
    """An exact BM25 index over chunk texts. Build with :meth:`build`, or :meth:`load`."""

    def __init__(
        self,
        ids: Sequence[str],
        analyzer: Analyzer,
        params: BM25Params,
        model: bm25s.BM25 | None,
    ) -> None:
        """Internal: use :meth:`build` or :meth:`load`. ``model`` is None when the corpus has
        no terms at all (every score is then 0)."""
        self._ids: tuple[str, ...] = tuple(ids)
        self._analyzer = analyzer
        self._params = params
        self._model = model
        self._pos: dict[str, int] = {cid: i for i, cid in enumerate(self._ids)}
        if len(self._pos) != len(self._ids):
            raise ValueError("chunk ids must be unique")
        order = sorted(range(len(self._ids)), key=self._ids.__getitem__)
        self._id_rank = np.empty(len(self._ids), dtype=np.int64)
        self._id_rank[order] = np.arange(len(self._ids), dtype=np.int64)

    # ------------------------------------------------------------------ build

    @classmethod
    def build(
        cls,
        texts: Sequence[str],
        ids: Sequence[str],
        analyzer: Analyzer,
        k1: float = 1.5,
        b: float = 0.75,
        method: Method = "lucene",
        idf_method: Method | None = None,
    ) -> BM25Index:
        """Index ``texts`` (one per chunk id, same order). Ids must be unique strings.

        Raises ``ValueError`` for mismatched lengths, duplicate ids or bad parameters."""
        if len(texts) != len(ids):
            raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
        if any(not isinstance(cid, str) for cid in ids):
            raise ValueError("chunk ids must be strings")
        if len(set(ids)) != len(ids):
            raise ValueError("chunk ids must be unique")
        try:
            params = BM25Params(k1=k1, b=b, method=method, idf_method=idf_method)
        except ValidationError as exc:
            raise ValueError(f"invalid BM25 parameters: {exc}") from exc
        if not (params.k1 >= 0 and 0 <= params.b <= 1):
            raise ValueError(f"need k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")

        docs = [analyzer.tokenize(t) for t in texts]
        terms = sorted({t for doc in docs for t in doc})
        if not terms:
            return cls(ids, analyzer, params, None)
        vocab = {t: i for i, t in enumerate(terms)}
        corpus_ids = [[vocab[t] for t in doc] for doc in docs]

        bm25s = _import_bm25s()

        model = bm25s.BM25(
            k1=params.k1,
            b=params.b,
            method=params.method,
            idf_method=params.idf_method,
            backend="numpy",
        )
        model.index((corpus_ids, vocab), create_empty_token=False, show_progress=False)
        return cls(ids, analyzer, params, model)

    # ------------------------------------------------------------------ query

    @property
    def ids(self) -> tuple[str, ...]:
        """Chunk ids in document order (the order of :meth:`score_all`)."""
        return self._ids

    @property
    def analyzer(self) -> Analyzer:
        return self._analyzer

    @property
    def params(self) -> BM25Params:
        return self._params

    @property
    def n_terms(self) -> int:
        return 0 if self._model is None else len(self._model.vocab_dict)

    def __len__(self) -> int:
        return len(self._ids)

    def score_all(self, query: str) -> np.ndarray:
        """BM25 score of every document for ``query``: float64, shape ``(len(self),)``, in
        :attr:`ids` order. All zeros for an empty query or one with no indexed term."""
        return self._score_terms(self._analyzer.tokenize(query))

    def search(
        self,
        query: str,
        k: int,
        allowed: Collection[str] | np.ndarray | None = None,
    ) -> list[ScoredId]:
        """The top ``k`` documents with a positive score, best first, ties by chunk id.

        ``k`` larger than the corpus returns every matching document. With ``allowed``, only
        those documents are ranked and the result is the top ``k`` among them: either chunk
        ids (unknown ids are ignored) or a boolean mask from :meth:`mask`, which saves
        re-converting the same filter for several queries."""
        rows, scores = self.search_rows(query, k, allowed)
        ids = self._ids
        # ids and finite floats read from the index itself: no need to validate each pair again
        return [ScoredId.model_construct(chunk_id=ids[r], score=s) for r, s in zip(rows.tolist(), scores.tolist())]

    def search_rows(
        self,
        query: str,
        k: int,
        allowed: Collection[str] | np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`search` as arrays: the rows (positions in :attr:`ids`, int64) and their
        float64 scores, best first, ties by chunk id (what the query path fuses without
        building a record per candidate)."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        if k == 0 or not self._ids:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
        scores = self.score_all(query)
        keep = scores > 0
        if allowed is not None:
            if isinstance(allowed, np.ndarray):
                if allowed.dtype != np.bool_ or allowed.shape != (len(self._ids),):
                    raise ValueError(
                        f"an allowed mask must be bool of shape ({len(self._ids)},), "
                        f"got {allowed.dtype} {allowed.shape}"
                    )
                keep &= allowed
            else:
                keep &= self.mask(allowed)
        cand = np.flatnonzero(keep)
        if cand.size > k:
            # Keep every candidate scoring at least the k-th best, so ties at the cut are
            # then resolved by chunk id, not by argpartition's arbitrary order.
            cs = scores[cand]
            kth = np.partition(cs, cand.size - k)[cand.size - k]
            cand = cand[cs >= kth]
        order = np.lexsort((self._id_rank[cand], -scores[cand]))[:k]
        rows = cand[order].astype(np.int64, copy=False)
        return rows, scores[rows].astype(np.float64, copy=False)

    @property
    def id_rank(self) -> np.ndarray:
        """Each row's place in the sorted chunk ids (the tie-break order of every ranking)."""
        return self._id_rank

    def mask(self, allowed: Collection[str]) -> np.ndarray:
        """Boolean mask over :attr:`ids` of the chunk ids in ``allowed`` (others ignored)."""
        return id_mask(self._pos, len(self._ids), allowed)

    def _score_terms(self, terms: list[str]) -> np.ndarray:
        n = len(self._ids)
        if self._model is None or not terms:
            return np.zeros(n, dtype=np.float64)
        tids = self._model.get_tokens_ids(terms)
        if not tids:
            return np.zeros(n, dtype=np.float64)
        return np.asarray(self._model.get_scores_from_ids(tids), dtype=np.float64)

    # ------------------------------------------------------------------ files

    def save(self, directory: Path) -> None:
        """Write the index into ``directory`` (created if needed) as plain ``.npy``/``.json``
        files, no pickle. The manifest ``bm25.json`` is written last and atomically, so a
        folder without it is an unfinished save."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / MANIFEST).unlink(missing_ok=True)
        atomic_write_text(directory / IDS, json.dumps(list(self._ids), ensure_ascii=False))
        names = [IDS]
        bm25s_version = None
        if self._model is not None:
            bm25s = _import_bm25s()

            bm25s_version = bm25s.__version__
            self._model.save(str(directory), allow_pickle=False, show_progress=False)
            names.extend(_BM25S_FILES)
        manifest = _Manifest(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            params=self._params,
            analyzer=self._analyzer.to_json(),
            analyzer_hash=self._analyzer.config_hash(),
            n_docs=len(self._ids),
            n_terms=self.n_terms,
            bm25s_version=bm25s_version,
            files={name: _sha256(directory / name) for name in names},
        )
        atomic_write_text(directory / MANIFEST, manifest.model_dump_json(indent=2))

    @classmethod
    def load(cls, directory: Path) -> BM25Index:
        """Read an index written by :meth:`save`.

        Raises :class:`ragehr.errors.CorruptIndexError`, naming the file, when a file is
        missing, altered since the save (sha256), unreadable or inconsistent with the others."""
        directory = Path(directory)
        mpath = directory / MANIFEST
        manifest = _read_manifest(mpath)
        expected = {IDS, *(_BM25S_FILES if manifest.n_terms else ())}
        if set(manifest.files) != expected:
            raise CorruptIndexError(f"{mpath}: lists files {sorted(manifest.files)}, expected {sorted(expected)}")
        for name in sorted(expected):
            path = directory / name
            if not path.is_file():
                raise CorruptIndexError(f"{path}: missing from the BM25 index")
            if _sha256(path) != manifest.files[name]:
                raise CorruptIndexError(f"{path}: corrupt (sha256 differs from {MANIFEST})")

        try:
            analyzer = Analyzer.from_json(manifest.analyzer)
        except ConfigError as exc:
            raise CorruptIndexError(f"{mpath}: {exc}") from exc
        if analyzer.config_hash() != manifest.analyzer_hash:
            raise CorruptIndexError(f"{mpath}: analyzer_hash does not match its analyzer config")

        ids_path = directory / IDS
        try:
            ids = json.loads(ids_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptIndexError(f"{ids_path}: unreadable: {exc}") from exc
        if not (isinstance(ids, list) and all(isinstance(x, str) for x in ids)):
            raise CorruptIndexError(f"{ids_path}: not a JSON list of strings")
        if len(ids) != manifest.n_docs or len(set(ids)) != len(ids):
            raise CorruptIndexError(
                f"{ids_path}: {len(ids)} ids ({len(set(ids))} unique), {MANIFEST} says {manifest.n_docs}"
            )

        model = None
        if manifest.n_terms:
            model = _load_bm25s(directory, manifest)
        return cls(ids, analyzer, manifest.params, model)


def _read_manifest(path: Path) -> _Manifest:
    if not path.is_file():
        raise CorruptIndexError(f"{path}: missing (not a BM25 index folder, or an unfinished save)")
    try:
        return _Manifest.model_validate_json(path.read_bytes())
    except (OSError, ValidationError) as exc:
        raise CorruptIndexError(f"{path}: not a valid BM25 index manifest: {exc}") from exc


def _load_bm25s(directory: Path, manifest: _Manifest) -> bm25s.BM25:
    bm25s = _import_bm25s()

    try:
        model = bm25s.BM25.load(str(directory), allow_pickle=False, mmap=False, load_corpus=False, show_progress=False)
    except Exception as exc:  # bm25s raises whatever numpy/json raise on a bad file
        raise CorruptIndexError(f"{directory / 'params.index.json'}: bm25s could not load the index: {exc}") from exc
    try:
        problems = _inconsistencies(model, manifest)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        problems = [("vocab.index.json", f"malformed: {exc}")]
    if problems:
        name, why = problems[0]
        raise CorruptIndexError(f"{directory / name}: inconsistent BM25 index: {why}")
    return model


def _inconsistencies(model: bm25s.BM25, manifest: _Manifest) -> list[tuple[str, str]]:
    """(file name, problem) for each way the loaded bm25s model disagrees with the manifest."""
    sc = model.scores
    data, indices, indptr = sc["data"], sc["indices"], sc["indptr"]
    vocab = model.vocab_dict
    problems: list[tuple[str, str]] = []
    if sc["num_docs"] != manifest.n_docs:
        problems.append(("params.index.json", f"num_docs {sc['num_docs']} != {manifest.n_docs}"))
    if len(vocab) != manifest.n_terms or sorted(vocab.values()) != list(range(len(vocab))):
        problems.append(("vocab.index.json", "terms do not map onto 0..n_terms-1"))
    if indptr.ndim != 1 or len(indptr) != manifest.n_terms + 1 or int(indptr[-1]) != len(data):
        problems.append(("indptr.csc.index.npy", "length or last offset inconsistent"))
    if data.shape != indices.shape or data.ndim != 1:
        problems.append(("indices.csc.index.npy", "shape differs from data"))
    elif indices.size and (int(indices.min()) < 0 or int(indices.max()) >= manifest.n_docs):
        problems.append(("indices.csc.index.npy", "document index out of range"))
    if not np.all(np.isfinite(data)):
        problems.append(("data.csc.index.npy", "non-finite scores"))
    p = manifest.params
    if (model.method, model.idf_method, model.k1, model.b) != (p.method, p.idf_method or p.method, p.k1, p.b):
        problems.append(("params.index.json", f"parameters differ from {MANIFEST}"))
    return problems


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
