"""What the web page serves, without the web: known patients, opened indexes and backends
(each in a small bounded cache), and one question answered through the shared pipeline.

Every request is built the way the CLI builds it: a :class:`~ragehr.pipeline.spec.ContextSpec`
from the config plus the request's overrides, a backend from
:func:`~ragehr.llm.registry.backend_from_config`, then
:func:`~ragehr.pipeline.ask.ask` or :func:`~ragehr.pipeline.spec.prepare_context`. This module
imports no web framework; :mod:`ragehr.serve.app` does.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragehr.config import RagehrConfig
from ragehr.errors import ConfigError, IndexNotFoundError
from ragehr.index.search import PatientIndex, load_patient_index
from ragehr.index.store import list_manifests
from ragehr.llm.base import LLMBackend
from ragehr.llm.registry import BACKENDS, backend_from_config, canonical_name
from ragehr.pipeline.ask import AskResult, ask
from ragehr.pipeline.context import STRATEGIES
from ragehr.pipeline.spec import ORDERS, RETRIEVERS, ContextSpec, PreparedContext, prepare_context
from ragehr.types import IndexManifest

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 2000
"""A question longer than this is refused (a clinician's question is a sentence or two)."""
BUDGET_CHOICES = (1024, 2048, 4096, 8192, 16384, 32768)
"""The budgets the page offers; the API takes any budget ContextSpec accepts."""
THREAD_SAFE_BACKENDS = frozenset({"fake", "extractive", "openai"})
"""Backends without a ``thread_safe`` attribute that may answer several requests at once."""
"""Backends whose ``generate`` may be called from several threads at once (``local`` holds its
own run lock; ``openai`` its per-server semaphore). Any other backend gets a lock of its own
here, so two questions never drive it at the same time."""
MANIFEST_TTL_S = 5.0
"""How long the list of indexed patients is reused before the index folder is looked at again
(sooner when the folder itself changed)."""


@dataclass(frozen=True)
class ServeOptions:
    """How ``ragehr serve`` was started (none of this comes from a request)."""

    index_dir: Path
    config: RagehrConfig = field(default_factory=RagehrConfig)
    backend: str | None = None
    """The backend the page selects first (default: the config's ``llm.backend``)."""
    backends: tuple[str, ...] = BACKENDS
    """The backends a request may choose."""
    model_path: str | None = None
    base_url: str | None = None
    model: str | None = None
    cache_generations: bool = True
    max_indexes: int = 4
    max_backends: int = 4
    workers: int = 4
    """Threads answering questions at the same time."""

    def __post_init__(self) -> None:
        # aliases (local = llamacpp, hf = transformers) are offered under their canonical names;
        # unknown names are left for check() to report
        def canon(name: str) -> str:
            try:
                return canonical_name(name)
            except ConfigError:
                return name.strip().lower()

        object.__setattr__(self, "backends", tuple(dict.fromkeys(canon(b) for b in self.backends)))
        if self.backend:
            object.__setattr__(self, "backend", canon(self.backend))

    @property
    def default_backend(self) -> str:
        """``backend`` when given, else the config's when offered, else the first offered."""
        if self.backend:
            return self.backend.strip().lower()
        try:
            configured = canonical_name(self.config.llm.backend)
        except ConfigError:
            configured = self.config.llm.backend.strip().lower()
        return configured if configured in self.backends else self.backends[0]

    def check(self) -> None:
        if not self.backends:
            raise ConfigError("no backend offered")
        unknown = [b for b in self.backends if b not in BACKENDS]
        if unknown:
            raise ConfigError(f"unknown backend(s) {', '.join(unknown)} (valid: {', '.join(BACKENDS)})")
        if self.default_backend not in self.backends:
            raise ConfigError(
                f"the default backend {self.default_backend!r} is not among the offered ones ({', '.join(self.backends)})"
            )
        if not 1 <= self.workers <= 64:
            raise ConfigError(f"workers must be between 1 and 64, not {self.workers}")


@dataclass(frozen=True)
class AskParams:
    """One request's choices, before they are checked."""

    patient_id: str
    question: str
    strategy: str | None = None
    budget: int | None = None
    backend: str | None = None
    retriever: str | None = None
    order: str | None = None
    max_new_tokens: int | None = None
    answer: str | None = None
    """``auto``, ``computed`` or ``generated`` (default: the config's ``answer``)."""


class _LRU:
    """A small thread-safe least-recently-used map whose values are built once per key, even
    when two threads ask for the same missing key at once."""

    def __init__(self, size: int) -> None:
        self.size = max(1, size)
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._building: dict[Any, threading.Lock] = {}

    def get(self, key: Any, build: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            key_lock = self._building.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
            value = build()
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.size:
                    self._items.popitem(last=False)
                self._building.pop(key, None)
            return value

    def peek(self, key: Any) -> Any:
        """The value for ``key`` if it is cached (marked as recently used), else ``None``."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            return None

    def __len__(self) -> int:
        return len(self._items)


@dataclass
class _Backend:
    backend: LLMBackend
    lock: threading.Lock | None


class Service:
    """The server's state: options, the list of patients, and the caches."""

    def __init__(self, options: ServeOptions) -> None:
        options.check()
        self.options = options
        self._manifests: dict[str, IndexManifest] = {}
        self._scanned_at = -1e9
        self._scanned_mtime: float | None = None
        self._scan_lock = threading.Lock()
        self._indexes = _LRU(options.max_indexes)
        self._backends = _LRU(options.max_backends)

    # -- patients ----------------------------------------------------------------------
    def manifests(self) -> dict[str, IndexManifest]:
        """The indexed patients, by id (re-read when the folder changes, else every few s)."""
        d = self.options.index_dir
        try:
            mtime = os.stat(d).st_mtime
        except OSError:
            mtime = None
        now = time.monotonic()
        with self._scan_lock:
            if mtime != self._scanned_mtime or now - self._scanned_at > MANIFEST_TTL_S:
                self._manifests = {m.patient_id: m for m in list_manifests(d)}
                self._scanned_at, self._scanned_mtime = now, mtime
            return self._manifests

    def manifest(self, patient_id: str) -> IndexManifest:
        """The manifest of an indexed patient; any other id (a path, a typo) is refused here,
        before anything touches the disk with it."""
        m = self.manifests().get(patient_id)
        if m is None:
            raise IndexNotFoundError(f"no indexed patient with that id in {self.options.index_dir}/")
        return m

    def index(self, patient_id: str, need_dense: bool) -> PatientIndex:
        m = self.manifest(patient_id)
        key = (patient_id, m.built_at, m.config_hash)
        if not need_dense:  # an index opened with its dense side serves BM25-only use too
            opened = self._indexes.peek((*key, True))
            if opened is not None:
                return opened
        return self._indexes.get(
            (*key, need_dense), lambda: load_patient_index(self.options.index_dir, patient_id, need_dense=need_dense)
        )

    # -- requests ----------------------------------------------------------------------
    def spec(self, p: AskParams) -> ContextSpec:
        for value, choices, what in (
            (p.strategy, STRATEGIES, "strategy"),
            (p.retriever, RETRIEVERS, "retriever"),
            (p.order, ORDERS, "order"),
        ):
            if value is not None and value not in choices:
                raise ConfigError(f"{what} must be one of {', '.join(choices)}")
        return ContextSpec.from_config(
            self.options.config,
            strategy=p.strategy,
            budget=p.budget,
            retriever=p.retriever,
            order=p.order,
            max_new_tokens=p.max_new_tokens,
            answer=p.answer,
        )

    def check_question(self, question: str) -> str:
        if not question or not question.strip():
            raise ConfigError("the question is empty")
        if len(question) > MAX_QUESTION_CHARS:
            raise ConfigError(f"the question is longer than {MAX_QUESTION_CHARS} characters")
        return question.strip()

    def backend(self, name: str | None, spec: ContextSpec) -> _Backend:
        chosen = (name or self.options.default_backend).strip().lower()
        try:
            chosen = canonical_name(chosen)
        except ConfigError:
            pass  # reported just below, with the offered names
        if chosen not in self.options.backends:
            raise ConfigError(f"backend must be one of {', '.join(self.options.backends)}")
        o = self.options
        cache_dir = o.index_dir / ".cache" / "generations" if o.cache_generations else None

        def build() -> _Backend:
            be = backend_from_config(
                o.config.llm,
                chosen,
                window=spec.budget,
                model_path=o.model_path,
                base_url=o.base_url,
                model=o.model,
                cache_dir=cache_dir,
                model_cache_dir=o.index_dir / ".cache" / "models",
            )
            safe = getattr(be, "thread_safe", chosen in THREAD_SAFE_BACKENDS)
            return _Backend(be, None if safe else threading.Lock())

        return self._backends.get((chosen, spec.budget), build)

    def prepare(self, p: AskParams) -> tuple[PreparedContext, PatientIndex, LLMBackend]:
        """``context --json``: the evidence a strategy packs, without generating."""
        question = self.check_question(p.question)
        spec = self.spec(p)
        be = self.backend(p.backend, spec)
        idx = self.index(p.patient_id, spec.needs_dense)
        return prepare_context(idx, question, spec, be.backend), idx, be.backend

    def ask(self, p: AskParams, on_token: Callable[[str], None] | None = None) -> tuple[AskResult, PatientIndex]:
        """``ask --json``: the answer, its evidence and its grounding check. Blocking: the web
        layer runs it in a worker thread."""
        question = self.check_question(p.question)
        spec = self.spec(p)
        be = self.backend(p.backend, spec)
        idx = self.index(p.patient_id, spec.needs_dense)
        if be.lock is None:
            return ask(idx, question, be.backend, spec, on_token=on_token), idx
        with be.lock:
            return ask(idx, question, be.backend, spec, on_token=on_token), idx
