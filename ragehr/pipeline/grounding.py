"""The grounding check: every number and date in an answer must appear in the evidence it
cites. Those that do not are reported as unsupported, never silently shown as fact.

Dates are compared as calendar dates whatever their format (``2018-10-08``, ``10/08/2018``,
``October 8, 2018``, ``Oct 8 2018``); numbers as numbers (``1,000`` = ``1000``, ``98.20`` =
``98.2``). Citation markers (``[n]``, ``[1, 2]``, ``[1-3]``; at most 3 digits, so a note's
``MRN: [1234555]`` is a number, not a citation) are not numbers. The patterns are
:mod:`ragehr.patterns`, shared with the evaluation metrics. An answer that cites nothing is checked
against all the evidence it was given, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from pydantic import BaseModel, ConfigDict

from ragehr.patterns import CITATION_MARKER, citation_numbers, find_dates, norm_number, strip_markers
from ragehr.patterns import find_numbers as _find_numbers
from ragehr.types import EvidenceItem

__all__ = ["Grounding", "check_grounding", "find_dates", "find_numbers", "unsupported_spans"]


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
    derived: tuple[str, ...] = ()
    """Numbers a computed answer made rather than read (a count, an average, a gap in days):
    not looked for in the evidence, and listed here so that the reader sees which they are."""

    @property
    def ok(self) -> bool:
        return not self.unsupported and not self.unknown_citations


def find_numbers(text: str, skip: list[tuple[int, int]]) -> list[str]:
    """Normalised numbers of ``text`` outside the ``skip`` spans (see :mod:`ragehr.patterns`)."""
    return [n for n, _ in _find_numbers(text, skip)]


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
    body = strip_markers(answer, keep_length=True)
    dates = find_dates(body)
    date_spans = [span for _, span in dates]
    out = [(a, b) for _, (a, b) in dates if body[a:b] in bad]
    out += [span for n, span in _find_numbers(body, date_spans) if n in bad]
    return sorted(out)


def check_grounding(answer: str, evidence: Sequence[EvidenceItem], derived: Sequence[str] = ()) -> Grounding:
    """Check ``answer`` against the ``evidence`` it cites. ``derived``: numbers that a computed
    answer (:mod:`ragehr.answers`) computed from the cited events rather than read in them
    (counts, averages); they are accepted and reported in :attr:`Grounding.derived`. Generated
    answers pass none."""
    by_marker = {it.marker: it for it in evidence}
    cited_all = [n for m in CITATION_MARKER.finditer(answer) for n in citation_numbers(m.group(0))]
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
    body = strip_markers(answer)
    ans_dates = find_dates(body)
    spans = [span for _, span in ans_dates]
    unsupported: list[str] = []
    for day, (a, b) in ans_dates:
        if day not in ev_dates:
            unsupported.append(body[a:b])
    numbers = find_numbers(body, spans)
    made = {norm_number(d) for d in derived}
    used_derived = []
    for num in numbers:
        if num in ev_numbers:
            continue
        if num in made:
            used_derived.append(num)
        else:
            unsupported.append(num)
    return Grounding(
        cited=cited,
        unknown_citations=unknown,
        unsupported=tuple(dict.fromkeys(unsupported)),
        checked=len(ans_dates) + len(numbers),
        uncited=not cited,
        derived=tuple(dict.fromkeys(used_derived)),
    )
