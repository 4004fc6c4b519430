"""Embeddings from a sentence-transformers model folder on local disk.

This is the only module of ragehr that imports sentence-transformers (and, through it,
torch), and it does so inside functions, on first use. It loads from a folder only: before
loading it sets ``HF_HUB_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` (unless the caller set
them) and passes ``local_files_only=True``, so nothing is ever downloaded; it also sets
``HF_HUB_DISABLE_PROGRESS_BARS=1`` (unless set) so that loading prints nothing. Remote code in a
model folder is never trusted.

It does not cache vectors (:mod:`ragehr.embeddings.cache` does) and does not choose torch's
thread count (torch's default, one thread per core, is kept).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ragehr.embeddings import _INSTALL_HINT, EmbedderError, ModelNotFoundError

__all__ = ["SentenceTransformerEmbedder", "folder_model_id"]

log = logging.getLogger(__name__)

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx")


def folder_model_id(folder: Path) -> str:
    """A stable id for the model in ``folder``: the folder's name plus 12 hex digits of a
    SHA-256 over ``config.json``, ``modules.json`` and the size of the weights file, so that
    replacing the model in place changes the id (and so invalidates caches and indexes)."""
    h = hashlib.sha256()
    for name in ("config.json", "modules.json"):
        path = folder / name
        h.update(name.encode())
        h.update(path.read_bytes() if path.is_file() else b"<missing>")
    for name in _WEIGHT_FILES:
        path = folder / name
        if path.is_file():
            h.update(f"{name}:{path.stat().st_size}".encode())
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", folder.resolve().name) or "model"
    return f"{safe}@{h.hexdigest()[:12]}"


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Keep transformers' load-time warnings (the multi-line "LOAD REPORT" table for MiniLM's
    unused ``position_ids``) off stderr while a model loads: a command's failures are one line,
    and its output is the CLI's. ``--debug`` shows them."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:
        yield
        return
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        yield
        return
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


class SentenceTransformerEmbedder:
    """A sentence-transformers model read from ``folder``, run on the CPU.

    The weights load lazily, on first use of :attr:`dim` or :meth:`embed` (or an explicit
    :meth:`load`), so that building the embedder to compare its ``model_id`` with a cache or an
    index is cheap. Loading is thread-safe."""

    def __init__(self, folder: Path, model_id: str | None = None) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ModelNotFoundError(f"model folder not found: {self.folder}")
        if not (self.folder / "modules.json").is_file() and not (self.folder / "config.json").is_file():
            raise ModelNotFoundError(
                f"{self.folder} is not a sentence-transformers model folder (no modules.json or config.json)"
            )
        self._model_id = model_id if model_id is not None else folder_model_id(self.folder)
        self._model: Any = None
        self._dim: int | None = None
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        self.load()
        assert self._dim is not None
        return self._dim

    def load(self) -> None:
        """Load the weights now (a no-op once loaded). Raises :class:`ModelNotFoundError` when
        sentence-transformers is not installed, :class:`EmbedderError` when the folder does
        not load."""
        if self._model is not None:
            return
        with self._lock:
            if self._model is not None:
                return
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            # The library never prints: no "Loading weights" bar on stderr (the CLI owns
            # progress display). Only effective if transformers was not imported yet.
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ModelNotFoundError(f"sentence-transformers is not installed ({exc}): {_INSTALL_HINT}") from exc
            try:
                with quiet_transformers():
                    model = SentenceTransformer(
                        str(self.folder),
                        device="cpu",
                        local_files_only=True,
                        trust_remote_code=False,
                    )
            except Exception as exc:  # a broken folder can fail in many library-specific ways
                raise EmbedderError(f"cannot load the model in {self.folder}: {type(exc).__name__}: {exc}") from exc
            model.eval()
            getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            dim = getter()
            if not dim:
                raise EmbedderError(f"the model in {self.folder} does not state its dimension")
            self._dim = int(dim)
            self._model = model
            log.info("loaded embedding model %s (dim %d)", self._model_id, self._dim)

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` (float32, unit rows). Texts are processed longest first, in batches
        of ``batch_size``, so that each batch pads little; rows come back in input order.
        ``progress`` gets the cumulative number of texts done after each batch. Texts longer
        than the model's window (256 word pieces for MiniLM) are truncated by the model."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.load()
        assert self._dim is not None
        n = len(texts)
        out = np.zeros((n, self._dim), dtype=np.float32)
        if n == 0:
            return out
        order = sorted(range(n), key=lambda i: (-len(texts[i]), i))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            vecs = self._model.encode(
                [texts[i] for i in idx],
                batch_size=batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            vecs = np.asarray(vecs, dtype=np.float32)
            if vecs.shape != (len(idx), self._dim):
                raise EmbedderError(
                    f"model {self._model_id} returned shape {vecs.shape}, expected {(len(idx), self._dim)}"
                )
            out[idx] = vecs
            if progress is not None:
                progress(min(start + batch_size, n))
        return out
