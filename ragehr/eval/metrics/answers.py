"""Short-answer scoring: extract one answer, then compare it strictly with the gold.

As lm-evaluation-harness does with its answer filters, a prediction is first reduced to the
answer it gives (:func:`extract_answer`: citation markers, an ``Answer:`` prefix, a lead-in line
such as "Relevant evidence from the record:" and bullets removed), then compared:

- **Abstentions** (:func:`is_abstention`: every backend's own wording, "No evidence in the
  record matches the question." (extractive), "No evidence found." (fake), the prompt's "The
  record provided does not say.", and common phrasings such as "I don't know", "cannot be
  determined", "insufficient information") are never correct, whatever the gold; they are
  counted as ``abstained`` so each condition reports an abstention rate.
- **Yes/no** is read from the answer's first sentence only (:func:`parse_yes_no`).
- **Single-valued** questions (a number, a date, a count) are wrong when the answer offers
  several candidates: every distinct candidate must be the gold (one value, said any number
  of times, in any format).
- **Numbers** (:func:`numeric_match`) are equal at the gold's recorded precision, at most 3
  significant digits (Synthea's ``120.359`` is read as 120; ``37.3`` stays 37.3), or within a
  per-unit absolute tolerance (:data:`UNIT_ABS_TOL`); units are converted within a dimension
  and checked when either side states one (``80 kg`` is not a gold "80" without unit, and not
  a gold "80 cm"). Codes (``LOINC 8480-6``), times and numbers the question itself contains are
  not candidates.
- **Counts** (:func:`count_match`) come from numerals or number words only where they count
  something: followed by the counted noun (the question's "how many <noun>", or visits, times,
  doses...), or the whole answer ("3."); "one of them" and "none of the labs" are not counts.
- **Dates** (:func:`date_match`): a full gold date needs every date of the answer to be it; a
  month gold every month mentioned; a year gold every year mentioned, where a bare number is a
  year only in a date context ("in 2019", "during 2019") or as the whole answer.
- **Lists** (:func:`list_f1`) are scored by F1 (recall alone would give a dump of the record
  1.0).

These are heuristics over text, not a semantic judge; each rule is written at its function,
and the tests hold an adversarial case for each.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

from ragehr.eval.metrics.text import contains_phrase, exact_match, phrase_regex, rouge_l, token_f1, words
from ragehr.patterns import ABSTAIN, MONTHS, NUMBER, find_dates, strip_markers

if TYPE_CHECKING:
    from ragehr.eval.generated import QAItem

__all__ = [
    "UNIT_ABS_TOL",
    "NumberMention",
    "count_match",
    "date_match",
    "extract_answer",
    "find_number_mentions",
    "first_sentence",
    "is_abstention",
    "list_f1",
    "list_match",
    "numeric_match",
    "parse_yes_no",
    "score_answer",
    "yes_no_match",
]

# ---------------------------------------------------------------------------------------------
# Extraction and abstention
# ---------------------------------------------------------------------------------------------

_PREFIX = re.compile(r"^\s*(?:final\s+)?(?:answer|a)\s*:\s*", re.I)
_BULLET_LINE = re.compile(r"^\s*(?:[-*\u2022\u2023\u25e6]|\d{1,2}[.)])\s+")
_SENT_END = re.compile(r"(?<=[.!?])\s+|\n+")


def extract_answer(pred_text: str) -> str:
    """The answer a prediction gives: citation markers removed, an ``Answer:`` prefix removed,
    a first line ending in ``:`` dropped when more lines follow (a lead-in such as "Relevant
    evidence from the record:"), bullets and enumerators removed, blank lines dropped."""
    text = strip_markers(pred_text).replace("\u2019", "'").strip()
    text = _PREFIX.sub("", text)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        lines = lines[1:]
    return "\n".join(_BULLET_LINE.sub("", ln).strip() for ln in lines)


def first_sentence(answer: str) -> str:
    """The first sentence (up to ``.``/``!``/``?`` and a space, or a line break)."""
    return _SENT_END.split(answer.strip(), maxsplit=1)[0] if answer.strip() else ""


_ABSTAIN = ABSTAIN


def is_abstention(pred_text: str) -> bool:
    """Whether the prediction declines to answer: empty, or its first sentence is an
    abstention (see the module docstring). "No evidence of warfarin" and "The record does not
    mention warfarin" state an absence, which answers "ever prescribed?", and are not
    abstentions; "No evidence found." and "The record provided does not say." are."""
    answer = extract_answer(pred_text)
    if not words(answer):
        return True
    return _ABSTAIN.search(first_sentence(answer)) is not None


# ---------------------------------------------------------------------------------------------
# Numbers and units
# ---------------------------------------------------------------------------------------------

_LIST_ENUM = re.compile(r"^[ \t]*(?:[-*\u2022][ \t]*)?\d{1,2}[.)](?=\s)", re.M)
"""``1.`` / ``2)`` at the start of a line: list enumeration, not a number of the answer."""
_TIME = re.compile(r"(?<![\w.])\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?![\w])")
_CODE = re.compile(
    r"\b(?:LOINC|SNOMED(?:[\s-]*CT)?|CVX|RxNorm|RXCUI|ICD[\s-]*(?:9|10)(?:[\s-]*CM)?|ICD|CPT|NDC|"
    r"HCPCS|NDA|ANDA|MRN|code)\s*[:#]?\s*[A-Za-z0-9][\w.\-]*",
    re.I,
)
"""A code system's name and the code after it: ``LOINC 8480-6``, ``SNOMED 185347001``."""

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
    **dict.fromkeys(("kg", "kgs", "kilo", "kilos", "kilogram", "kilograms"), "kg"),
    **dict.fromkeys(("g", "gm", "gms", "gram", "grams"), "g"),
    **dict.fromkeys(("mg", "milligram", "milligrams"), "mg"),
    **dict.fromkeys(("ug", "mcg", "microgram", "micrograms"), "ug"),
    **dict.fromkeys(("lb", "lbs", "lbav", "pound", "pounds"), "lb"),
    **dict.fromkeys(("oz", "ozav", "ounce", "ounces"), "oz"),
    **dict.fromkeys(("m", "meter", "meters", "metre", "metres"), "m"),
    **dict.fromkeys(("cm", "centimeter", "centimeters", "centimetre", "centimetres"), "cm"),
    **dict.fromkeys(("mm", "millimeter", "millimeters", "millimetre", "millimetres"), "mm"),
    **dict.fromkeys(("in", "inus", "inch", "inches"), "in"),
    **dict.fromkeys(("ft", "ftus", "foot", "feet"), "ft"),
    **dict.fromkeys(("°c", "cel", "degc", "c", "celsius"), "°C"),
    **dict.fromkeys(("°f", "degf", "f", "fahrenheit"), "°F"),
    # same unit, other spellings (no conversion)
    **dict.fromkeys(("mmhg",), "mmHg"),
    **dict.fromkeys(("/min", "/minute", "bpm", "beats/min", "breaths/min", "min-1"), "/min"),
    **dict.fromkeys(("%", "percent", "pct"), "%"),
    **dict.fromkeys(("kg/m2",), "kg/m2"),
}
"""Comparison key (see :func:`_unit_key`) -> canonical unit."""

