"""A persistent cache of text embeddings, keyed by (model id, SHA-256 of the text).

Layout under ``root``::

    <safe model name>/            one folder per model id (sanitised, plus a short hash)
        model.json                {"model_id": ..., "format": "ragehr-embcache-v1"}
        vectors-000001.npy        float32 (n, dim), written first
        keys-000001.json          list of n text SHA-256 hex digests, written second
        vectors-000002.npy ...    one new shard per call that stored something

Shards are append-only and every file is written atomically (temporary file, fsync, rename).
Because a shard's keys are written after its vectors, a crash leaves at worst vectors that
no keys point at, which are ignored. A shard that fails to load, or whose keys and vectors
disagree, is skipped with a WARNING and never crashes a run. Nothing is pickled, and no text
is ever stored or logged: only hashes, ids and counts.

This module does not evict old entries or compact shards. Two processes may fill one model
folder at once: each reserves its shard number by creating the vectors file exclusively.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ragehr.embeddings import Embedder, EmbedderError
from ragehr.fsutil import atomic_save_npy, atomic_write_text

__all__ = ["CACHE_FORMAT", "EmbeddingCache", "embed_with_cache", "text_hash"]

log = logging.getLogger(__name__)

CACHE_FORMAT = "ragehr-embcache-v1"
_SHARD = re.compile(r"^keys-(\d{6,})\.json$")
_VEC_SHARD = re.compile(r"^vectors-(\d{6,})\.npy$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def text_hash(text: str) -> str:
    """The cache key of a text: SHA-256 hex of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _safe_name(model_id: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", model_id).strip("._") or "model"
    digest = hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:10]
    return f"{stem[:80]}-{digest}"


