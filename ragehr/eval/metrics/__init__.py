"""Evaluation metrics, by concern, and the registry the report reads.

- :mod:`.retrieval`: evidence recall at a budget (span level), recall@k, MRR, nDCG@k;
- :mod:`.answers`: short-answer scoring (extract one answer, compare strictly, abstentions);
- :mod:`.text`: free-text overlap (exact match, token F1, ROUGE-L, chrF++, embedding
  similarity, BERTScore-style F1 with MiniLM token embeddings);
- :mod:`.agreement`: Kendall's tau-b against human ratings.

:data:`REGISTRY` names every per-item metric a prediction row may carry, with how it is
aggregated over the items of a condition and whether higher is better; the report iterates it
instead of hard-coding metric names. Every function is pure; heavy libraries load only inside
the functions that need them (sacrebleu, scipy, and MiniLM through :mod:`ragehr.embeddings`).
COMET is not offered: ragehr ships no COMET checkpoint and computes no COMET score.
"""

from __future__ import annotations

from ragehr.eval.metrics.agreement import kendall_tau
from ragehr.eval.metrics.answers import (
    UNIT_ABS_TOL,
    NumberMention,
    count_match,
    date_match,
    extract_answer,
    find_number_mentions,
    first_sentence,
    is_abstention,
    list_f1,
    list_match,
    numeric_match,
    parse_yes_no,
    score_answer,
    yes_no_match,
)
from ragehr.eval.metrics.registry import REGISTRY, Metric, metric, text_metric_names
from ragehr.eval.metrics.retrieval import evidence_recall, evidence_recall_ids, mrr, ndcg_at_k, recall_at_k
from ragehr.eval.metrics.text import (
    bertscore_f1_minilm,
    chrf_pp,
    embedding_similarity_minilm,
    exact_match,
    normalize_text,
    rouge_l,
    token_f1,
)

__all__ = [
    "REGISTRY",
    "UNIT_ABS_TOL",
    "Metric",
    "NumberMention",
    "bertscore_f1_minilm",
    "chrf_pp",
    "count_match",
    "date_match",
    "embedding_similarity_minilm",
    "evidence_recall",
    "evidence_recall_ids",
    "exact_match",
    "extract_answer",
    "find_number_mentions",
    "first_sentence",
    "is_abstention",
    "kendall_tau",
    "list_f1",
    "list_match",
    "metric",
    "mrr",
    "ndcg_at_k",
    "normalize_text",
    "numeric_match",
    "parse_yes_no",
    "recall_at_k",
    "rouge_l",
    "score_answer",
    "text_metric_names",
    "token_f1",
    "yes_no_match",
]