_COMMON_UNITS = frozenset(
    {
        "ml",
        "l",
        "dl",
        "ul",
        "fl",
        "pg",
        "ng",
        "iu",
        "u",
        "meq",
        "mmol",
        "umol",
        "nmol",
        "pmol",
        "mosm",
        "kpa",
        "mbar",
        "cells",
        "sec",
        "s",
        "h",
        "hr",
        "hrs",
        "hours",
        "min",
        "mins",
        "minutes",
        "days",
        "weeks",
        "months",
        "years",
        "yr",
        "yrs",
        "mo",
        "wk",
    }
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
    text: str = ""
    """The number as written."""


UNIT_ABS_TOL: dict[str, float] = {
    "mmHg": 0.5,
    "/min": 0.5,
    "°C": 0.05,
    "°F": 0.1,
    "kg": 0.05,
    "g": 0.5,
    "lb": 0.1,
    "cm": 0.5,
    "mm": 0.5,
    "in": 0.1,
    "%": 0.05,
}
"""Per-unit absolute tolerance (in the gold's unit): half the resolution at which the quantity
is charted. Used when larger than the gold's own precision (:func:`_gold_tolerance`)."""

_SIG_DIGITS = 3


def _decimals(text: str) -> int | None:
    m = re.search(r"[-+]?\d[\d,]*(?:\.(\d+))?", text)
    if not m:
        return None
    return len(m.group(1) or "")


def _gold_tolerance(gold: float, gold_text: str | None, gold_unit: str | None) -> float:
    """Half a unit in the last place of the gold as recorded, at most 3 significant digits;
    or the unit's :data:`UNIT_ABS_TOL` when larger."""
    recorded = _decimals(gold_text) if gold_text else None
    if gold == 0:
        sig = recorded if recorded is not None else 0
    else:
        sig = max(0, _SIG_DIGITS - 1 - math.floor(math.log10(abs(gold))))
    dec = sig if recorded is None else min(recorded, sig)
    tol = 0.5 * 10.0 ** (-dec)
    unit = _canonical_unit(gold_unit) if gold_unit else None
    return max(tol, UNIT_ABS_TOL.get(unit or "", 0.0))


def _prepare(text: str) -> str:
    text = strip_markers(text, keep_length=True)
    for rx, repl in _UNIT_REWRITES:
        text = rx.sub(repl, text)
    return text


def _skip_spans(text: str) -> list[tuple[int, int]]:
    skip = [span for _, span in find_dates(text)]
    skip += [m.span() for rx in (_LIST_ENUM, _TIME, _CODE, _MONTH_YEAR) for m in rx.finditer(text)]
    skip += [m.span(1) for m in _YEAR_CONTEXT.finditer(text)]
    return skip


def find_number_mentions(text: str, gold_unit: str | None = None) -> list[NumberMention]:
    """The numbers in ``text`` with their stated units, skipping citation markers (``[3]``),
    numbers inside dates (any format :func:`ragehr.patterns.find_dates` reads, and month-year
    such as ``March 2019``), clock times (``05:02:05``), codes after a code system's name
    (``LOINC 8480-6``) and list enumerators at the start of a line (``1.``, ``2)``).

    A unit is "stated" when a unit token follows the number directly or after one space
    (``165mmHg``, ``165 mm Hg``, ``37.2 °C``, ``45%``, ``72 beats per minute``): the gold
    unit in any spacing (when ``gold_unit`` is given), else one unit token; see
    :func:`_stated_unit` for what counts as a unit. ``in`` counts as inches only when no word
    follows it ("65 in." yes, "80 in 2019" no)."""
    text = _prepare(text)
    skip = _skip_spans(text)
    if gold_unit and any(ch.isdigit() for ch in gold_unit):
        # a unit with digits (``10*6/uL``, ``10*3/uL``) is not a number of the answer
        skip += [m.span() for m in re.finditer(re.escape(gold_unit), text)]
    out = []
    for m in NUMBER.finditer(text):
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
        out.append(NumberMention(value=value, unit=unit, span=(a, b), text=m.group(0)))
    return out


def _convert(value: float, unit: str | None, gold_unit: str | None) -> float | None:
    """``value`` in ``unit`` expressed in ``gold_unit``; ``None`` when incompatible.

    - both stated: the same unit, or convertible within a dimension (mass, length,
      temperature); anything else is incompatible;
    - the prediction states no unit: compared as is (nothing to check);
    - the gold has no unit but the prediction states a physical or common unit (``80 kg``
      against a unitless BMI of 80): incompatible."""
    if unit is None:
        return value
    if gold_unit is None:
        return None
    gold = _canonical_unit(gold_unit)
    if gold is None or unit == gold:
        return value
    src, dst = _CONVERTIBLE.get(unit), _CONVERTIBLE.get(gold)
    if src is None or dst is None or src.dimension != dst.dimension:
        return None
    base = value * src.factor + src.offset
    return (base - dst.offset) / dst.factor


def _question_numbers(question: str | None) -> set[float]:
    if not question:
        return set()
    return {m.value for m in find_number_mentions(question)}


def number_candidates(
    pred_text: str, gold_unit: str | None = None, question: str | None = None
) -> list[tuple[float, ...]]:
    """The values (in the gold's unit) an answer offers for a number question: its number
    mentions (see :func:`find_number_mentions`) whose unit is compatible with the gold's,
    leaving out numbers the question itself contains (a name such as "Pain severity 0-10").

    A pair written ``165/95`` (a blood pressure) is one candidate of two values, either of
    which may be the gold (the systolic or the diastolic question)."""
    qnums = _question_numbers(question)
    answer = extract_answer(pred_text)
    prepared = _prepare(answer)
    mentions = find_number_mentions(answer, gold_unit)
    out: list[tuple[float, ...]] = []
    prev_end = None
    for m in mentions:
        if m.value in qnums and m.unit is None:
            prev_end = None
            continue
        v = _convert(m.value, m.unit, gold_unit)
        paired = prev_end is not None and prepared[prev_end : m.span[0]] == "/" and out
        if v is not None:
            if paired:
                out[-1] = (*out[-1], v)
            else:
                out.append((v,))
        prev_end = m.span[1] if m.unit is None else None
    return out


def numeric_match(
    pred_text: str,
    gold_value: float,
    gold_unit: str | None = None,
    *,
    gold_text: str | None = None,
    question: str | None = None,
) -> bool:
    """Whether the answer states ``gold_value`` and nothing else.

    Every candidate (:func:`number_candidates`) must lie within the gold's tolerance
    (:func:`_gold_tolerance`: the recorded precision of ``gold_text``, at most 3 significant
    digits, or the unit's :data:`UNIT_ABS_TOL`) and there must be at least one. Units:

    - same unit after normalising case, spaces, brackets and common spellings (``mm[Hg]`` =
      ``mmHg`` = ``mm Hg``; ``/min`` = ``bpm``; ``Cel`` = ``°C`` = ``degrees C``): no change;
    - mass kg/g/mg/ug(mcg)/lb(``[lb_av]``)/oz, length m/cm/mm/in(``[in_us]``)/ft,
      temperature °C(``Cel``)/°F(``[degF]``): converted;
    - anything else (``80 kg`` against a gold ``cm``, or against a gold without a unit): not
      a candidate for this question."""
    gold = float(gold_value)
    cands = number_candidates(pred_text, gold_unit, question)
    if not cands:
        return False
    tol = _gold_tolerance(gold, gold_text, gold_unit) + 1e-9 * max(1.0, abs(gold))
    return all(any(abs(v - gold) <= tol for v in group) for group in cands)


# ---------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------

_MON_RX = "|".join(sorted(MONTHS, key=len, reverse=True))
_MONTH_YEAR = re.compile(
    rf"\b(?P<name>{_MON_RX})\.?,?\s+(?P<y1>\d{{4}})\b"
    r"|(?<![\d/-])(?P<y2>\d{4})-(?P<m2>\d{1,2})(?![\d-])"
    r"|(?<![\d/])(?P<m3>\d{1,2})/(?P<y3>\d{4})(?![\d/])",
    re.I,
)
_YEAR_CONTEXT = re.compile(
    r"\b(?:in|during|year|since|from|of|by|until|before|after|throughout)\s+(?:the\s+year\s+)?"
    r"((?:19|20)\d{2})\b(?!\s*(?:%|[A-Za-z/]))",
    re.I,
)
_BARE_YEAR = re.compile(r"^\s*((?:19|20)\d{2})\s*[.!]?\s*$")


def _date_mentions(text: str) -> tuple[set[date], set[tuple[int, int]], set[int]]:
    """(full dates, (year, month) mentions without a day, years in a date context) of a text."""
    full = find_dates(text)
    spans = [s for _, s in full]
    months: set[tuple[int, int]] = set()
    for m in _MONTH_YEAR.finditer(text):
        if any(m.start() < e and s < m.end() for s, e in spans):
            continue
        try:
            if m.group("name"):
                months.add((int(m.group("y1")), MONTHS[m.group("name").lower().rstrip(".")]))
            elif m.group("y2"):
                mo = int(m.group("m2"))
                if 1 <= mo <= 12:
                    months.add((int(m.group("y2")), mo))
            else:
                mo = int(m.group("m3"))
                if 1 <= mo <= 12:
                    months.add((int(m.group("y3")), mo))
        except (KeyError, ValueError):
            continue
    years = {int(y) for y in _YEAR_CONTEXT.findall(text)}
    bare = _BARE_YEAR.match(text)
    if bare:
        years.add(int(bare.group(1)))
    return {d for d, _ in full}, months, years


def date_match(pred_text: str, gold_iso_date: str) -> bool:
    """Whether the answer states the gold date, and no other.

    - Full gold ``YYYY-MM-DD``: the answer has at least one full date and every full date in it
      is the gold (any format :func:`ragehr.patterns.find_dates` reads), and no month or year
      mention outside a full date disagrees.
    - Month gold ``YYYY-MM``: every full date and every month mention (``2019-03``,
      ``3/2019``, ``March 2019``) is in that month, and there is at least one.
    - Year gold ``YYYY``: every date, month and year in a date context ("in 2019", or the
      whole answer "2019") is in that year, and there is at least one. A number that merely
      equals the year ("glucose 2019 mg/dL") is not a year.

    Raises ``ValueError`` for a gold that is none of these."""
    gold = gold_iso_date.strip()
    full, months, years = _date_mentions(extract_answer(pred_text))
    m = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", gold)
    if m:
        g = date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        return full == {g} and all(mo == (g.year, g.month) for mo in months) and all(y == g.year for y in years)
    m = re.fullmatch(r"(\d{4})-(\d{1,2})", gold)
    if m:
        y, mo = int(m.group(1)), int(m.group(2))
        if not 1 <= mo <= 12:
            raise ValueError(f"not an ISO date: {gold_iso_date!r}")
        got = {(d.year, d.month) for d in full} | months
        return bool(got) and got == {(y, mo)} and all(yy == y for yy in years)
    if re.fullmatch(r"\d{4}", gold):
        y = int(gold)
        got_years = {d.year for d in full} | {yy for yy, _ in months} | years
        return got_years == {y}
    raise ValueError(f"not an ISO date: {gold_iso_date!r}")


# ---------------------------------------------------------------------------------------------
# Yes / no
# ---------------------------------------------------------------------------------------------

_YES_WORDS = frozenset({"yes", "yeah", "yep", "yup", "affirmative", "correct"})
_NO_WORDS = frozenset({"no", "nope", "not", "never", "none", "neither", "nor", "negative"})
_YN_TOKEN = re.compile(r"[a-z]+n't|[a-z]+")


def parse_yes_no(pred_text: str) -> Literal["yes", "no"] | None:
    """The yes/no answer a prediction gives in its first sentence, or ``None``.

    1. An abstention (:func:`is_abstention`) gives ``None``.
    2. If the first word of the first sentence is a yes word (``yes``, ``yeah``, ``yep``,
       ``yup``, ``correct``, ``affirmative``) or a no word (``no``, ``nope``, ``not``,
       ``never``, ``none``, ``negative``...), that is the answer: "No, she has never been
       prescribed warfarin" is no, "Yes, although it is not active now" is yes.
    3. Otherwise the first cue of the first sentence decides: a yes word gives yes; a negation
       (a no word or an ``n't`` contraction) gives no ("She has not been prescribed warfarin").
    4. No cue in the first sentence gives ``None``: a bare "She was prescribed warfarin" is not
       read as yes, and a "no" in a later sentence or a quoted evidence line is not the answer.
    """
    if is_abstention(pred_text):
        return None
    tokens = _YN_TOKEN.findall(first_sentence(extract_answer(pred_text)).lower())

    def cue(tok: str) -> Literal["yes", "no"] | None:
        if tok in _YES_WORDS:
            return "yes"
        if tok in _NO_WORDS or tok.endswith("n't"):
            return "no"
        return None

    for tok in tokens:
        c = cue(tok)
        if c is not None:
            return c
    return None


def yes_no_match(pred_text: str, gold: str) -> bool:
    """Whether :func:`parse_yes_no` of the prediction equals ``gold`` (``yes``/``no``, any
    case). No answer found, or an abstention, is ``False``."""
    g = gold.strip().lower()
    if g not in ("yes", "no"):
        raise ValueError(f"gold must be 'yes' or 'no', got {gold!r}")
    return parse_yes_no(pred_text) == g


# ---------------------------------------------------------------------------------------------
# Lists
# ---------------------------------------------------------------------------------------------


def list_match(pred_text: str, gold_items: Sequence[str]) -> float:
    """Recall: the share of distinct gold items that the prediction mentions.

    An item is mentioned when its alphanumeric tokens occur in the prediction in order,
    separated only by punctuation, spaces or articles, at word boundaries, case-insensitively
    (so ``Influenza, seasonal, injectable`` matches ``influenza seasonal injectable``, and
    ``Asthma`` does not match ``asthmatic``). An empty gold list gives 1.0. Recall alone
    rewards dumping the record: score lists with :func:`list_f1`."""
    return _list_scores(pred_text, gold_items)[0]


_LINE_SPLIT = re.compile(r"\n+")
_BULLET = re.compile(r"^\s*(?:[-*\u2022\u2023\u25e6]|\d{1,2}[.)])\s+")
_FILLER = frozenset({"and", "or", "also", "including", "plus", "as", "well", "etc", "other", "none"})


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
            kept = [w for w in words(seg) if w not in _FILLER]
            if kept:
                items.append(seg)
    return items


def _list_scores(pred_text: str, gold_items: Sequence[str]) -> tuple[float, float, float]:
    gold = list(dict.fromkeys(g for g in gold_items if words(g)))
    text = strip_markers(pred_text)
    found = 0
    # longest first, so that an item inside another item's name is masked by the longer one
    for g in sorted(gold, key=lambda s: (-len(s), s)):
        rx = phrase_regex(g)
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


# ---------------------------------------------------------------------------------------------
# Counts
# ---------------------------------------------------------------------------------------------

_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_SELF_COUNTING = {"once": 1, "twice": 2, "thrice": 3}
_COUNT_NOUNS = frozenset(
    "time visit encounter occasion dose shot vaccination vaccine immunization procedure "
    "admission appointment prescription test measurement reading result event episode".split()
)
_HOW_MANY = re.compile(r"\bhow\s+many\s+(?:different\s+|distinct\s+|separate\s+)?([a-z]+)", re.I)
_BARE_COUNT = re.compile(r"^\s*(\d+|[a-z]+)\s*[.!]?\s*$", re.I)


def _stem(w: str) -> str:
    w = w.lower()
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith("s") and not w.endswith("ss") and len(w) > 3:
        return w[:-1]
    return w


def count_candidates(pred_text: str, question: str | None = None) -> list[int]:
    """The counts an answer offers: a numeral or number word (``zero`` .. ``twenty``)
    followed, directly or after up to two words, by a counted noun (the question's "how many
    <noun>", or one of :data:`_COUNT_NOUNS`); ``once``/``twice``/``thrice``; ``no <noun>``
    as 0; or the whole answer being one number ("3.", "Three", "None"). Dates, times, codes
    and markers are skipped; "one of them" counts nothing."""
    nouns = set(_COUNT_NOUNS)
    if question:
        m = _HOW_MANY.search(question)
        if m:
            nouns.add(_stem(m.group(1)))
    answer = extract_answer(pred_text)
    text = _prepare(answer)
    bare = _BARE_COUNT.match(answer)
    if bare:
        tok = bare.group(1).lower()
        if tok.isdigit():
            return [int(tok)]
        if tok in _NUMBER_WORDS or tok in ("none", "never"):
            return [_NUMBER_WORDS.get(tok, 0)]
    skip = _skip_spans(text)
    out: list[int] = []
    for m in re.finditer(r"(?<![\w.])(\d+)(?![\d.,]\d)|\b([A-Za-z]+)\b", text):
        a, b = m.span()
        if any(a < e and s < b for s, e in skip):
            continue
        if m.group(1) is not None:
            value: int | None = int(m.group(1))
        else:
            w = m.group(2).lower()
            if w in _SELF_COUNTING:
                out.append(_SELF_COUNTING[w])
                continue
            value = 0 if w == "no" else _NUMBER_WORDS.get(w)
        if value is None:
            continue
        following = [_stem(w) for w in re.findall(r"[A-Za-z]+", text[b : b + 60])[:3]]
        if not following or following[0] in ("of", "or", "to", "and"):
            continue
        if any(w in nouns for w in following[: 1 if m.group(2) and m.group(2).lower() == "no" else 3]):
            out.append(value)
    return out


def count_match(pred_text: str, gold_count: int, question: str | None = None) -> bool:
    """Whether the answer states ``gold_count`` and no other count: every candidate of
    :func:`count_candidates` equals it, and there is one. "3 or 4 visits" is wrong."""
    cands = count_candidates(pred_text, question)
    return bool(cands) and all(c == int(gold_count) for c in cands)


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

    Every result has ``accuracy`` (in [0, 1]), ``abstained`` (1.0 when :func:`is_abstention`;
    accuracy is then 0 whatever the gold) and ``exact_match`` (normalised equality with
    ``item.answer``); the extras are:

    - ``number``: :func:`numeric_match` with ``answer_value``, ``unit``, the gold's text (its
      recorded precision) and the question (numbers it contains are not candidates);
    - ``date``: :func:`date_match` with ``answer_value`` (or ``answer``);
    - ``yes_no``: :func:`yes_no_match` (first sentence);
    - ``count``: :func:`count_match` with the question's counted noun;
    - ``list``: ``recall``, ``precision``, ``f1`` from :func:`list_f1`; accuracy is the F1;
    - ``text``: accuracy is 1.0 when the gold answer's tokens occur in order in the answer
      (phrase containment); plus ``token_f1`` and ``rouge_l``.
    """
    abstained = is_abstention(pred_text)
    out: dict[str, float] = {"exact_match": float(exact_match(pred_text, item.answer)), "abstained": float(abstained)}
    atype = item.answer_type
    acc: float
    if atype == "number":
        gold = _as_float(item.answer_value)
        if gold is None:
            gold = _as_float(item.answer.split()[0]) if item.answer.split() else None
        if gold is None:
            raise ValueError(f"item {item.item_id}: number answer without a numeric value")
        acc = float(numeric_match(pred_text, gold, item.unit, gold_text=item.answer, question=item.question))
    elif atype == "date":
        gold_date = item.answer_value if isinstance(item.answer_value, str) else item.answer
        acc = float(date_match(pred_text, gold_date))
    elif atype == "yes_no":
        gold_yn = item.answer_value if isinstance(item.answer_value, str) else item.answer
        acc = float(yes_no_match(pred_text, gold_yn))
    elif atype == "count":
        gold_n = _as_float(item.answer_value)
        if gold_n is None:
            gold_n = _as_float(item.answer)
        if gold_n is None:
            raise ValueError(f"item {item.item_id}: count answer without a number")
        acc = float(count_match(pred_text, int(gold_n), item.question))
    elif atype == "list":
        items = item.answer_items or tuple(s.strip() for s in item.answer.split(";") if s.strip())
        recall, precision, f1 = list_f1(extract_answer(pred_text), items)
        out.update(recall=recall, precision=precision, f1=f1)
        acc = f1
    elif atype == "text":
        gold_text = item.answer_value if isinstance(item.answer_value, str) else item.answer
        acc = float(contains_phrase(extract_answer(pred_text), gold_text))
        out["token_f1"] = token_f1(pred_text, gold_text)
        out["rouge_l"] = rouge_l(pred_text, gold_text)
    else:  # pragma: no cover - AnswerType is a closed Literal
        raise ValueError(f"unknown answer_type {atype!r}")
    if abstained:
        acc = 0.0
    return {"accuracy": acc, **out}
