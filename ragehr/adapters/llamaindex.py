"""A llama-index retriever over a patient's ragehr index.

``RagehrRetriever`` is a ``llama_index.core.retrievers.BaseRetriever``: llama-index's
``retrieve()`` does its plumbing (callbacks, instrumentation) and calls ``_retrieve()``, which
here calls :func:`ragehr.index.search.search` once and turns each ranked chunk into a
``NodeWithScore(TextNode)`` whose id is the chunk id and whose score is the fused score.

What this module does not do: it never calls an LLM or an embedding model of llama-index's,
never reaches the network, and never touches llama-index's global ``Settings``. Queries are
embedded (for dense and hybrid retrieval) by the embedder recorded in the index manifest,
exactly as ``ragehr retrieve`` does. Nodes carry no embedding.

Only this module imports llama-index; the core never imports it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llama_index.core.callbacks import CallbackManager
from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from ragehr.config import RetrievalConfig
from ragehr.errors import ConfigError
from ragehr.index.search import PatientIndex, RetrievedChunk, load_patient_index
from ragehr.index.search import search as ragehr_search
from ragehr.retrieval.intent import QuestionPlan
from ragehr.retrieval.timefilter import parse_date_option
from ragehr.types import EventKind

__all__ = ["METADATA_KEYS", "VISIBLE_METADATA_KEYS", "RagehrRetriever", "to_node"]

METADATA_KEYS: tuple[str, ...] = (
    "chunk_id",
    "patient_id",
    "kind",
    "start",
    "end",
    "sources",
    "event_ids",
    "visit_id",
    "note_type",
    "title",
    "rank",
    "components",
)
"""The metadata every node carries, in this order."""

VISIBLE_METADATA_KEYS: tuple[str, ...] = ("kind", "start", "end")
"""Metadata shown by default to LLMs and embedders (``MetadataMode.LLM`` / ``EMBED``); the
rest (ids, source locators, scores) is kept on the node but left out of their text."""


def to_node(rc: RetrievedChunk, visible_keys: Iterable[str] = VISIBLE_METADATA_KEYS) -> NodeWithScore:
    """One ranked chunk as a llama-index node: id = chunk id, score = the hit's score."""
    c, h = rc.chunk, rc.hit
    metadata: dict[str, Any] = {
        "chunk_id": c.chunk_id,
        "patient_id": c.patient_id,
        "kind": c.kind.value,
        "start": c.start.isoformat() if c.start else None,
        "end": c.end.isoformat() if c.end else None,
        "sources": list(c.sources),
        "event_ids": list(c.event_ids),
        "visit_id": c.visit_id,
        "note_type": c.note_type,
        "title": c.title,
        "rank": h.rank,
        "components": dict(h.components),
    }
    visible = set(visible_keys)
    hidden = [key for key in METADATA_KEYS if key not in visible]
    node = TextNode(
        id_=c.chunk_id,
        text=c.text,
        metadata=metadata,
        excluded_embed_metadata_keys=hidden,
        excluded_llm_metadata_keys=list(hidden),
    )
    return NodeWithScore(node=node, score=h.score)


