"""The experiment configuration read by ``ragehr eval CONFIG.yaml``.

A grid: datasets x strategies x budgets x retrievers (``rag`` only) x backends, plus the
expected figures the runner checks (printing OK or FAIL for each). Relative paths in datasets
are taken from ``data_root`` (default ``../shared/data``; ``$RAGEHR_SHARED_DATA`` overrides it).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ragehr.config import IndexConfig, RetrievalConfig, model_from_yaml
from ragehr.eval.datasets import DatasetSpec

_STRICT = ConfigDict(frozen=True, extra="forbid")


class BackendSpec(BaseModel):
    model_config = _STRICT

    name: str
    settings: dict[str, Any] = {}
    label: str | None = None
    """How the backend is named in results (default: its name)."""
    budgets: tuple[int, ...] | None = None
    """This backend's budgets, when not the experiment's or the strategy's (a slow local model
    on a CPU may run a subset)."""
    retrievers: tuple[Literal["hybrid", "bm25", "dense"], ...] | None = None
    """This backend's retrievers for ``rag``, when not the experiment's."""
    strategies: tuple[Literal["rag", "visit-bm25", "recent", "full"], ...] | None = None
    """This backend's strategies (a subset of the experiment's), when not all of them."""
    orders: tuple[Literal["chronological", "relevance", "edges"], ...] | None = None
    """This backend's evidence orders for ``rag``, when not the experiment's."""
    answers: tuple[Literal["generated", "computed", "auto"], ...] | None = None
    """This backend's answer modes, when not the experiment's."""

    @property
    def key(self) -> str:
        return self.label or self.name


class Expectation(BaseModel):
    """An expected figure: ``metric`` of the condition(s) matching ``where`` compared with
    ``value``. With several matching conditions, each must pass."""

    model_config = _STRICT

    metric: str
    where: dict[str, Any] = {}
    op: Literal[">=", "<=", ">", "<", "=="] = ">="
    value: float
    tol: float = Field(1e-9, ge=0)
    """For ``==``: how far the figure may be from ``value`` (``0.005`` checks a figure printed
    with two decimals)."""
    note: str | None = None


class ExperimentConfig(BaseModel):
    model_config = _STRICT

    name: str = Field(pattern=r"^[A-Za-z0-9._-]+$")
    description: str | None = None
    seed: int = 0
    data_root: str = "../shared/data"
    index_dir: str = "indexes"
    results_dir: str = "results"
    index: IndexConfig = IndexConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    datasets: tuple[DatasetSpec, ...]
    strategies: tuple[Literal["rag", "visit-bm25", "recent", "full"], ...]
    budgets: tuple[int, ...] = (2048,)
    """Context windows in tokens (prompt + answer); ``full`` uses each backend's whole window."""
    strategy_budgets: dict[Literal["rag", "visit-bm25", "recent"], tuple[int, ...]] = {}
    """A strategy's budgets when not the experiment's (nor a backend's): e.g. ``recent`` at
    both the small window and the model's whole window, ``rag`` only at the small one."""
    retrievers: tuple[Literal["hybrid", "bm25", "dense"], ...] = ("hybrid",)
    backends: tuple[BackendSpec, ...]
    max_new_tokens: int = Field(256, ge=1)
    question_reserve: int | None = Field(None, ge=1)
    """Tokens set aside for every question (see :class:`ragehr.pipeline.spec.ContextSpec`):
    ``recent`` and ``full`` then pack the same evidence for all of a record's questions, which
    a prefix cache (the ``llamacpp`` backend's ``reuse_prefix``) computes once."""
    order: Literal["chronological", "relevance", "edges"] = "chronological"
    """How packed pieces are shown (every strategy; see :mod:`ragehr.packing`)."""
    orders: tuple[Literal["chronological", "relevance", "edges"], ...] | None = None
    """An ablation axis for ``rag``: each order is its own condition (default: ``order``)."""
    answers: tuple[Literal["generated", "computed", "auto"], ...] = ("generated",)
    """An ablation axis: how each question is answered (:mod:`ragehr.pipeline.ask`):
    ``generated`` (the backend alone, the baseline), ``computed`` (from the record's structured
    events; a declined question counts as an abstention) or ``auto`` (computed where it applies,
    else the backend with the Self-Route retry). Each mode is its own condition; the backend
    still sets the tokenizer and window for ``computed``."""
    bootstrap_resamples: int = Field(1000, ge=100)
    text_metrics: tuple[Literal["rouge_l", "chrf", "bertscore"], ...] = ("rouge_l", "chrf")
    """Free-text metrics against reference answers (:mod:`ragehr.eval.metrics.registry`):
    ``bertscore`` is the BERTScore-style F1 with MiniLM token embeddings (loads MiniLM)."""
    judge: BackendSpec | None = None
    """An ``openai`` backend to score answers 1-5 for accuracy, completeness and clarity."""
    ratings: str | None = None
    """A CSV of human ratings (``item_id``, ``backend``, ``strategy``, ``rating``) for Kendall's tau."""
    expected: tuple[Expectation, ...] = ()

    @field_validator("backends", "judge", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"name": v}
        if isinstance(v, (list, tuple)):
            return [{"name": b} if isinstance(b, str) else b for b in v]
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if v in (".", ".."):
            raise ValueError("the experiment name names its results folder: '.' and '..' are not folder names")
        return v

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(b < 128 for b in v):
            raise ValueError("budgets are context windows and must be at least 128 tokens")
        return v

    @field_validator("strategy_budgets")
    @classmethod
    def _strategy_budgets(cls, v: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
        for strategy, budgets in v.items():
            if not budgets or any(b < 128 for b in budgets):
                raise ValueError(f"strategy_budgets.{strategy}: give context windows of at least 128 tokens")
        return v

    def data_path(self) -> Path:
        return Path(os.environ.get("RAGEHR_SHARED_DATA") or self.data_root)

    @classmethod
    def from_file(cls, path: str | Path) -> ExperimentConfig:
        return model_from_yaml(cls, path)
