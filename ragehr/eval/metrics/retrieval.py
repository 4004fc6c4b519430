"""Retrieval metrics against gold evidence: evidence recall at a budget (span level: is the
gold fact's own text inside the packed text?), recall@k, MRR and nDCG@k over ranked chunks.

Each scores one question; the caller averages. They return ``None`` when the question has no
gold evidence (a negative such as an ``ever_prescribed`` "no"), so such questions drop out of
the average instead of counting as 0 or 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["evidence_recall", "evidence_recall_ids", "mrr", "ndcg_at_k", "recall_at_k"]


def _gold_set(gold: Iterable[str]) -> set[str]:
    return set(gold)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def _squash(text: str) -> str:
    return " ".join(text.split()).casefold()


def evidence_recall(packed_text: str, gold_texts: Sequence[str], shown: Sequence[bool] | None = None) -> float | None:
    """Span-level evidence recall: the share of the distinct gold facts whose own text (the
    rendered event line, or the planted sentence) is inside ``packed_text`` (the text the model
    is shown), compared with whitespace runs collapsed and case folded.

    A cut piece, or one chunk of a long note, is credited only with the facts whose text it
    actually shows. ``shown`` (parallel to ``gold_texts``) marks facts known to be in the
    packed text in another form: a row of a per-concept series table, which shows the fact's
    date and value under the table's title rather than as the fact's own line. ``None`` when
    ``gold_texts`` is empty."""
    if shown is not None and len(shown) != len(gold_texts):
        raise ValueError(f"shown has {len(shown)} flags for {len(gold_texts)} gold texts")
    found: dict[str, bool] = {}
    hay = _squash(packed_text)
    for i, t in enumerate(gold_texts):
        if not t.strip():
            continue
        g = _squash(t)
        found[g] = found.get(g, False) or bool(shown and shown[i]) or g in hay
    if not found:
        return None
    return sum(found.values()) / len(found)


def evidence_recall_ids(packed_event_ids: Iterable[str], gold: Sequence[str]) -> float | None:
    """Share of the distinct gold event ids among ``packed_event_ids``
    (``|set(gold) & set(packed)| / |set(gold)|``); ``None`` when ``gold`` is empty.

    Only as fine as the ids the packed pieces carry: use :func:`evidence_recall` on the packed
    text when the gold facts' text is known."""
    g = _gold_set(gold)
    if not g:
        return None
    return len(g & set(packed_event_ids)) / len(g)


def recall_at_k(ranked: Sequence[Sequence[str]], gold: Sequence[str], k: int) -> float | None:
    """Share of the distinct gold event ids held by the first ``k`` ranked chunks.

    ``ranked[i]`` is the event ids of the chunk at rank ``i + 1``. A ranking shorter than ``k``
    is used whole. ``None`` when ``gold`` is empty."""
    _check_k(k)
    g = _gold_set(gold)
    if not g:
        return None
    seen: set[str] = set()
    for chunk in ranked[:k]:
        seen.update(chunk)
    return len(g & seen) / len(g)


def mrr(ranked: Sequence[Sequence[str]], gold: Sequence[str]) -> float | None:
    """Reciprocal rank of the first chunk that holds any gold event id (``1/rank``, ranks from
    1); 0.0 when no chunk does; ``None`` when ``gold`` is empty.

    This is one question's reciprocal rank; the mean over questions is the MRR."""
    g = _gold_set(gold)
    if not g:
        return None
    for rank, chunk in enumerate(ranked, start=1):
        if g.intersection(chunk):
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[Sequence[str]], gold: Sequence[str], k: int) -> float | None:
    """Binary-relevance nDCG over the first ``k`` chunks; ``None`` when ``gold`` is empty.

    - Relevance: the chunk at rank ``i`` (from 1) has gain 1 when it holds at least one gold
      event id *not already held by a higher-ranked chunk*, else 0. Without that novelty
      condition, overlapping chunks (one event in two chunks) could push nDCG above 1; when no
      two chunks share a gold id it is exactly "holds >= 1 gold id".
    - ``DCG@k = sum_i gain_i / log2(i + 1)``.
    - Ideal: ``IDCG@k = sum_{i=1}^{m} 1 / log2(i + 1)`` with ``m = min(k, |set(gold)|)``: the
      best case is one gold event per chunk, all at the top.

    So the value lies in [0, 1]. When several gold events share one chunk, fewer than ``m``
    relevant positions can exist and even a perfect ranking scores below 1 (e.g. 3 gold events
    in 1 chunk ranked first: ``1 / (1 + 1/log2 3 + 1/2) = 0.469``); this penalises chunkers that
    bundle evidence, which :func:`recall_at_k` does not, so read the two together.
    """
    _check_k(k)
    g = _gold_set(gold)
    if not g:
        return None
    covered: set[str] = set()
    dcg = 0.0
    for rank, chunk in enumerate(ranked[:k], start=1):
        new = (g & set(chunk)) - covered
        if new:
            dcg += 1.0 / math.log2(rank + 1)
            covered |= new
    m = min(k, len(g))
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, m + 1))
    return dcg / idcg
