"""The grounding check: every number and date in an answer must appear in the evidence it
cites. Those that do not are reported as unsupported, never silently shown as fact.

Dates are compared as calendar dates whatever their format (``2018-10-08``, ``10/08/2018``,
``October 8, 2018``, ``Oct 8 2018``); numbers as numbers (``1,000`` = ``1000``, ``98.20`` =
``98.2``). Citation markers ``[n]`` are not numbers. An answer that cites nothing is checked
against all the evidence it was given, and says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date

from pydantic import BaseModel, ConfigDict

from ragehr.types import EvidenceItem

_MONTHS = {
    m: i
    for i, names in enumerate(
        [("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",), ("jun", "june"),
         ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
         ("dec", "december")],
        start=1,
    )
    for m in names
}
_MON = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DATE_PATTERNS = [
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"), ("y", "m", "d")),
    (re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b"), ("m", "d", "y")),
    (re.compile(rf"\b({_MON})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.I), ("M", "d", "y")),
    (re.compile(rf"\b(\d{{1,2}})\s+({_MON})\.?,?\s+(\d{{4}})\b", re.I), ("d", "M", "y")),
]
_MARKER = re.compile(r"\[\d+(?:\s*,\s*\d+)*\]")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])[-+]?\d+(?:\.\d+)?")


class Grounding(BaseModel):
    model_config = ConfigDict(frozen=True)

    cited: tuple[int, ...]
    """Markers the answer cites that exist in the evidence."""
    unknown_citations: tuple[int, ...]
    """Markers the answer cites that are not in the evidence."""
    unsupported: tuple[str, ...]
    """Numbers and dates in the answer found in none of the cited evidence."""
    checked: int
    """How many numbers and dates were checked."""
    uncited: bool
    """The answer cites nothing, so it was checked against all the evidence."""

    @property
    def ok(self) -> bool:
        return not self.unsupported and not self.unknown_citations


def _year(y: str) -> int:
    n = int(y)
    return n + (2000 if n < 50 else 1900) if len(y) == 2 else n


def find_dates(text: str) -> list[tuple[date, tuple[int, int]]]:
    """Calendar dates in ``text`` with their character spans."""
    out = []
    for rx, order in _DATE_PATTERNS:
        for m in rx.finditer(text):
            parts = dict(zip(order, m.groups()))
            try:
                month = _MONTHS[parts["M"].lower().rstrip(".")] if "M" in parts else int(parts["m"])
                out.append((date(_year(parts["y"]), month, int(parts["d"])), m.span()))
            except (ValueError, KeyError):
                continue
    return sorted(out, key=lambda ds: ds[1])


def _norm_number(s: str) -> str:
    s = s.replace(",", "").lstrip("+")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s or "0"


def find_numbers(text: str, skip: list[tuple[int, int]]) -> list[str]:
    nums = []
    for m in _NUMBER.finditer(text):
        a, b = m.span()
        if any(a < e and s < b for s, e in skip):
            continue
        nums.append(_norm_number(m.group(0)))
    return nums


def _facts(text: str) -> tuple[set[date], set[str]]:
    dates = find_dates(text)
    spans = [span for _, span in dates]
    numbers = set(find_numbers(text, spans))
    # parts of dates count as numbers too (an answer may say "day 8" or "2018")
    for d, _ in dates:
        numbers.update({str(d.year), str(d.month), str(d.day)})
    return {d for d, _ in dates}, numbers


def unsupported_spans(answer: str, grounding: Grounding) -> list[tuple[int, int]]:
    """Character spans of ``answer`` holding the numbers and dates ``grounding`` reports as
    unsupported (for marking them where the answer is shown). Spans index ``answer`` itself:
    citation markers are blanked to spaces of the same length, never removed."""
    if not grounding.unsupported:
        return []
    bad = set(grounding.unsupported)
    body = _MARKER.sub(lambda m: " " * len(m.group(0)), answer)
    dates = find_dates(body)
    date_spans = [span for _, span in dates]
    out = [(a, b) for _, (a, b) in dates if body[a:b] in bad]
    for m in _NUMBER.finditer(body):
        a, b = m.span()
        if any(a < e and s < b for s, e in date_spans):
            continue
        if _norm_number(m.group(0)) in bad:
            out.append((a, b))
    return sorted(out)


def check_grounding(answer: str, evidence: Sequence[EvidenceItem]) -> Grounding:
    by_marker = {it.marker: it for it in evidence}
    cited_all = [int(n) for m in _MARKER.finditer(answer) for n in re.findall(r"\d+", m.group(0))]
    cited = tuple(sorted({n for n in cited_all if n in by_marker}))
    unknown = tuple(sorted({n for n in cited_all if n not in by_marker}))
    pool = [by_marker[n] for n in cited] if cited else list(evidence)
    ev_dates: set[date] = set()
    ev_numbers: set[str] = set()
    for it in pool:
        d, n = _facts(it.text)
        ev_dates |= d
        ev_numbers |= n
        if it.start is not None:
            ev_dates.add(it.start.date())
    body = _MARKER.sub(" ", answer)
    ans_dates = find_dates(body)
    spans = [span for _, span in ans_dates]
    unsupported: list[str] = []
    for d, (a, b) in ans_dates:
        if d not in ev_dates:
            unsupported.append(body[a:b])
    numbers = find_numbers(body, spans)
    for n in numbers:
        if n not in ev_numbers:
            unsupported.append(n)
    return Grounding(
        cited=cited,
        unknown_citations=unknown,
        unsupported=tuple(dict.fromkeys(unsupported)),
        checked=len(ans_dates) + len(numbers),
        uncited=not cited,
    )