def _as_datetime(value: datetime | str | None, name: str, *, end: bool = False) -> datetime | None:
    """A bound as given, or parsed like ``--since``/``--until``; naive times are read as UTC,
    as the CLI reads dates."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return parse_date_option(value, end=end)
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    raise ConfigError(f"{name}: expected a datetime or a date string, got {type(value).__name__}")


def _as_kinds(kinds: Collection[EventKind | str] | None) -> frozenset[EventKind] | None:
    if not kinds:
        return None
    if isinstance(kinds, str):
        kinds = [kinds]
    out = set()
    for k in kinds:
        try:
            out.add(k if isinstance(k, EventKind) else EventKind(str(k).strip().lower()))
        except ValueError:
            names = ", ".join(e.value for e in EventKind)
            raise ConfigError(f"unknown kind {k!r}; use any of: {names}") from None
    return frozenset(out)


class RagehrRetriever(BaseRetriever):
    """Retrieve a patient's chunks through ragehr's BM25 / dense / hybrid search.

    Built from an opened :class:`~ragehr.index.search.PatientIndex` (load it once, query many
    times) or with :meth:`from_index_dir`. The search options are fixed per retriever and
    passed unchanged to :func:`ragehr.index.search.search` for every query:

    - ``config``: a :class:`~ragehr.config.RetrievalConfig` (fusion, weights, candidates...);
    - ``k``, ``retriever`` (``hybrid``, ``bm25`` or ``dense``): override ``config``;
    - ``since``, ``until``: datetimes, or ``YYYY[-MM[-DD]]``/ISO strings as on the command line;
      when both are unset, time read from the question ("last 6 months") applies, unless
      ``use_question_time=False``;
    - ``kinds``: event kinds (``EventKind`` or their string values) to keep.

    Nodes come back in rank order with ``score`` = the hit's fused score and metadata
    :data:`METADATA_KEYS`; ``metadata_visible_keys`` picks which of them LLMs and embedders
    see (default :data:`VISIBLE_METADATA_KEYS`).
    """

    def __init__(
        self,
        index: PatientIndex,
        *,
        config: RetrievalConfig | None = None,
        k: int | None = None,
        retriever: str | None = None,
        since: datetime | str | None = None,
        until: datetime | str | None = None,
        kinds: Collection[EventKind | str] | None = None,
        use_question_time: bool = True,
        metadata_visible_keys: Iterable[str] = VISIBLE_METADATA_KEYS,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(index, PatientIndex):
            raise ConfigError(
                f"RagehrRetriever needs an opened PatientIndex, got {type(index).__name__}; "
                "use RagehrRetriever.from_index_dir(index_dir, patient_id) to open one"
            )
        self.config = config or RetrievalConfig()
        if k is not None and k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        name = retriever or self.config.retriever
        if name not in ("hybrid", "bm25", "dense"):
            raise ConfigError(f"unknown retriever {name!r}; use hybrid, bm25 or dense")
        if name != "bm25" and (index.dense is None or index.embedder is None):
            raise ConfigError(
                f"retriever {name!r} needs the index's dense side, but it was opened without it; "
                "open it with need_dense=True or use retriever='bm25'"
            )
        visible = tuple(metadata_visible_keys)
        unknown = [key for key in visible if key not in METADATA_KEYS]
        if unknown:
            raise ConfigError(f"unknown metadata keys {unknown}; use any of: {', '.join(METADATA_KEYS)}")
        self.index = index
        self.k = k or self.config.k
        self.retriever = name
        self.since = _as_datetime(since, "since")
        self.until = _as_datetime(until, "until", end=True)
        self.kinds = _as_kinds(kinds)
        self.use_question_time = use_question_time
        self.metadata_visible_keys = visible
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    @classmethod
    def from_index_dir(
        cls,
        index_dir: str | Path,
        patient_id: str,
        *,
        embedder: Any = None,
        verify: bool = True,
        **search_kwargs: Any,
    ) -> RagehrRetriever:
        """Open ``index_dir``'s index of ``patient_id`` and wrap it. The dense side (and the
        embedder recorded in the manifest, or ``embedder`` if given) is loaded unless the
        retriever asked for, directly or through ``config``, is ``bm25``."""
        config = search_kwargs.get("config") or RetrievalConfig()
        name = search_kwargs.get("retriever") or config.retriever
        index = load_patient_index(index_dir, patient_id, need_dense=name != "bm25", embedder=embedder, verify=verify)
        return cls(index, **search_kwargs)

    @property
    def patient_id(self) -> str:
        return self.index.patient_id

    def search(self, query: str) -> tuple[list[RetrievedChunk], QuestionPlan]:
        """ragehr's own result for ``query`` under this retriever's options: the ranked
        chunks and the plan applied (intent, time window, fallback)."""
        return ragehr_search(
            self.index,
            query,
            config=self.config,
            k=self.k,
            retriever=self.retriever,
            since=self.since,
            until=self.until,
            kinds=self.kinds,
            use_question_time=self.use_question_time,
        )

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits, _window = self.search(query_bundle.query_str)
        return [to_node(rc, self.metadata_visible_keys) for rc in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Search is in-memory and fast; running it inline keeps results identical to sync.
        return self._retrieve(query_bundle)
