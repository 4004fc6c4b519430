"""The extractive backend: no language model. It answers with the evidence lines most
relevant to the question, each with its date and citation, copied verbatim, so it is instant
and never invents anything. A floor for the ablations and a safe default for users.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable

from ragehr.llm.base import LLMBackend
from ragehr.tokens import EstimateCounter, TokenCounter
from ragehr.types import EventKind, EvidenceItem, Generation, GenerationRequest

_WORD = re.compile(r"[a-z0-9][a-z0-9.\-/]*", re.I)
_STOP = frozenset(
    "a an and are as at be by did do does for from had has have her his how in is it its of on or "
    "she that the their there this to was were what when which who with any ever patient patients "
    "record show me list all".split()
)
_RECENT = re.compile(r"\b(most recent|latest|last|current)\b", re.I)


def _terms(text: str) -> list[str]:
    out = []
    for w in _WORD.findall(text.lower()):
        w = w.strip(".-/")
        if w and w not in _STOP:
            out.append(w[:-1] if len(w) > 4 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def _lines(item: EvidenceItem) -> list[tuple[str, str]]:
    """(line text, date label) units of an evidence item: event lines, or note sentences."""
    text = item.text
    if item.kind is EventKind.NOTE:
        header, _, body = text.partition("\n")
        date = header.split(" | ")[0]
        sents = re.split(r"(?<=[.!?])\s+", body)
        return [(s.strip(), date) for s in sents if len(s.strip()) > 3]
    out = []
    for line in text.splitlines():
        if " | " in line:  # an event line carries its own date
            out.append((line.strip(), ""))
    return out


class ExtractiveBackend(LLMBackend):
    name = "extractive"

    def __init__(self, max_lines: int = 5, context_window: int = 8192) -> None:
        self.model = "extractive-v1"
        self.context_window = context_window
        self.max_lines = max_lines

    def token_counter(self) -> TokenCounter:
        return EstimateCounter()

    def params(self) -> dict:
        return {"max_lines": self.max_lines}

    def _generate(self, request: GenerationRequest, on_token: Callable[[str], None] | None = None) -> Generation:
        q = Counter(_terms(request.question))
        units = [(it, line, date) for it in request.evidence for line, date in _lines(it)]
        if not q or not units:
            return Generation(
                text="No evidence in the record matches the question.", backend=self.name, model=self.model
            )
        df: Counter[str] = Counter()
        for _, line, _ in units:
            df.update(set(_terms(line)))
        n = len(units)
        recent = bool(_RECENT.search(request.question))
        scored = []
        for idx, (it, line, date) in enumerate(units):
            terms = set(_terms(line))
            score = sum(math.log(1 + n / df[t]) for t in q if t in terms)
            if score > 0:
                when = it.start.timestamp() if it.start else 0.0
                scored.append((score, when if recent else 0.0, -idx, it, line, date))
        if not scored:
            return Generation(
                text="No evidence in the record matches the question.", backend=self.name, model=self.model
            )
        scored.sort(key=lambda s: (s[0], s[1], s[2]), reverse=True)
        best = scored[: self.max_lines]
        # Show the chosen lines in time order, each with its date and citation.
        best.sort(key=lambda s: (s[3].start.timestamp() if s[3].start else 0.0, -s[2]))
        lines = [f"- {(date + ': ') if date else ''}{line} [{it.marker}]" for _, _, _, it, line, date in best]
        text = "Relevant evidence from the record:\n" + "\n".join(lines)
        return Generation(text=text, backend=self.name, model=self.model)
