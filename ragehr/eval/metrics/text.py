"""Free-text metrics: normalisation, exact match, token F1, ROUGE-L, chrF++, embedding
similarity and a BERTScore-style F1 with MiniLM token embeddings.

Pure functions over strings. Heavy libraries load only inside the functions that need them:
:func:`chrf_pp` imports ``sacrebleu``; :func:`bertscore_f1_minilm` gets MiniLM token
embeddings from :mod:`ragehr.embeddings.tokens` (the one owner of sentence-transformers).
COMET is not computed (no local checkpoint ships with ragehr), so it is not offered.
"""

from __future__ import annotations

import functools
import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ragehr.patterns import CITATION_MARKER as _MARKER

if TYPE_CHECKING:
    from ragehr.embeddings import Embedder

__all__ = [
    "bertscore_f1_minilm",
    "chrf_pp",
    "contains_phrase",
    "embedding_similarity_minilm",
    "exact_match",
    "normalize_text",
    "phrase_regex",
    "rouge_l",
    "token_f1",
    "words",
]

# ---------------------------------------------------------------------------------------------
# Text normalisation, exact match, token F1
# ---------------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_text(s: str) -> str:
    """SQuAD-style normalisation: lowercase, delete ASCII punctuation (so ``mm[Hg]`` becomes
    ``mmhg`` and ``7.5`` becomes ``75``), drop the articles a/an/the, collapse whitespace.
    Citation markers ``[n]`` are removed first."""
    s = _MARKER.sub(" ", s).lower()
    s = "".join(ch for ch in s if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def exact_match(pred: str, gold: str) -> bool:
    """Whether the two strings are equal after :func:`normalize_text`."""
    return normalize_text(pred) == normalize_text(gold)


def token_f1(pred: str, gold: str) -> float:
    """SQuAD token F1 over :func:`normalize_text` tokens (bag of words, with multiplicity).
    1.0 when both are empty, 0.0 when only one is."""
    p = normalize_text(pred).split()
    g = normalize_text(gold).split()
    if not p or not g:
        return float(p == g)
    common = sum((Counter(p) & Counter(g)).values())
    if common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(g)
    return 2 * prec * rec / (prec + rec)


def words(s: str) -> list[str]:
    """Lowercase alphanumeric runs: the tokens of :func:`rouge_l` and of phrase matching."""
    return re.findall(r"[a-z0-9]+", s.lower())


def phrase_regex(phrase: str) -> re.Pattern[str] | None:
    """A regex finding ``phrase``'s alphanumeric tokens in order, separated by any
    non-alphanumeric text (and optional articles), at word boundaries, case-insensitively.
    ``None`` for a phrase with no tokens."""
    toks = [t for t in words(phrase) if t not in ("a", "an", "the")]
    if not toks:
        return None
    sep = r"[^a-z0-9]+(?:(?:a|an|the)[^a-z0-9]+)*"
    return re.compile(r"(?<![a-z0-9])" + sep.join(map(re.escape, toks)) + r"(?![a-z0-9])", re.I)


def contains_phrase(text: str, phrase: str) -> bool:
    rx = phrase_regex(phrase)
    return rx is not None and rx.search(_MARKER.sub(" ", text)) is not None


# ---------------------------------------------------------------------------------------------
# Free-text overlap
# ---------------------------------------------------------------------------------------------


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(a) * len(b)) dynamic programme)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(pred: str, ref: str) -> float:
    """Sentence-level ROUGE-L F-measure (Lin 2004, beta = 1):
    ``P = LCS / len(pred)``, ``R = LCS / len(ref)``, ``F = 2PR / (P + R)``, over tokens that
    are lowercase alphanumeric runs (as ``rouge-score``'s default tokenizer, no stemming).
    0.0 when either side has no tokens."""
    p, r = words(pred), words(ref)
    if not p or not r:
        return 0.0
    lcs = _lcs_length(p, r)
    if lcs == 0:
        return 0.0
    prec, rec = lcs / len(p), lcs / len(r)
    return 2 * prec * rec / (prec + rec)


@functools.lru_cache(maxsize=1)
def _chrf_pp_scorer() -> Any:
    try:
        from sacrebleu.metrics import CHRF
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(f"chrF++ needs sacrebleu ({exc}): pip install sacrebleu") from exc
    return CHRF(word_order=2)


def chrf_pp(pred: str, ref: str) -> float:
    """chrF++ (Popović 2017: character 6-grams plus word 1- and 2-grams, beta = 2) of one
    prediction against one reference, from sacrebleu's ``CHRF(word_order=2).sentence_score``,
    divided by 100 to lie in [0, 1]. Imports sacrebleu."""
    return float(_chrf_pp_scorer().sentence_score(pred, [ref]).score) / 100.0


# ---------------------------------------------------------------------------------------------
# Embedding-based similarity (MiniLM)
# ---------------------------------------------------------------------------------------------


def embedding_similarity_minilm(preds: Sequence[str], refs: Sequence[str], embedder: Embedder) -> list[float]:
    """Cosine similarity of sentence embeddings, pair by pair: ``embed(pred) . embed(ref)``.

    Meant for ``load_embedder("minilm")`` (hence the name; any :class:`Embedder` works, and the
    values are only comparable between runs with the same ``embedder.model_id``). This is *not*
    BERTScore: one mean-pooled vector per text, no token alignment (see
    :func:`bertscore_f1_minilm` for that)."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    if not preds:
        return []
    p = embedder.embed(list(preds))
    r = embedder.embed(list(refs))
    return [float(x) for x in np.einsum("ij,ij->i", p.astype(np.float64), r.astype(np.float64))]


def _greedy_f1(p: np.ndarray, r: np.ndarray) -> float:
    if len(p) == 0 or len(r) == 0:
        return 0.0
    sim = p @ r.T  # (n_pred_tokens, n_ref_tokens) cosine similarities
    precision = float(sim.max(axis=1).mean())
    recall = float(sim.max(axis=0).mean())
    if precision + recall <= 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def bertscore_f1_minilm(preds: Sequence[str], refs: Sequence[str], model: Any = None) -> list[float]:
    """BERTScore-style F1 computed with all-MiniLM-L6-v2 token embeddings (not the roberta-large
    default; values are not comparable to published BERTScore numbers).

    For each pair, with unit-norm contextual token embeddings from
    :func:`ragehr.embeddings.tokens.minilm_token_embeddings` (``[CLS]``/``[SEP]``/padding excluded): precision is the
    mean over prediction tokens of the best cosine with any reference token, recall the mean
    over reference tokens of the best cosine with any prediction token, F1 their harmonic mean
    (Zhang et al. 2020, greedy matching). No idf weighting and no baseline rescaling. A side
    with no tokens gives 0.0. Loads the model on first call (see
    :func:`ragehr.embeddings.tokens.load_minilm_token_model`), or uses ``model``."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    if not preds:
        return []
    from ragehr.embeddings.tokens import minilm_token_embeddings

    embs = minilm_token_embeddings(list(preds) + list(refs), model)
    n = len(preds)
    return [_greedy_f1(embs[i], embs[n + i]) for i in range(n)]
