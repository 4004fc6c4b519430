"""``ask``: one question about one patient, answered from packed, cited evidence.

retrieval/selection (:mod:`ragehr.pipeline.context`) -> prompt (:mod:`ragehr.prompts`) ->
generation (any :class:`ragehr.llm.base.LLMBackend`) -> grounding check
(:mod:`ragehr.pipeline.grounding`). The budget is counted with the backend's own tokenizer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ragehr.llm.base import LLMBackend
from ragehr.index.search import PatientIndex
from ragehr.pipeline.context import ContextResult, context_json
from ragehr.pipeline.grounding import Grounding, check_grounding
from ragehr.pipeline.spec import ContextSpec, PreparedContext, effective_window, prepare_context
from ragehr.prompts import Budget, build_messages, prompt_tokens
from ragehr.types import Generation, GenerationRequest

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "AskResult", "answer_prepared", "ask", "effective_window"]

DEFAULT_MAX_NEW_TOKENS = 256


@dataclass(frozen=True)
class AskResult:
    question: str
    patient_id: str
    budget: Budget
    context: ContextResult
    generation: Generation
    grounding: Grounding
    prompt_tokens: int
    timings: dict[str, float]

    def to_json(self) -> dict:
        out = context_json(self.context, self.budget.window)
        cited = set(self.grounding.cited)
        out.update(
            {
                "question": self.question,
                "patient_id": self.patient_id,
                "answer": self.generation.text,
                "citations": [
                    {"marker": it.marker, "chunk_id": it.chunk_id, "source": it.source,
                     "start": it.start.isoformat() if it.start else None, "kind": it.kind.value}
                    for it in self.context.packed.items if it.marker in cited
                ],
                "unsupported": list(self.grounding.unsupported),
                "unknown_citations": list(self.grounding.unknown_citations),
                "grounded": self.grounding.ok,
                "uncited": self.grounding.uncited,
                "backend": self.generation.backend,
                "model": self.generation.model,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.generation.completion_tokens,
                "cached": self.generation.cached,
                "timings": self.timings,
            }
        )
        return out


def ask(
    index: PatientIndex,
    question: str,
    backend: LLMBackend,
    spec: ContextSpec | None = None,
    *,
    seed: int = 0,
    on_token: Callable[[str], None] | None = None,
    **spec_fields: Any,
) -> AskResult:
    """Answer ``question`` from ``index`` with ``backend``. The context is chosen by ``spec``
    (or by a :class:`ContextSpec` built from ``spec_fields``: ``strategy``, ``budget``,
    ``retriever``, ``order``, ``max_new_tokens``, ``retrieval``). ``on_token`` receives the
    answer's text as the backend produces it."""
    if spec is None:
        spec = ContextSpec(**{k: v for k, v in spec_fields.items() if v is not None})
    elif spec_fields:
        raise TypeError("give either a ContextSpec or its fields, not both")
    t0 = time.perf_counter()
    prep = prepare_context(index, question, spec, backend)
    return answer_prepared(
        prep, question, index.patient_id, backend, seed=seed, on_token=on_token,
        context_seconds=time.perf_counter() - t0,
    )


def answer_prepared(
    prep: PreparedContext,
    question: str,
    patient_id: str,
    backend: LLMBackend,
    *,
    seed: int = 0,
    on_token: Callable[[str], None] | None = None,
    context_seconds: float = 0.0,
) -> AskResult:
    """Generate and check the answer for a context already prepared (the second half of
    :func:`ask`). Touches no index, so batch mode runs it on several threads at once."""
    ctx, b, counter, spec = prep.context, prep.budget, prep.counter, prep.spec
    t1 = time.perf_counter()
    messages = build_messages(question, ctx.packed.block())
    n_prompt = prompt_tokens(messages, counter)
    request = GenerationRequest(
        messages=messages, question=question, evidence=ctx.packed.items,
        max_tokens=spec.max_new_tokens, temperature=0.0, seed=seed,
    )
    gen = backend.generate(request, on_token=on_token)
    t2 = time.perf_counter()
    grounding = check_grounding(gen.text, ctx.packed.items)
    t3 = time.perf_counter()
    return AskResult(
        question=question,
        patient_id=patient_id,
        budget=b,
        context=ctx,
        generation=gen,
        grounding=grounding,
        prompt_tokens=gen.prompt_tokens or n_prompt,
        timings={"context": round(context_seconds, 4), "generate": round(t2 - t1, 4), "grounding": round(t3 - t2, 4)},
    )
