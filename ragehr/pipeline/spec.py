"""``ContextSpec``: what one question's context is built with, shared by every entry point.

The CLI (``context``, ``ask``), the batch mode, the eval runner and the web page all build a
:class:`ContextSpec` and call :func:`prepare_context`, so the same options mean the same thing
everywhere: strategy, window budget, retriever, evidence order, answer length and the
retrieval settings. Values come from the config (:class:`ragehr.config.RagehrConfig`) unless
an explicit override is given (:meth:`ContextSpec.from_config`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ragehr.config import RagehrConfig, RetrievalConfig
from ragehr.errors import ConfigError
from ragehr.index.search import PatientIndex
from ragehr.llm.base import LLMBackend
from ragehr.pipeline.context import STRATEGIES, ContextResult, build_context
from ragehr.prompts import Budget, compute_budget
from ragehr.tokens import TokenCounter
from ragehr.types import Chunk

__all__ = ["ANSWER_MODES", "ORDERS", "RETRIEVERS", "ContextSpec", "PreparedContext", "prepare_context"]

RETRIEVERS = ("hybrid", "bm25", "dense")
ANSWER_MODES = ("auto", "computed", "generated")
ORDERS = ("chronological", "relevance", "edges")
MAX_BUDGET = 1 << 20
"""No model has a window of a million tokens; a larger --budget is a typo."""


def _check_choice(value: str, choices: tuple[str, ...], what: str) -> None:
    if value not in choices:
        raise ConfigError(f"{what} must be one of {', '.join(choices)}, not {value!r}")


@dataclass(frozen=True)
class ContextSpec:
    """How one question's context is selected and sized.

    ``budget`` is the context window in tokens (prompt plus answer) for this question; ``None``
    means the backend's whole window (the ``full`` baseline's usual setting)."""

    strategy: str = "rag"
    budget: int | None = 2048
    retriever: str = "hybrid"
    order: str = "chronological"
    max_new_tokens: int = 256
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    answer: str = "generated"
    """How the question is answered (:data:`ragehr.pipeline.ask.ANSWER_MODES`): ``generated``
    (the backend), ``computed`` (from the record's structured events) or ``auto``. The
    config's ``answer`` key (default ``auto``) sets it for the CLI, batch and serve."""
    question_reserve: int | None = None
    """Tokens set aside for the question whatever its length (a longer question takes its own
    count). ``None``: the question's own count. With a reserve, ``recent`` and ``full`` pack
    the same evidence for every question about a record, and since the evidence comes before
    the question in the prompt, a prefix cache (llama.cpp's ``reuse_prefix``, vLLM's automatic
    prefix caching) computes the record once for all of them."""

    def __post_init__(self) -> None:
        _check_choice(self.strategy, STRATEGIES, "strategy")
        _check_choice(self.retriever, RETRIEVERS, "retriever")
        _check_choice(self.order, ORDERS, "order")
        _check_choice(self.answer, ANSWER_MODES, "answer")
        if self.budget is not None and not 64 <= self.budget <= MAX_BUDGET:
            raise ConfigError(f"budget must be between 64 and {MAX_BUDGET} tokens, not {self.budget}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")
        if self.question_reserve is not None and self.question_reserve < 1:
            raise ConfigError(f"question_reserve must be at least 1 token, not {self.question_reserve}")

    @classmethod
    def from_config(cls, cfg: RagehrConfig | None = None, **overrides: Any) -> ContextSpec:
        """The config's values (``retrieval.retriever``, ``llm.max_new_tokens``, ...), each
        replaced by an override that is not ``None``."""
        cfg = cfg or RagehrConfig()
        base = cls(
            retriever=cfg.retrieval.retriever,
            max_new_tokens=cfg.llm.max_new_tokens,
            retrieval=cfg.retrieval,
            answer=cfg.answer,
        )
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = sorted(set(given) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown context option(s): {', '.join(unknown)}")
        return replace(base, **given)

    def with_(self, **changes: Any) -> ContextSpec:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    @property
    def needs_dense(self) -> bool:
        """Whether the index must be opened with its dense side."""
        return self.strategy == "rag" and self.retriever != "bm25"

    def as_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "budget": self.budget,
            "retriever": self.retriever if self.strategy == "rag" else None,
            "order": self.order,
            "max_new_tokens": self.max_new_tokens,
            "answer": self.answer,
        }


@dataclass(frozen=True)
class PreparedContext:
    """The evidence for a question and how the window was shared out."""

    spec: ContextSpec
    window: int
    budget: Budget
    counter: TokenCounter
    context: ContextResult


def effective_window(backend: LLMBackend, budget: int | None) -> int:
    """The window a run uses: the spec's budget when given (never above the model's own)."""
    return min(budget, backend.context_window) if budget else backend.context_window


def prepare_context(
    index: PatientIndex,
    question: str,
    spec: ContextSpec,
    backend: LLMBackend,
    *,
    pinned: Sequence[Chunk] = (),
    then: Sequence[Chunk] = (),
) -> PreparedContext:
    """Select ``question``'s evidence from ``index`` as ``spec`` says, with tokens counted by
    ``backend``'s own tokenizer. The one path ``context``, ``ask``, batch and eval share.
    ``pinned``/``then``: see :func:`ragehr.pipeline.context.build_context`."""
    if not question or not question.strip():
        raise ConfigError("the question is empty")
    counter = backend.token_counter()
    window = effective_window(backend, spec.budget)
    b = compute_budget(question, window, spec.max_new_tokens, counter, question_reserve=spec.question_reserve)
    ctx = build_context(
        index,
        question,
        strategy=spec.strategy,
        budget_tokens=b.evidence,
        counter=counter,
        retriever=spec.retriever,
        order=spec.order,
        retrieval=spec.retrieval,
        pinned=pinned,
        then=then,
    )
    return PreparedContext(spec=spec, window=window, budget=b, counter=counter, context=ctx)
