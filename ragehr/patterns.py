"""The one owner of the text patterns that grounding and evaluation both read: citation markers,
calendar dates in any common format, and numbers.

:mod:`ragehr.pipeline.grounding` (is every number and date of an answer in its evidence?) and
:mod:`ragehr.eval.metrics` (does the answer state the gold value?) must agree on what a citation
marker, a date and a number are; before this module each had its own copy and they disagreed
(``[1-3]`` was a citation for one and two numbers for the other). Pure functions; no I/O.

- A citation marker is ``[n]``, ``[n, m]``, ``[n; m]`` or a range ``[n-m]`` with numbers of at
  most 3 digits: a prompt never shows 1000 pieces, and a note's ``MRN: [1234555]`` is an
  identifier (a number of the record), not a citation.
- Dates: ``2019-03-02`` (and ``2019-03-02T10:00``), ``2019/03/02``, ``3/2/2019`` and
  ``3/2/19`` (US month/day), ``March 2, 2019``, ``Mar. 2nd 2019``, ``2 March 2019``.
- Numbers: ``1,000`` = 1000, ``-2.5``; not the digits inside a word such as ``A1c``.
"""

from __future__ import annotations

import re
from datetime import date

__all__ = [
    "ABSTAIN",
    "abstains",
    "CITATION_MARKER",
    "MONTHS",
    "NUMBER",
    "citation_numbers",
    "find_dates",
    "find_numbers",
    "norm_number",
    "strip_markers",
]

CITATION_MARKER = re.compile(r"\[\s*\d{1,3}(?:\s*(?:[,;]|-|\u2013)\s*\d{1,3})*\s*\]")
"""A citation marker: ``[3]``, ``[1, 2]``, ``[1;2]``, ``[1-3]``, ``[1\u20133]`` (numbers of
1 to 3 digits)."""

_MONTH_NAMES = (
    ("jan", "january"),
    ("feb", "february"),
    ("mar", "march"),
    ("apr", "april"),
    ("may",),
    ("jun", "june"),
    ("jul", "july"),
    ("aug", "august"),
    ("sep", "sept", "september"),
    ("oct", "october"),
    ("nov", "november"),
    ("dec", "december"),
)
MONTHS: dict[str, int] = {m: i for i, names in enumerate(_MONTH_NAMES, start=1) for m in names}
"""Month names and abbreviations (lowercase) -> month number."""
MONTH_NAMES: tuple[tuple[str, ...], ...] = _MONTH_NAMES
_MON = "|".join(sorted(MONTHS, key=len, reverse=True))

