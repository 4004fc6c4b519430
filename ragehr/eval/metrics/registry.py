"""The metric registry: every per-item metric a prediction row may carry, with how a condition
aggregates it and which direction is better. The report and the plots iterate this instead of
hard-coding metric names, and the experiment config's ``text_metrics`` are checked against it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["REGISTRY", "Metric", "metric", "text_metric_names"]

Aggregation = Literal["mean"]


@dataclass(frozen=True)
class Metric:
    name: str
    """The key in a prediction row (and in ``metrics.json``)."""
    label: str
    kind: Literal["answer", "retrieval", "text", "judge"]
    aggregation: Aggregation
    """How a condition's value is made from its items' values: ``mean`` (with a bootstrap
    95% CI; items without a value, such as negatives for evidence recall, are left out)."""
    higher_is_better: bool
    description: str
    batch: Callable[[Sequence[str], Sequence[str]], list[float]] | None = None
    """For text metrics: ``(predictions, references) -> one value per pair``."""


def _rouge_l(preds: Sequence[str], refs: Sequence[str]) -> list[float]:
    from ragehr.eval.metrics.text import rouge_l

    return [rouge_l(p, r) for p, r in zip(preds, refs)]


def _chrf(preds: Sequence[str], refs: Sequence[str]) -> list[float]:
    from ragehr.eval.metrics.text import chrf_pp

    return [chrf_pp(p, r) for p, r in zip(preds, refs)]


def _bertscore(preds: Sequence[str], refs: Sequence[str]) -> list[float]:
    from ragehr.eval.metrics.text import bertscore_f1_minilm

    return bertscore_f1_minilm(preds, refs)


_ALL = (
    Metric(
        "accuracy",
        "accuracy",
        "answer",
        "mean",
        True,
        "strict short-answer accuracy (ragehr.eval.metrics.answers.score_answer); list items: F1",
    ),
    Metric(
        "abstained",
        "abstention rate",
        "answer",
        "mean",
        False,
        "share of answers that decline to answer (never counted correct)",
    ),
    Metric(
        "evidence_recall",
        "evidence recall",
        "retrieval",
        "mean",
        True,
        "share of gold facts whose own text is inside the packed context (model-free)",
    ),
    Metric("recall@10", "recall@10", "retrieval", "mean", True, "gold events in the top 10 chunks (rag only)"),
    Metric("mrr", "MRR", "retrieval", "mean", True, "reciprocal rank of the first gold chunk (rag only)"),
    Metric("ndcg@10", "nDCG@10", "retrieval", "mean", True, "binary-relevance nDCG over 10 chunks (rag only)"),
    Metric("rouge_l", "ROUGE-L", "text", "mean", True, "ROUGE-L F against the reference answer", _rouge_l),
    Metric("chrf", "chrF++", "text", "mean", True, "chrF++ (sacrebleu) against the reference answer", _chrf),
    Metric(
        "bertscore",
        "BERTScore-style F1 (MiniLM)",
        "text",
        "mean",
        True,
        "greedy token-alignment F1 with all-MiniLM-L6-v2 token embeddings (not roberta-large)",
        _bertscore,
    ),
    Metric("judge_accuracy", "judge accuracy", "judge", "mean", True, "LLM judge, 1-5"),
    Metric("judge_completeness", "judge completeness", "judge", "mean", True, "LLM judge, 1-5"),
    Metric("judge_clarity", "judge clarity", "judge", "mean", True, "LLM judge, 1-5"),
)

REGISTRY: dict[str, Metric] = {m.name: m for m in _ALL}


def metric(name: str) -> Metric:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown metric {name!r}; known: {', '.join(REGISTRY)}") from None


def text_metric_names() -> tuple[str, ...]:
    return tuple(m.name for m in _ALL if m.kind == "text")