class _ModelShards:
    """The loaded shards of one model: hash -> (shard index, row)."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []
        self.where: dict[str, tuple[int, int]] = {}
        self.dim: int | None = None
        self.max_shard = 0

    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        s = len(self.arrays)
        self.arrays.append(vectors)
        if self.dim is None:
            self.dim = int(vectors.shape[1])
        for row, key in enumerate(keys):
            self.where.setdefault(key, (s, row))


class EmbeddingCache:
    """Embeddings on disk under ``root``, one folder per model id (see the module doc).

    Shards of a model are read on its first lookup and kept in memory afterwards; vectors this
    object stores are added to that view as they are written."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._models: dict[str, _ModelShards] = {}

    def model_dir(self, model_id: str) -> Path:
        """The folder holding ``model_id``'s shards."""
        return self.root / _safe_name(model_id)

    def _shards(self, model_id: str) -> _ModelShards:
        loaded = self._models.get(model_id)
        if loaded is None:
            loaded = self._load(model_id)
            self._models[model_id] = loaded
        return loaded

    def _load(self, model_id: str) -> _ModelShards:
        shards = _ModelShards()
        folder = self.model_dir(model_id)
        if not folder.is_dir():
            return shards
        meta_path = folder / "model.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("model_id") != model_id or meta.get("format") != CACHE_FORMAT:
                log.warning("embedding cache %s: model.json names another model or format; ignoring the folder", folder)
                return shards
        except Exception as exc:
            log.warning(
                "embedding cache %s: unreadable model.json (%s); ignoring the folder", folder, type(exc).__name__
            )
            return shards
        numbered: list[tuple[int, Path]] = []
        for entry in folder.iterdir():
            m = _SHARD.match(entry.name) or _VEC_SHARD.match(entry.name)
            if m:
                shards.max_shard = max(shards.max_shard, int(m.group(1)))
                if entry.name.startswith("keys-"):
                    numbered.append((int(m.group(1)), entry))
        for number, keys_path in sorted(numbered):
            vec_path = folder / f"vectors-{number:06d}.npy"
            problem = None
            try:
                keys = json.loads(keys_path.read_text(encoding="utf-8"))
                vectors = np.load(vec_path, allow_pickle=False)
                if not isinstance(keys, list) or not all(isinstance(k, str) and _HEX64.match(k) for k in keys):
                    problem = "keys are not a list of SHA-256 hex digests"
                elif vectors.dtype != np.float32 or vectors.ndim != 2:
                    problem = f"vectors are {vectors.dtype} {vectors.shape}, not float32 (n, dim)"
                elif vectors.shape[0] != len(keys):
                    problem = f"{len(keys)} keys but {vectors.shape[0]} vectors"
                elif shards.dim is not None and vectors.shape[1] != shards.dim:
                    problem = f"dimension {vectors.shape[1]}, other shards have {shards.dim}"
                elif not np.isfinite(vectors).all():
                    problem = "vectors hold non-finite values"
            except Exception as exc:  # a damaged shard must never crash a run
                problem = f"cannot be read ({type(exc).__name__})"
            if problem is not None:
                log.warning("embedding cache shard %s ignored: %s", keys_path, problem)
                continue
            shards.add(keys, vectors)
        log.debug("embedding cache %s: %d vectors in %d shards", folder, len(shards.where), len(shards.arrays))
        return shards

    def dim(self, model_id: str) -> int | None:
        """The dimension of ``model_id``'s cached vectors, or ``None`` when none are cached."""
        return self._shards(model_id).dim

    def __len__(self) -> int:
        return sum(len(s.where) for s in self._models.values())

    def count(self, model_id: str) -> int:
        """How many distinct texts are cached for ``model_id``."""
        return len(self._shards(model_id).where)

    def lookup(self, model_id: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached vectors among ``hashes`` (text SHA-256 hex digests): hash -> float32 row.
        Hashes not in the cache are absent from the result."""
        shards = self._shards(model_id)
        found: dict[str, np.ndarray] = {}
        for h in hashes:
            loc = shards.where.get(h)
            if loc is not None:
                found[h] = shards.arrays[loc[0]][loc[1]]
        return found

    def store(self, model_id: str, hashes: Sequence[str], vectors: np.ndarray) -> int:
        """Write the rows of ``vectors`` under ``hashes`` as one new shard, skipping hashes
        already cached (and repeats within ``hashes``). Returns how many rows were written."""
        vectors = np.asarray(vectors)
        if vectors.ndim != 2 or vectors.shape[0] != len(hashes):
            raise ValueError(f"{len(hashes)} hashes but vectors of shape {vectors.shape}")
        for h in hashes:
            if not _HEX64.match(h):
                raise ValueError("hashes must be SHA-256 hex digests (see text_hash)")
        shards = self._shards(model_id)
        if shards.dim is not None and vectors.shape[1] != shards.dim:
            raise EmbedderError(
                f"model {model_id}: vectors of dimension {vectors.shape[1]} cannot join a "
                f"cache of dimension {shards.dim} in {self.model_dir(model_id)}"
            )
        keep: list[int] = []
        seen: set[str] = set()
        for i, h in enumerate(hashes):
            if h not in shards.where and h not in seen:
                seen.add(h)
                keep.append(i)
        if not keep:
            return 0
        keys = [hashes[i] for i in keep]
        rows = np.ascontiguousarray(vectors[keep], dtype=np.float32)
        folder = self.model_dir(model_id)
        folder.mkdir(parents=True, exist_ok=True)
        meta_path = folder / "model.json"
        if not meta_path.is_file():
            atomic_write_text(meta_path, json.dumps({"model_id": model_id, "format": CACHE_FORMAT}) + "\n")
        number = _reserve_shard(folder, shards.max_shard + 1)
        atomic_save_npy(folder / f"vectors-{number:06d}.npy", rows)
        atomic_write_text(folder / f"keys-{number:06d}.json", json.dumps(keys) + "\n")
        shards.max_shard = number
        shards.add(keys, rows)
        log.debug("embedding cache %s: stored %d vectors in shard %d", folder, len(keys), number)
        return len(keys)


def _reserve_shard(folder: Path, number: int) -> int:
    """The first shard number from ``number`` up that no other writer holds, reserved by
    creating its (empty) vectors file exclusively, so two processes filling one cache at
    once (parallel or Ray indexing) never pair one's keys with the other's vectors. An empty
    vectors file without keys is ignored by readers."""
    while True:
        if not (folder / f"keys-{number:06d}.json").exists():
            try:
                os.close(os.open(folder / f"vectors-{number:06d}.npy", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                return number
            except FileExistsError:
                pass
        number += 1


def embed_with_cache(
    embedder: Embedder,
    texts: Sequence[str],
    cache: EmbeddingCache,
    *,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Embed ``texts`` with ``embedder``, taking what ``cache`` holds and embedding (then
    storing, as one new shard) only the rest; each distinct missing text is embedded once.

    Returns float32 ``(len(texts), dim)`` in input order. When every text is cached the
    embedder is not called at all (and a lazily loaded model is not even loaded). ``progress``
    gets a cumulative count of ``texts`` done: first the cached ones, then after each batch,
    ending at ``len(texts)``.
    """
    model_id = embedder.model_id
    hashes = [text_hash(t) for t in texts]
    found = cache.lookup(model_id, hashes)
    miss_hashes: list[str] = []
    miss_texts: list[str] = []
    seen: set[str] = set()
    for h, t in zip(hashes, texts):
        if h not in found and h not in seen:
            seen.add(h)
            miss_hashes.append(h)
            miss_texts.append(t)
    n_cached = sum(1 for h in hashes if h in found)
    log.debug("embedding %d texts with %s: %d cached, %d to embed", len(texts), model_id, n_cached, len(miss_texts))
    if not texts:
        dim = cache.dim(model_id)
        return np.zeros((0, dim if dim is not None else embedder.dim), dtype=np.float32)
    if progress is not None and n_cached:
        progress(n_cached)
    if miss_texts:
        inner = None if progress is None else (lambda k: progress(min(n_cached + k, len(texts))))
        fresh = embedder.embed(miss_texts, batch_size=batch_size, progress=inner)
        fresh = np.asarray(fresh, dtype=np.float32)
        cache.store(model_id, miss_hashes, fresh)
        found.update(zip(miss_hashes, fresh))
        if progress is not None and n_cached + len(miss_texts) < len(texts):
            progress(len(texts))  # repeats of a missing text finished with it
    return np.stack([found[h] for h in hashes]).astype(np.float32, copy=False)
