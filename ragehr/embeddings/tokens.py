"""Contextual token embeddings of the packaged all-MiniLM-L6-v2, for token-alignment metrics
(the BERTScore-style F1 in :mod:`ragehr.eval.metrics.text`).

Lives here because :mod:`ragehr.embeddings` is the one owner of ``sentence-transformers``; the
:class:`~ragehr.embeddings.Embedder` protocol gives one vector per text and does not expose
token outputs.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ragehr.embeddings import minilm_folder
from ragehr.errors import ModelNotFoundError

__all__ = ["load_minilm_token_model", "minilm_token_embeddings"]


@functools.lru_cache(maxsize=1)
def load_minilm_token_model() -> Any:
    """The packaged all-MiniLM-L6-v2 as a ``sentence_transformers.SentenceTransformer`` on the
    CPU, loaded once per process from :func:`ragehr.embeddings.minilm_folder` with
    ``HF_HUB_OFFLINE=1``/``TRANSFORMERS_OFFLINE=1`` and ``local_files_only=True`` (nothing is
    downloaded). Raises :class:`ragehr.errors.ModelNotFoundError` when the model or the library
    is missing."""
    folder = minilm_folder()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelNotFoundError(f"sentence-transformers is not installed ({exc})") from exc
    from ragehr.embeddings.sentence import quiet_transformers

    with quiet_transformers():
        model = SentenceTransformer(str(folder), device="cpu", local_files_only=True, trust_remote_code=False)
    model.eval()
    return model


def minilm_token_embeddings(texts: Sequence[str], model: Any = None) -> list[np.ndarray]:
    """Contextual token embeddings of each text: float64 arrays of shape ``(n_tokens, 384)``
    with unit-norm rows, one row per word piece, without ``[CLS]``, ``[SEP]`` and padding.
    Texts longer than the model's window (256 word pieces) are truncated. ``model`` defaults
    to :func:`load_minilm_token_model`."""
    if model is None:
        model = load_minilm_token_model()
    if not texts:
        return []
    tok = model.tokenizer
    drop = [i for i in (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id) if i is not None]
    feats = model.encode(list(texts), output_value=None, batch_size=32, show_progress_bar=False, convert_to_numpy=False)
    out = []
    for f in feats:
        ids = f["input_ids"].cpu().numpy()
        mask = f["attention_mask"].cpu().numpy().astype(bool)
        keep = mask & ~np.isin(ids, drop)
        emb = f["token_embeddings"].detach().cpu().float().numpy().astype(np.float64)[keep]
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        out.append(emb / np.maximum(norms, 1e-12))
    return out
