"""A deterministic backend for tests and ``--backend fake``: no model, no I/O.

It answers with a fixed string, or with a line quoting the first piece of evidence, and
records every request it receives so that tests can inspect the exact prompt. It does not
read the messages to build its answer and makes no attempt to sound like a model.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ragehr.llm.base import LLMBackend
from ragehr.tokens import EstimateCounter, TokenCounter
from ragehr.types.generation import Generation, GenerationRequest

__all__ = ["FakeBackend"]


class FakeBackend(LLMBackend):
    """Answers ``answer`` when given, else ``"Based on [m]: <first 80 characters of the first
    evidence item's text>"`` (``"No evidence found."`` when there is no evidence).

    Token counts are :class:`~ragehr.tokens.EstimateCounter` counts of the messages and the
    answer. ``requests`` holds every request, in order (thread-safe)."""

    name = "fake"

    def __init__(self, context_window: int = 4096, answer: str | None = None) -> None:
        self.model = "fake"
        self.context_window = context_window
        self.answer = answer
        self.requests: list[GenerationRequest] = []
        self._lock = threading.Lock()

    def token_counter(self) -> TokenCounter:
        return EstimateCounter()

    def params(self) -> dict[str, Any]:
        return {"answer": self.answer}

    def _generate(self, request: GenerationRequest, on_token: Callable[[str], None] | None = None) -> Generation:
        with self._lock:
            self.requests.append(request)
        if self.answer is not None:
            text = self.answer
        elif request.evidence:
            first = request.evidence[0]
            text = f"Based on [{first.marker}]: {first.text[:80]}"
        else:
            text = "No evidence found."
        counter = EstimateCounter()
        prompt_tokens = sum(counter.count(m.content) for m in request.messages)
        return Generation(
            text=text,
            backend=self.name,
            model=self.model,
            prompt_tokens=prompt_tokens,
            completion_tokens=counter.count(text),
        )
