"""The abstract generation backend every answering model implements.

:meth:`LLMBackend.generate` does the plumbing (timing, stamping the backend and model names on
the result) and calls one abstract :meth:`LLMBackend._generate`. A backend also says how
large its context window is, how it counts tokens (its own tokenizer when it has one, else
:class:`~ragehr.tokens.EstimateCounter`) and which settings change its output
(:meth:`LLMBackend.params`, part of the cache key in :mod:`ragehr.llm.cache`).

This module does not load models, open connections or cache anything.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from typing import Any

from ragehr.errors import RagehrError
from ragehr.tokens import EstimateCounter, TokenCounter
from ragehr.types.generation import Generation, GenerationRequest

__all__ = ["BackendError", "LLMBackend"]


class BackendError(RagehrError):
    """A backend that failed to answer: an unreachable server, an HTTP error, a model that
    crashed. The message is one line and never holds prompt text."""

    exit_code = 5


class LLMBackend(abc.ABC):
    """A model that turns a :class:`GenerationRequest` into a :class:`Generation`."""

    name: str
    """The backend's name (``fake``, ``local``, ``openai``, ...), as given to
    :func:`ragehr.llm.make_backend`."""
    model: str
    """The model's id (a model name, or a GGUF file's name)."""
    context_window: int
    """How many tokens (prompt plus answer) the model takes."""

    def token_counter(self) -> TokenCounter:
        """The counter the prompt budget uses: the model's own tokenizer where the backend has
        one; this default is the conservative :class:`~ragehr.tokens.EstimateCounter`."""
        return EstimateCounter()

    def params(self) -> dict[str, Any]:
        """Backend settings that change the output, besides the request's own (messages,
        max_tokens, temperature, seed, stop) and the model id. JSON-serialisable; part of
        the cache key."""
        return {}

    concurrency: int = 1
    """How many :meth:`generate` calls a caller may have in flight at once (batch mode and
    the eval runner use a thread pool this size). Served models batch concurrent requests;
    an in-process model answers one at a time."""

    supports_streaming: bool = False
    """Whether :meth:`_generate` calls ``on_token`` as text is produced. Backends that do not
    stream have their whole answer passed to ``on_token`` once, at the end."""

    def generate(self, request: GenerationRequest, on_token: Callable[[str], None] | None = None) -> Generation:
        """Answer ``request``; the result carries this backend's name and model and the
        wall-clock seconds the call took. ``on_token``, when given, receives the answer's
        text in pieces as they are produced (their concatenation is the answer)."""
        start = time.perf_counter()
        if self.supports_streaming:
            gen = self._generate(request, on_token=on_token)
        else:
            gen = self._generate(request)
            if on_token is not None and gen.text:
                on_token(gen.text)
        seconds = time.perf_counter() - start
        return gen.model_copy(update={"seconds": seconds, "backend": self.name, "model": self.model})

    @abc.abstractmethod
    def _generate(self, request: GenerationRequest, on_token: Callable[[str], None] | None = None) -> Generation:
        """Produce the answer. ``backend``, ``model`` and ``seconds`` may be left at any value:
        :meth:`generate` overwrites them. Only backends with ``supports_streaming`` are given
        ``on_token``."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r}, context_window={self.context_window})"