_DATE_PATTERNS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})(?=\b|T)"), ("y", "m", "d")),
    (re.compile(r"\b(\d{4})/(\d{1,2})/(\d{1,2})\b"), ("y", "m", "d")),
    (re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b"), ("m", "d", "y")),
    (re.compile(rf"\b({_MON})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I), ("M", "d", "y")),
    (re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+({_MON})\.?,?\s+(\d{{4}})\b", re.I), ("d", "M", "y")),
)

NUMBER = re.compile(r"(?<![\w.])[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])[-+]?\d+(?:\.\d+)?")
"""A number: ``1,000`` = 1000, ``-2.5``; not the digits of a word such as ``A1c``."""


def citation_numbers(marker: str) -> list[int]:
    """The piece numbers one marker cites, ranges expanded: ``[1-3]`` -> 1, 2, 3; ``[2, 5]``
    -> 2, 5. A reversed or absurd range (more than 50 numbers) is read as its two ends."""
    out: list[int] = []
    for part in re.split(r"[,;]", marker.strip("[] ")):
        ends = [int(x) for x in re.findall(r"\d+", part)]
        if len(ends) == 2 and 0 <= ends[1] - ends[0] <= 50:
            out.extend(range(ends[0], ends[1] + 1))
        else:
            out.extend(ends)
    return out


def strip_markers(text: str, keep_length: bool = False) -> str:
    """``text`` without citation markers (replaced by one space, or by as many spaces as the
    marker had characters so that offsets are kept)."""
    if keep_length:
        return CITATION_MARKER.sub(lambda m: " " * len(m.group(0)), text)
    return CITATION_MARKER.sub(" ", text)


def _year(y: str) -> int:
    n = int(y)
    return n + (2000 if n < 50 else 1900) if len(y) == 2 else n


def find_dates(text: str) -> list[tuple[date, tuple[int, int]]]:
    """Calendar dates in ``text`` with their character spans, in reading order. Spans never
    overlap (the first pattern that reads a stretch of text wins)."""
    out: list[tuple[date, tuple[int, int]]] = []
    for rx, order in _DATE_PATTERNS:
        for m in rx.finditer(text):
            a, b = m.span()
            if any(a < e and s < b for _, (s, e) in out):
                continue
            parts = dict(zip(order, m.groups()))
            try:
                month = MONTHS[parts["M"].lower().rstrip(".")] if "M" in parts else int(parts["m"])
                out.append((date(_year(parts["y"]), month, int(parts["d"])), (a, b)))
            except (ValueError, KeyError):
                continue
    return sorted(out, key=lambda ds: ds[1])


def norm_number(s: str) -> str:
    """A number's text in one form: no thousands separators, no ``+``, no trailing zeros
    after the point (``1,250.50`` -> ``1250.5``, ``98.0`` -> ``98``)."""
    s = s.replace(",", "").lstrip("+")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s or "0"


def find_numbers(text: str, skip: list[tuple[int, int]] | None = None) -> list[tuple[str, tuple[int, int]]]:
    """Numbers in ``text`` as (normalised text, span), leaving out those that overlap a span
    in ``skip`` (dates, markers)."""
    skip = skip or []
    out = []
    for m in NUMBER.finditer(text):
        a, b = m.span()
        if any(a < e and s < b for s, e in skip):
            continue
        out.append((norm_number(m.group(0)), (a, b)))
    return out


ABSTAIN = re.compile(
    r"\bno\s+(?:relevant\s+|such\s+|matching\s+)?(?:evidence|information|data|documentation)\b"
    r"(?!\s+(?:that|of|for|to\s+suggest)\b)"
    r"|\b(?:does|do|did)(?:n't|\s+not)\s+(?:say|specify|state|indicate|provide|contain|include|"
    r"mention|document|record|show)\b(?=\s*(?:[.!?,;:]|$|(?:this|that|it|when|what|whether|how|"
    r"which|if|any|such|an?\s+answer|the\s+answer)\b))"
    r"|\b(?:i\s+)?(?:do\s+not|don't|cannot|can't|can\s+not|could\s+not|couldn't|am\s+unable\s+to|"
    r"unable\s+to|not\s+possible\s+to|impossible\s+to)\s+(?:be\s+)?(?:know|tell|determine|"
    r"determined|say|answer|answered|find|found|identify|confirm)\b"
    r"|\b(?:insufficient|not\s+enough|no\s+sufficient)\s+(?:information|evidence|data|context)\b"
    r"|\bnot\s+(?:available|specified|stated|provided)\s+in\s+the\s+(?:provided\s+|given\s+)?"
    r"(?:record|evidence|context|notes|data)\b"
    r"|^\s*(?:unknown|unclear|uncertain|n/?a|not\s+known|none\s+found)\s*[.!]?\s*$",
    re.I | re.M,
)
"""The wordings of an answer that declines (searched in its first sentence): every backend's
own ("No evidence in the record matches the question.", "No evidence found."), the prompt's
("The record provided does not say.") and common phrasings ("I don't know", "cannot be
determined"). The evaluation (:func:`ragehr.eval.metrics.answers.is_abstention`) and the
Self-Route retry of :mod:`ragehr.pipeline.ask` read this one pattern."""


_FIRST_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_ANSWER_PREFIX = re.compile(r"^\s*(?:final\s+)?(?:answer|a)\s*:\s*", re.I)


def abstains(answer: str) -> bool:
    """Whether ``answer`` declines: no word in it, or :data:`ABSTAIN` in its first sentence
    (citation markers and an ``Answer:`` prefix removed). The evaluation's
    ``is_abstention`` reads the answer more carefully (lead-in lines, bullets); this is the
    pipeline's cheap check for the Self-Route retry."""
    text = _ANSWER_PREFIX.sub("", strip_markers(answer).replace("\u2019", "'")).strip()
    if not re.search(r"[A-Za-z0-9]", text):
        return True
    first = _FIRST_SENTENCE.split(text, maxsplit=1)[0]
    return ABSTAIN.search(first) is not None
