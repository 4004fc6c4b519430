"""Evaluation metrics: retrieval against gold evidence, short-answer accuracy, free-text overlap.

Every function here is pure: it reads its arguments and returns a number. Heavy libraries load
only inside the functions that need them and say so in their names or docstrings:

- :func:`chrf_pp` imports ``sacrebleu`` (``pip install sacrebleu``);
- :func:`kendall_tau` imports ``scipy``;
- :func:`bertscore_f1_minilm` loads the packaged all-MiniLM-L6-v2 through
  ``sentence-transformers`` (offline, from disk, on the CPU), once per process;
- :func:`embedding_similarity_minilm` uses whatever :class:`~ragehr.embeddings.Embedder` it is
  given.

Retrieval metrics (:func:`evidence_recall`, :func:`recall_at_k`, :func:`mrr`,
:func:`ndcg_at_k`) score one question; the caller averages over questions. They return ``None``
when the question has no gold evidence (a negative such as an ``ever_prescribed`` "no"), so that
such questions drop out of the average instead of counting as 0 or 1.

Short-answer matchers (:func:`numeric_match`, :func:`date_match`, :func:`yes_no_match`,
:func:`list_match`, :func:`count_match`) read a free-text prediction, as a model writes it, and
decide whether it states the gold answer; :func:`score_answer` dispatches on a
:class:`~ragehr.eval.generated.QAItem`'s ``answer_type``. The rules are lenient on form (any
date format, units written any common way, citation markers ignored) and are documented at each
function; they are heuristics over text, not a semantic judge.

This module does not run models that generate answers, compute COMET (only
:func:`comet_available` checks whether it could be), aggregate over items or compute confidence
intervals (see :mod:`ragehr.eval.stats`).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import os
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ragehr.pipeline.grounding import find_dates

if TYPE_CHECKING:
    from ragehr.embeddings import Embedder
    from ragehr.eval.generated import QAItem

__all__ = [
    "bertscore_f1_minilm",
    "chrf_pp",
    "comet_available",
    "count_match",
    "date_match",
    "embedding_similarity_minilm",
    "evidence_recall",
    "exact_match",
    "find_number_mentions",
    "kendall_tau",
    "list_f1",
    "list_match",
    "load_minilm_token_model",
    "minilm_token_embeddings",
    "mrr",
    "ndcg_at_k",
    "normalize_text",
    "numeric_match",
    "parse_yes_no",
    "recall_at_k",
    "rouge_l",
    "score_answer",
    "token_f1",
    "yes_no_match",
]


# ---------------------------------------------------------------------------------------------
# Retrieval
# ---------------------------------------------------------------------------------------------


def _gold_set(gold: Iterable[str]) -> set[str]:
    return {g for g in gold}


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def evidence_recall(packed_event_ids: Iterable[str], gold: Sequence[str]) -> float | None:
    """Share of the distinct gold event ids that are inside the packed context.

    ``|set(gold) & set(packed)| / |set(gold)|``; ``None`` when ``gold`` is empty."""
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


# ---------------------------------------------------------------------------------------------
# Text normalisation, exact match, token F1
# ---------------------------------------------------------------------------------------------

_MARKER = re.compile(r"\[\d+(?:\s*[,;-]\s*\d+)*\]")
"""Citation markers such as ``[3]`` or ``[1, 2]``: never numbers of the answer."""
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


def _words(s: str) -> list[str]:
    """Lowercase alphanumeric runs: the tokens of :func:`rouge_l` and of phrase matching."""
    return re.findall(r"[a-z0-9]+", s.lower())


def _phrase_regex(phrase: str) -> re.Pattern[str] | None:
    """A regex finding ``phrase``'s alphanumeric tokens in order, separated by any
    non-alphanumeric text (and optional articles), at word boundaries, case-insensitively.
    ``None`` for a phrase with no tokens."""
    toks = [t for t in _words(phrase) if t not in ("a", "an", "the")]
    if not toks:
        return None
    sep = r"[^a-z0-9]+(?:(?:a|an|the)[^a-z0-9]+)*"
    return re.compile(r"(?<![a-z0-9])" + sep.join(map(re.escape, toks)) + r"(?![a-z0-9])", re.I)


def _contains_phrase(text: str, phrase: str) -> bool:
    rx = _phrase_regex(phrase)
    return rx is not None and rx.search(_MARKER.sub(" ", text)) is not None


# ---------------------------------------------------------------------------------------------
# Numbers and units
# ---------------------------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.])[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])[-+]?\d+(?:\.\d+)?")
"""A number: ``1,000`` = 1000, ``-2.5``; not the digits of a word such as ``A1c``."""
_LIST_ENUM = re.compile(r"^[ \t]*(?:[-*\u2022][ \t]*)?\d{1,2}[.)](?=\s)", re.M)
"""``1.`` / ``2)`` at the start of a line: list enumeration, not a number of the answer."""
_ISO_T = re.compile(r"(\d{4}-\d{1,2}-\d{1,2})T(?=\d)")
_YMD_SLASH = re.compile(r"\b(\d{4})/(\d{1,2})/(\d{1,2})\b")

# Units written with a space or in pieces are joined before a unit is read after a number.
_UNIT_REWRITES = (
    (re.compile(r"\bmm\s*\[?\s*hg\s*\]?", re.I), "mmHg"),
    (re.compile(r"(?:°|º|\bdeg(?:rees?)?\.?)\s*(?:c\b|celsius\b|centigrade\b)", re.I), "°C"),
    (re.compile(r"(?:°|º|\bdeg(?:rees?)?\.?)\s*(?:f\b|fahrenheit\b)", re.I), "°F"),
    (re.compile(r"\bbeats?\s+per\s+min(?:ute)?\b", re.I), "bpm"),
    (re.compile(r"\bbreaths?\s+per\s+min(?:ute)?\b", re.I), "/min"),
    (re.compile(r"\bper\s+min(?:ute)?\b", re.I), "/min"),
)
_UNIT_TOKEN = re.compile(r"[ \t]?(%|°[CF]|/[A-Za-z][^\s,;:()]*|[A-Za-zµμ\[\{][^\s,;:()]*)")


def _unit_key(u: str) -> str:
    """A unit's comparison key: case-folded, without whitespace, brackets, braces, ``^`` or
    underscores, ``µ``/``μ`` as ``u`` and ``²``/``³`` as digits, a leading power of ten
    written ``10*9``, ``10^9``, ``x10^9`` or ``×10^9`` as ``10e9``: ``mm[Hg]``, ``mmHg`` and
    ``mm Hg`` all give ``mmhg``; ``[lb_av]`` gives ``lbav``; ``kg/m^2`` gives ``kg/m2``;
    ``10*9/L`` and ``x10^9/L`` give ``10e9/l``."""
    u = u.casefold().replace("µ", "u").replace("μ", "u").replace("²", "2").replace("³", "3")
    u = re.sub(r"[\s\[\]{}_]+", "", u.replace("º", "°").replace("×", "x"))
    u = re.sub(r"^x?10(?:\*|\^|e|\*\*)(\d)", r"10e\1", u)  # x10^9/L = 10*9/L = 10e9/l
    return u.replace("^", "")


@dataclass(frozen=True)
class _Unit:
    dimension: str
    factor: float
    offset: float = 0.0
    """``base = value * factor + offset`` (base units: kg, m, °C)."""


_LB = 0.45359237
_INCH = 0.0254
_CONVERTIBLE: dict[str, _Unit] = {
    "kg": _Unit("mass", 1.0),
    "g": _Unit("mass", 1e-3),
    "mg": _Unit("mass", 1e-6),
    "ug": _Unit("mass", 1e-9),
    "lb": _Unit("mass", _LB),
    "oz": _Unit("mass", _LB / 16),
    "m": _Unit("length", 1.0),
    "cm": _Unit("length", 1e-2),
    "mm": _Unit("length", 1e-3),
    "in": _Unit("length", _INCH),
    "ft": _Unit("length", 12 * _INCH),
    "°C": _Unit("temperature", 1.0),
    "°F": _Unit("temperature", 5.0 / 9.0, -32.0 * 5.0 / 9.0),
}
"""Units converted between each other within a dimension (exact factors: 1 lb = 0.45359237 kg,
1 in = 2.54 cm; °F = °C * 9/5 + 32)."""

_ALIASES: dict[str, str] = {
    **{k: "kg" for k in ("kg", "kgs", "kilo", "kilos", "kilogram", "kilograms")},
    **{k: "g" for k in ("g", "gm", "gms", "gram", "grams")},
    **{k: "mg" for k in ("mg", "milligram", "milligrams")},
    **{k: "ug" for k in ("ug", "mcg", "microgram", "micrograms")},
    **{k: "lb" for k in ("lb", "lbs", "lbav", "pound", "pounds")},
    **{k: "oz" for k in ("oz", "ozav", "ounce", "ounces")},
    **{k: "m" for k in ("m", "meter", "meters", "metre", "metres")},
    **{k: "cm" for k in ("cm", "centimeter", "centimeters", "centimetre", "centimetres")},
    **{k: "mm" for k in ("mm", "millimeter", "millimeters", "millimetre", "millimetres")},
    **{k: "in" for k in ("in", "inus", "inch", "inches")},
    **{k: "ft" for k in ("ft", "ftus", "foot", "feet")},
    **{k: "°C" for k in ("°c", "cel", "degc", "c", "celsius")},
    **{k: "°F" for k in ("°f", "degf", "f", "fahrenheit")},
    # same unit, other spellings (no conversion)
    **{k: "mmHg" for k in ("mmhg",)},
    **{k: "/min" for k in ("/min", "/minute", "bpm", "beats/min", "breaths/min", "min-1")},
    **{k: "%" for k in ("%", "percent", "pct")},
    **{k: "kg/m2" for k in ("kg/m2",)},
}
"""Comparison key (see :func:`_unit_key`) -> canonical unit."""

_COMMON_UNITS = frozenset(
    {"ml", "l", "dl", "ul", "fl", "pg", "ng", "iu", "u", "meq", "mmol", "umol", "nmol", "pmol",
     "mosm", "kpa", "mbar", "cells", "sec", "s", "h", "hr", "hrs", "hours", "min", "mins",
     "minutes", "days", "weeks", "months", "years", "yr", "yrs", "mo", "wk"}
)
"""Unit keys without a slash that count as a stated unit (and so must agree with the gold
unit). Time words are here so that "6 months" does not match a gold "6 kg"."""


def _canonical_unit(token: str) -> str | None:
    """The canonical unit of a unit *as written in a gold record* (always a unit)."""
    key = _unit_key(token)
    return _ALIASES.get(key, key) if key else None


def _stated_unit(token: str, gold_unit: str | None) -> str | None:
    """The canonical unit a prediction states with ``token`` right after a number, or ``None``
    when ``token`` is not recognised as a unit (an ordinary word such as "on" or "points").

    A token is a unit when its key is a known alias, equals the gold unit's key, is one of
    :data:`_COMMON_UNITS`, or looks structural (contains ``/``, ``%``, ``*`` or a digit, or was
    written with brackets or braces)."""
    t = token.rstrip(".")
    key = _unit_key(t)
    if not key:
        return None
    if key in _ALIASES:
        return _ALIASES[key]
    if gold_unit is not None and key == _unit_key(gold_unit):
        return _canonical_unit(gold_unit)
    if key in _COMMON_UNITS or any(c in t for c in "/%*[{") or any(c.isdigit() for c in key):
        return key
    return None


def _in_is_word(text: str, end: int) -> bool:
    """Whether an ``in`` that ends at ``end`` is the preposition: it is followed by a word or
    number ("80 in 2019", "65 in March") rather than the end of the text or punctuation."""
    return re.match(r"[ \t]+[A-Za-z0-9]", text[end:]) is not None


def _gold_unit_follows(text: str, end: int, gold_unit: str) -> bool:
    """Whether the gold unit, spelled with any spacing, brackets or case (see
    :func:`_unit_key`), follows position ``end`` directly or after one space and ends at a word
    boundary: ``62 mL/min/1.73 m2`` states ``mL/min/{1.73_m2}``."""
    key = _unit_key(gold_unit)
    if not key:
        return False
    start = end + 1 if text[end : end + 1] in (" ", "\t") else end
    tail = text[start : start + 2 * len(gold_unit) + 8]
    for stop in range(1, len(tail) + 1):
        if stop < len(tail) and not (tail[stop].isspace() or tail[stop] in ",;:()."):
            continue
        if _unit_key(tail[:stop]) == key:
            return True
    return False


@dataclass(frozen=True)
class NumberMention:
    """A number found in a prediction, with the unit stated right after it (if any)."""

    value: float
    unit: str | None
    """Canonical unit (see :func:`_stated_unit`), or ``None`` when none is stated."""
    span: tuple[int, int]


def _prepare(text: str) -> str:
    text = _MARKER.sub(lambda m: " " * len(m.group(0)), text)
    return _ISO_T.sub(r"\1 ", text)


def _date_spans(text: str) -> list[tuple[date, tuple[int, int]]]:
    """:func:`ragehr.pipeline.grounding.find_dates` plus ``YYYY/MM/DD``."""
    out = list(find_dates(text))
    for m in _YMD_SLASH.finditer(text):
        try:
            out.append((date(int(m.group(1)), int(m.group(2)), int(m.group(3))), m.span()))
        except ValueError:
            continue
    return sorted(out, key=lambda ds: ds[1])


def find_number_mentions(text: str, gold_unit: str | None = None) -> list[NumberMention]:
    """The numbers in ``text`` with their stated units, skipping citation markers (``[3]``),
    numbers inside dates (any format :func:`find_dates` reads, plus ``YYYY/MM/DD`` and ISO
    date-times) and list enumerators at the start of a line (``1.``, ``2)``).

    A unit is "stated" when a unit token follows the number directly or after one space
    (``165mmHg``, ``165 mm Hg``, ``37.2 °C``, ``45%``, ``72 beats per minute``): the gold
    unit in any spacing (when ``gold_unit`` is given), else one unit token; see
    :func:`_stated_unit` for what counts as a unit. ``in`` counts as inches only when no word
    follows it ("65 in." yes, "80 in 2019" no)."""
    text = _prepare(text)
    for rx, repl in _UNIT_REWRITES:
        text = rx.sub(repl, text)
    skip = [span for _, span in _date_spans(text)]
    skip += [m.span() for m in _LIST_ENUM.finditer(text)]
    out = []
    for m in _NUMBER.finditer(text):
        a, b = m.span()
        if any(a < e and s < b for s, e in skip):
            continue
        value = float(m.group(0).replace(",", ""))
        unit = None
        u = _UNIT_TOKEN.match(text, b)
        if gold_unit is not None and _gold_unit_follows(text, b, gold_unit):
            unit = _canonical_unit(gold_unit)
        elif u is not None:
            tok = u.group(1)
            if not (tok.rstrip(".").lower() == "in" and _in_is_word(text, u.end())):
                unit = _stated_unit(tok, gold_unit)
        out.append(NumberMention(value=value, unit=unit, span=(a, b)))
    return out


def _convert(value: float, unit: str | None, gold_unit: str | None) -> float | None:
    """``value`` in ``unit`` expressed in ``gold_unit``; ``None`` when incompatible. A missing
    unit on either side is compatible (nothing to check)."""
    if unit is None or gold_unit is None:
        return value
    gold = _canonical_unit(gold_unit)
    if gold is None or unit == gold:
        return value
    src, dst = _CONVERTIBLE.get(unit), _CONVERTIBLE.get(gold)
    if src is None or dst is None or src.dimension != dst.dimension:
        return None
    base = value * src.factor + src.offset
    return (base - dst.offset) / dst.factor


def numeric_match(
    pred_text: str,
    gold_value: float,
    gold_unit: str | None = None,
    rel_tol: float = 0.01,
    abs_tol: float = 1e-6,
) -> bool:
    """Whether any number the prediction states equals ``gold_value`` within tolerance.

    Numbers are read by :func:`find_number_mentions` (citation markers, dates and list
    enumerators are skipped). A number with a stated unit is first converted to ``gold_unit``:

    - same unit after normalising case, spaces, brackets and common spellings (``mm[Hg]`` =
      ``mmHg`` = ``mm Hg``; ``/min`` = ``bpm``; ``Cel`` = ``°C`` = ``degrees C``): no change;
    - mass kg/g/mg/ug(mcg)/lb(``[lb_av]``)/oz, length m/cm/mm/in(``[in_us]``)/ft,
      temperature °C(``Cel``)/°F(``[degF]``): converted;
    - anything else (``80 kg`` against a gold ``cm``, ``mmol/L`` against ``mg/dL``): no match.

    A number with no stated unit, or a gold without a unit, is compared as is. Equality is
    ``math.isclose(converted, gold_value, rel_tol=rel_tol, abs_tol=abs_tol)`` (relative to the
    larger magnitude)."""
    gold = float(gold_value)
    for mention in find_number_mentions(pred_text, gold_unit):
        v = _convert(mention.value, mention.unit, gold_unit)
        if v is not None and math.isclose(v, gold, rel_tol=rel_tol, abs_tol=abs_tol):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------

_MONTH_NAMES = (
    ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
    ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
    ("oct", "october"), ("nov", "november"), ("dec", "december"),
)


def date_match(pred_text: str, gold_iso_date: str) -> bool:
    """Whether the prediction states the gold date.

    - Full gold ``YYYY-MM-DD``: any calendar date in the prediction equals it. Dates are read by
      :func:`ragehr.pipeline.grounding.find_dates` (``2019-03-02``, ``3/2/2019`` (US
      month/day), ``March 2, 2019``, ``2 Mar 2019``, ...) plus ``2019/03/02`` and ISO
      date-times (``2019-03-02T10:00``).
    - Month gold ``YYYY-MM`` (a record that gave only the month): any full date in that month,
      or the month written as ``2019-03``, ``3/2019`` or ``March 2019``.
    - Year gold ``YYYY``: any full date in that year or the year as a standalone number.

    Raises ``ValueError`` for a gold that is none of these."""
    gold = gold_iso_date.strip()
    text = _prepare(pred_text)
    found = [d for d, _ in _date_spans(text)]
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", gold)
    if m:
        g = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        return g in found
    m = re.fullmatch(r"(\d{4})-(\d{1,2})", gold)
    if m:
        y, mo = int(m.group(1)), int(m.group(2))
        if not 1 <= mo <= 12:
            raise ValueError(f"not an ISO date: {gold_iso_date!r}")
        if any(d.year == y and d.month == mo for d in found):
            return True
        names = "|".join(_MONTH_NAMES[mo - 1])
        patterns = (
            rf"(?<![\d-]){y}-0?{mo}(?![\d])",
            rf"(?<![\d/])0?{mo}/{y}\b",
            rf"\b(?:{names})\.?,?\s+{y}\b",
        )
        return any(re.search(p, text, re.I) for p in patterns)
    m = re.fullmatch(r"\d{4}", gold)
    if m:
        y = int(gold)
        if any(d.year == y for d in found):
            return True
        return re.search(rf"(?<![\w.]){y}(?![\d])", text) is not None
    raise ValueError(f"not an ISO date: {gold_iso_date!r}")


# ---------------------------------------------------------------------------------------------
# Yes / no
# ---------------------------------------------------------------------------------------------

_YES_WORDS = frozenset({"yes", "yeah", "yep", "yup", "affirmative", "correct"})
_NO_WORDS = frozenset({"no", "nope", "not", "never", "none", "neither", "nor", "negative"})
_ABSTAIN = re.compile(
    r"\b(?:i\s+(?:do\s+not|don'?t|cannot|can'?t)\s+(?:know|tell|determine|say)"
    r"|(?:cannot|can'?t|can\s+not|unable\s+to|not\s+possible\s+to)\s+(?:be\s+)?"
    r"(?:determine|determined|tell|say|answer)"
    r"|unclear|uncertain|unknown|insufficient\s+(?:information|evidence|data)"
    r"|not\s+enough\s+(?:information|evidence|data))\b",
    re.I,
)
_YN_TOKEN = re.compile(r"[a-z]+n't|[a-z]+")


def parse_yes_no(pred_text: str) -> Literal["yes", "no"] | None:
    """The yes/no answer a prediction gives, or ``None`` when it gives none.

    1. If the first word is a yes word (``yes``, ``yeah``, ``yep``, ``yup``, ``correct``,
       ``affirmative``) or a no word (``no``, ``nope``, ``not``, ``never``, ``none``,
       ``negative``...), that is the answer: "No, she has never been prescribed warfarin" is
       no, "Yes, although it is not active now" is yes.
    2. Otherwise, an abstention ("I don't know", "cannot be determined", "unclear",
       "insufficient information", ...) gives ``None``.
    3. Otherwise the first cue in reading order decides: a yes word gives yes; a negation
       (a no word or an ``n't`` contraction such as ``hasn't``, ``wasn't``, ``doesn't``) gives no
       ("She has not been prescribed warfarin", "There is no record of warfarin").
    4. No cue at all gives ``None`` (a bare "She was prescribed warfarin [1]" is not read as
       yes: the matcher does not infer assent from content).

    Citation markers are ignored."""
    text = _MARKER.sub(" ", pred_text).lower().replace("\u2019", "'")
    tokens = _YN_TOKEN.findall(text)

    def cue(tok: str) -> Literal["yes", "no"] | None:
        if tok in _YES_WORDS:
            return "yes"
        if tok in _NO_WORDS or tok.endswith("n't"):
            return "no"
        return None

    if not tokens:
        return None
    first = cue(tokens[0])
    if first is not None:
        return first
    if _ABSTAIN.search(text):
        return None
    for tok in tokens:
        c = cue(tok)
        if c is not None:
            return c
    return None


def yes_no_match(pred_text: str, gold: str) -> bool:
    """Whether :func:`parse_yes_no` of the prediction equals ``gold`` (``yes``/``no``, any
    case). No answer found is ``False``."""
    g = gold.strip().lower()
    if g not in ("yes", "no"):
        raise ValueError(f"gold must be 'yes' or 'no', got {gold!r}")
    return parse_yes_no(pred_text) == g


# ---------------------------------------------------------------------------------------------
# Lists and counts
# ---------------------------------------------------------------------------------------------


def list_match(pred_text: str, gold_items: Sequence[str]) -> float:
    """Recall: the share of distinct gold items that the prediction mentions.

    An item is mentioned when its alphanumeric tokens occur in the prediction in order,
    separated only by punctuation, spaces or articles, at word boundaries, case-insensitively
    (so ``Influenza, seasonal, injectable`` matches ``influenza seasonal injectable``, and
    ``Asthma`` does not match ``asthmatic``). An empty gold list gives 1.0."""
    return _list_scores(pred_text, gold_items)[0]


_LINE_SPLIT = re.compile(r"\n+")
_BULLET = re.compile(r"^\s*(?:[-*\u2022\u2023\u25e6]|\d{1,2}[.)])\s+")
_FILLER = frozenset(
    {"and", "or", "also", "including", "plus", "as", "well", "etc", "other", "none"}
)


def _pred_items(text: str) -> list[str]:
    """Split a prediction (gold items already masked) into the items it lists.

    Lines first; within a line, anything up to the first ``:`` is a lead-in and dropped; then
    ``;``, then ``,`` and the words ``and``/``or`` split items. Segments with no word besides
    :data:`_FILLER` are dropped; the masked gold items are single tokens, so commas inside a
    gold name never split it."""
    items = []
    for line in _LINE_SPLIT.split(text):
        line = _BULLET.sub("", line)
        if ":" in line:
            line = line.split(":", 1)[1]
        for seg in re.split(r"[;,]|\band\b|\bor\b", line):
            words = [w for w in _words(seg) if w not in _FILLER]
            if words:
                items.append(seg)
    return items


def _list_scores(pred_text: str, gold_items: Sequence[str]) -> tuple[float, float, float]:
    gold = list(dict.fromkeys(g for g in gold_items if _words(g)))
    text = _MARKER.sub(" ", pred_text)
    found = 0
    # longest first, so that an item inside another item's name is masked by the longer one
    for g in sorted(gold, key=lambda s: (-len(s), s)):
        rx = _phrase_regex(g)
        assert rx is not None
        text, n = rx.subn(" qqgolditemqq ", text)
        found += n > 0
    n_pred = len(_pred_items(text))
    if not gold:
        return 1.0, (1.0 if n_pred == 0 else 0.0), (1.0 if n_pred == 0 else 0.0)
    recall = found / len(gold)
    precision = found / max(n_pred, found) if found else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return recall, precision, f1


def list_f1(pred_text: str, gold_items: Sequence[str]) -> tuple[float, float, float]:
    """``(recall, precision, f1)`` for a list answer.

    Recall is :func:`list_match`. Precision is estimated, since the prediction's items are not
    marked up: gold items are first masked out (so commas in their names do not count), then
    the prediction is split into items by lines (bullets and ``1.`` enumerators removed, a
    lead-in up to a ``:`` dropped), ``;``, ``,``, ``and`` and ``or``; segments of filler words
    only are dropped. ``precision = found / max(n_items, found)``. Prose around a list (a
    closing sentence, a comment on each item after a comma) counts as extra items and lowers
    precision, so read it as a lower bound. With an empty gold list, recall is 1.0 and
    precision (and F1) is 1.0 only when the prediction lists nothing."""
    return _list_scores(pred_text, gold_items)


_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"once": 1, "twice": 2, "thrice": 3, "none": 0}


def count_match(pred_text: str, gold_count: int) -> bool:
    """Whether the prediction states ``gold_count``: any integer numeral (read as in
    :func:`numeric_match`: markers, dates and list enumerators skipped) or number word
    (``zero`` to ``twenty``, ``once``, ``twice``, ``thrice``; ``none`` for 0) equals it.

    Like :func:`numeric_match` this is lenient: "3 or 4 visits" matches both 3 and 4."""
    gold = int(gold_count)
    for m in find_number_mentions(pred_text):
        if m.value == gold:
            return True
    words = _words(_MARKER.sub(" ", pred_text))
    return any(_NUMBER_WORDS.get(w) == gold for w in words)


# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------


def _as_float(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    try:
        return float(str(v).replace(",", ""))
    except ValueError:
        return None


def score_answer(pred_text: str, item: QAItem) -> dict[str, float]:
    """Score one prediction against a generated item, by ``item.answer_type``.

    Every result has ``accuracy`` (0.0 or 1.0) and ``exact_match`` (:func:`exact_match` with
    ``item.answer``); the extras are:

    - ``number``: :func:`numeric_match` with ``answer_value`` and ``unit``;
    - ``date``: :func:`date_match` with ``answer_value`` (or ``answer``);
    - ``yes_no``: :func:`yes_no_match`; ``abstained`` is 1.0 when no yes/no was found;
    - ``count``: :func:`count_match`;
    - ``list``: ``recall``, ``precision``, ``f1`` from :func:`list_f1`; accuracy is 1.0 when
      recall is 1.0 (every gold item named; extra items are not penalised there);
    - ``text``: accuracy is 1.0 when the gold answer's tokens occur in order in the prediction
      (phrase containment, as for list items); plus ``token_f1`` and ``rouge_l``.
    """
    out: dict[str, float] = {"exact_match": float(exact_match(pred_text, item.answer))}
    atype = item.answer_type
    if atype == "number":
        gold = _as_float(item.answer_value)
        if gold is None:
            gold = _as_float(item.answer.split()[0]) if item.answer.split() else None
        if gold is None:
            raise ValueError(f"item {item.item_id}: number answer without a numeric value")
        out["accuracy"] = float(numeric_match(pred_text, gold, item.unit))
    elif atype == "date":
        gold_date = item.answer_value if isinstance(item.answer_value, str) else item.answer
        out["accuracy"] = float(date_match(pred_text, gold_date))
    elif atype == "yes_no":
        gold_yn = item.answer_value if isinstance(item.answer_value, str) else item.answer
        parsed = parse_yes_no(pred_text)
        out["accuracy"] = float(parsed is not None and parsed == gold_yn.strip().lower())
        out["abstained"] = float(parsed is None)
    elif atype == "count":
        gold_n = _as_float(item.answer_value)
        if gold_n is None:
            gold_n = _as_float(item.answer)
        if gold_n is None:
            raise ValueError(f"item {item.item_id}: count answer without a number")
        out["accuracy"] = float(count_match(pred_text, int(gold_n)))
    elif atype == "list":
        items = item.answer_items or tuple(s.strip() for s in item.answer.split(";") if s.strip())
        recall, precision, f1 = list_f1(pred_text, items)
        out.update(accuracy=float(recall == 1.0), recall=recall, precision=precision, f1=f1)
    elif atype == "text":
        gold_text = item.answer_value if isinstance(item.answer_value, str) else item.answer
        out["accuracy"] = float(_contains_phrase(pred_text, gold_text))
        out["token_f1"] = token_f1(pred_text, gold_text)
        out["rouge_l"] = rouge_l(pred_text, gold_text)
    else:  # pragma: no cover - AnswerType is a closed Literal
        raise ValueError(f"unknown answer_type {atype!r}")
    return {"accuracy": out.pop("accuracy"), **out}


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
    p, r = _words(pred), _words(ref)
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


def embedding_similarity_minilm(
    preds: Sequence[str], refs: Sequence[str], embedder: Embedder
) -> list[float]:
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


@functools.lru_cache(maxsize=1)
def load_minilm_token_model() -> Any:
    """The packaged all-MiniLM-L6-v2 as a ``sentence_transformers.SentenceTransformer`` on the
    CPU, loaded once per process from :func:`ragehr.embeddings.minilm_folder` with
    ``HF_HUB_OFFLINE=1``/``TRANSFORMERS_OFFLINE=1`` and ``local_files_only=True`` (nothing is
    downloaded). Used for its token-level outputs, which the :class:`Embedder` protocol does not
    expose. Raises :class:`ragehr.errors.ModelNotFoundError` when the model or the library is
    missing."""
    from ragehr.embeddings import minilm_folder
    from ragehr.errors import ModelNotFoundError

    folder = minilm_folder()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ModelNotFoundError(f"sentence-transformers is not installed ({exc})") from exc
    model = SentenceTransformer(
        str(folder), device="cpu", local_files_only=True, trust_remote_code=False
    )
    model.eval()
    return model


def minilm_token_embeddings(texts: Sequence[str], model: Any = None) -> list[np.ndarray]:
    """Contextual token embeddings of each text: float64 arrays of shape ``(n_tokens, 384)``
    with unit-norm rows, one row per word piece, without ``[CLS]``, ``[SEP]`` and padding.
    Texts longer than the model's window (256 word pieces) are truncated. ``model`` defaults
    to :func:`load_minilm_token_model`."""
    if model is None:
        model = load_minilm_token_model()
    if not texts:
        return []
    tok = model.tokenizer
    drop = [i for i in (tok.cls_token_id, tok.sep_token_id, tok.pad_token_id) if i is not None]
    feats = model.encode(
        list(texts), output_value=None, batch_size=32, show_progress_bar=False,
        convert_to_numpy=False,
    )
    out = []
    for f in feats:
        ids = f["input_ids"].cpu().numpy()
        mask = f["attention_mask"].cpu().numpy().astype(bool)
        keep = mask & ~np.isin(ids, drop)
        emb = f["token_embeddings"].detach().cpu().float().numpy().astype(np.float64)[keep]
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        out.append(emb / np.maximum(norms, 1e-12))
    return out


def _greedy_f1(p: np.ndarray, r: np.ndarray) -> float:
    if len(p) == 0 or len(r) == 0:
        return 0.0
    sim = p @ r.T  # (n_pred_tokens, n_ref_tokens) cosine similarities
    precision = float(sim.max(axis=1).mean())
    recall = float(sim.max(axis=0).mean())
    if precision + recall <= 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def bertscore_f1_minilm(
    preds: Sequence[str], refs: Sequence[str], model: Any = None
) -> list[float]:
    """BERTScore-style F1 computed with all-MiniLM-L6-v2 token embeddings (not the roberta-large
    default; values are not comparable to published BERTScore numbers).

    For each pair, with unit-norm contextual token embeddings from
    :func:`minilm_token_embeddings` (``[CLS]``/``[SEP]``/padding excluded): precision is the
    mean over prediction tokens of the best cosine with any reference token, recall the mean
    over reference tokens of the best cosine with any prediction token, F1 their harmonic mean
    (Zhang et al. 2020, greedy matching). No idf weighting and no baseline rescaling. A side
    with no tokens gives 0.0. Loads the model on first call (see
    :func:`load_minilm_token_model`), or uses ``model``."""
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions but {len(refs)} references")
    if not preds:
        return []
    embs = minilm_token_embeddings(list(preds) + list(refs), model)
    n = len(preds)
    return [_greedy_f1(embs[i], embs[n + i]) for i in range(n)]


def comet_available() -> bool:
    """Whether the ``comet`` package (Unbabel COMET) can be imported. ragehr computes no COMET
    score itself; this only lets a report say whether one could be added."""
    try:
        return importlib.util.find_spec("comet") is not None
    except (ImportError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------
# Agreement with human ratings
# ---------------------------------------------------------------------------------------------


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def kendall_tau(
    metric_values: Sequence[float | None], human_ratings: Sequence[float | None]
) -> tuple[float, float]:
    """Kendall's tau-b between a metric and human ratings of the same items, with its two-sided
    p-value, from ``scipy.stats.kendalltau`` (``variant="b"``, which corrects for ties on
    either side: ``(C - D) / sqrt((n0 - n1)(n0 - n2))``). Pairs where either value is ``None``
    or NaN are dropped first. Fewer than two pairs, or a constant side, give ``(nan, nan)``.
    Imports scipy."""
    if len(metric_values) != len(human_ratings):
        raise ValueError(f"{len(metric_values)} metric values but {len(human_ratings)} ratings")
    pairs = [
        (float(m), float(h))
        for m, h in zip(metric_values, human_ratings)
        if not _is_missing(m) and not _is_missing(h)
    ]
    if len(pairs) < 2:
        return math.nan, math.nan
    from scipy.stats import kendalltau

    x, y = zip(*pairs)
    if len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan, math.nan
    res = kendalltau(x, y, variant="b")
    return float(res.statistic), float(res.pvalue)
