"""A caching wrapper around any backend: the same request is answered by the model once.

The key is the SHA-256 of a canonical JSON document holding everything that can change the
answer: the messages, the question and the evidence (marker, chunk id and a SHA-256 of the
text, for backends such as the extractive one that read evidence rather than messages), the
backend's name, model and :meth:`~ragehr.llm.base.LLMBackend.params`, and the request's
max_tokens, temperature, seed and stop strings. Each answer is stored as
``<cache_dir>/<key[:2]>/<key>.json``, written atomically (temporary file, fsync, rename).
A file that cannot be read or does not hold a valid answer for its key is ignored (with a
WARNING naming the key) and overwritten by the next answer.

Cache files hold the answer text and its costs, never the prompt. This module does not evict
entries, bound the cache's size or lock between processes (two writers of one key both write
a whole file; the last rename wins, and either file is a valid answer).
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ragehr.fsutil import atomic_write_text
from ragehr.llm.base import LLMBackend
from ragehr.tokens import TokenCounter
from ragehr.types.generation import Generation, GenerationRequest

__all__ = ["CACHE_FORMAT", "CachedBackend", "request_key"]

log = logging.getLogger(__name__)

CACHE_FORMAT = "ragehr-gencache-v1"
_READ_ONLY_ERRNOS = frozenset(
    {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
)
"""Write errors that make the cache read-only for the run (one warning), not a failed answer."""


def _key_document(inner: LLMBackend, request: GenerationRequest) -> dict[str, Any]:
    return {
        "format": CACHE_FORMAT,
        "backend": inner.name,
        "model": inner.model,
        "params": inner.params(),
        "messages": [[m.role, m.content] for m in request.messages],
        "question": request.question,
        "evidence": [
            [e.marker, e.chunk_id, hashlib.sha256(e.text.encode("utf-8", "surrogatepass")).hexdigest()]
            for e in request.evidence
        ],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "seed": request.seed,
        "stop": list(request.stop),
    }


def request_key(inner: LLMBackend, request: GenerationRequest) -> str:
    """The cache key (64 hex digits) of ``request`` sent to ``inner``."""
    doc = json.dumps(_key_document(inner, request), sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode("ascii")).hexdigest()


class CachedBackend(LLMBackend):
    """``inner`` with a file cache in ``cache_dir``. A hit returns the stored
    :class:`Generation` with ``cached=True`` (its ``seconds`` are those of the original call)
    and does not call the model. ``hits`` and ``misses`` count this instance's lookups."""

    def __init__(self, inner: LLMBackend, cache_dir: str | Path) -> None:
        self.inner = inner
        self.cache_dir = Path(cache_dir)
        self.hits = 0
        self.misses = 0
        self.read_only = False
        """Set (with one warning) when the cache folder cannot be written: it is then only read."""
        self._lock = threading.Lock()

    # Delegated attributes: the wrapper is the inner backend, as far as callers can tell.
    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def model(self) -> str:  # type: ignore[override]
        return self.inner.model

    @property
    def context_window(self) -> int:  # type: ignore[override]
        return self.inner.context_window

    @property
    def concurrency(self) -> int:  # type: ignore[override]
        return self.inner.concurrency

    def token_counter(self) -> TokenCounter:
        return self.inner.token_counter()

    def params(self) -> dict[str, Any]:
        return self.inner.params()

    def path_for(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _load(self, key: str) -> Generation | None:
        path = self.path_for(key)
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("generation cache entry %s unreadable (%s); ignoring it", key, type(exc).__name__)
            return None
        try:
            doc = json.loads(raw)
            if doc.get("format") != CACHE_FORMAT or doc.get("key") != key:
                raise ValueError("wrong format or key")
            return Generation.model_validate(doc["generation"])
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("generation cache entry %s is corrupt; ignoring it", key)
            return None

    def _store(self, key: str, gen: Generation) -> None:
        if self.read_only:
            return
        doc = {"format": CACHE_FORMAT, "key": key, "generation": gen.model_dump(mode="json")}
        try:
            atomic_write_text(self.path_for(key), json.dumps(doc, ensure_ascii=False, indent=1))
        except OSError as exc:
            if exc.errno not in _READ_ONLY_ERRNOS:
                raise
            # a shared, read-only index folder: answers still work, they are just not kept
            with self._lock:
                warn, self.read_only = not self.read_only, True
            if warn:
                log.warning(
                    "generation cache %s is not writable (%s); answers are not cached in this run",
                    self.cache_dir,
                    exc.strerror or type(exc).__name__,
                )

    def generate(self, request: GenerationRequest, on_token: Callable[[str], None] | None = None) -> Generation:
        key = request_key(self.inner, request)
        hit = self._load(key)
        if hit is not None:
            with self._lock:
                self.hits += 1
            if on_token is not None and hit.text:
                on_token(hit.text)
            return hit.model_copy(update={"cached": True})
        with self._lock:
            self.misses += 1
        gen = self.inner.generate(request, on_token=on_token).model_copy(update={"cached": False})
        self._store(key, gen)
        return gen

    def _generate(
        self, request: GenerationRequest, on_token: Callable[[str], None] | None = None
    ) -> Generation:  # pragma: no cover
        return self.generate(request, on_token=on_token)

    def __repr__(self) -> str:
        return f"CachedBackend({self.inner!r}, cache_dir={str(self.cache_dir)!r})"
