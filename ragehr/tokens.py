"""Token counting.

Later layers count with the generating model's own tokenizer; this module holds the one
documented estimate used when no tokenizer is at hand (``ragehr inspect``), and the protocol
every counter follows.
"""

from __future__ import annotations

import math
import re
from typing import Protocol

_PIECES = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class EstimateCounter:
    """A conservative estimate: the larger of (characters / 3) and (words + punctuation marks).

    Subword tokenizers average about 4 characters a token on English prose; clinical text,
    with its numbers, codes and abbreviations, runs shorter. Dividing by 3 and never going
    below one token per word or punctuation mark over-counts rather than under-counts, so a
    budget computed with it is not exceeded by a real tokenizer on typical text."""

    name = "estimate:chars/3"

    def count(self, text: str) -> int:
        if not text:
            return 0
        return max(math.ceil(len(text) / 3), len(_PIECES.findall(text)))


def estimate_tokens(text: str) -> int:
    return EstimateCounter().count(text)
