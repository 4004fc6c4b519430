"""``ask``: one question about one patient, answered from packed, cited evidence.

retrieval/selection (:mod:`ragehr.pipeline.context`) -> prompt (:mod:`ragehr.prompts`) ->
generation (any :class:`ragehr.llm.base.LLMBackend`) -> grounding check
(:mod:`ragehr.pipeline.grounding`). The budget is counted with the backend's own tokenizer.

Routing (``answer``, :data:`ANSWER_MODES`):

- ``computed``: the answer computed from the record's structured events
  (:mod:`ragehr.answers`), citing the packed evidence that holds each event (those chunks are
  packed first); when it cannot compute, the answer says so and why (an abstention);
- ``generated``: the backend answers from the packed evidence (the plain baseline);
- ``auto``: computed where it applies, else generated with a Self-Route-style fallback: when
  the generated answer abstains or fails the grounding check, the backend is asked once more
  with a larger context (the model's whole window, retrieved and most recent evidence
  combined); both attempts are recorded (``attempts``), and the second answer is kept
  (``retry=True`` gives ``generated`` the same fallback).

Every result says ``answered_by`` (``computed`` | ``generated``) and ``answer_reason``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ragehr.answers import Computed, Declined, chunks_for, compute, decline_text, word
from ragehr.errors import ConfigError
from ragehr.index.search import PatientIndex, anchor_plan
from ragehr.llm.base import LLMBackend
from ragehr.patterns import abstains
from ragehr.pipeline.context import ContextResult, context_json, record_pieces
from ragehr.pipeline.grounding import Grounding, check_grounding
from ragehr.pipeline.spec import ANSWER_MODES, ContextSpec, PreparedContext, effective_window, prepare_context
from ragehr.prompts import Budget, build_messages, prompt_tokens
from ragehr.retrieval.intent import plan_question
from ragehr.types import Generation, GenerationRequest

__all__ = [
    "ANSWER_MODES",
    "DEFAULT_MAX_NEW_TOKENS",
    "AskResult",
    "answer_prepared",
    "ask",
    "check_answer_mode",
    "computed_for",
    "effective_window",
    "try_computed",
]


def check_answer_mode(mode: str) -> str:
    if mode not in ANSWER_MODES:
        raise ConfigError(f"answer must be one of {', '.join(ANSWER_MODES)}, not {mode!r}")
    return mode


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
    answered_by: str = "generated"
    """``computed`` or ``generated``."""
    answer_reason: str | None = None
    """Why it was answered that way (what was computed, or why the computed path declined)."""
    attempts: tuple[dict, ...] = ()
    """Self-Route: each generation tried, in order (its context size, answer, why it was
    retried); empty when the first answer stood or the answer was computed."""
    computed: Computed | None = None
    """The computed answer's events and figures (``answered_by == "computed"``), for charts."""

    def to_json(self) -> dict:
        out = context_json(self.context, self.budget.window)
        cited = set(self.grounding.cited)
        out.update(
            {
                "question": self.question,
                "patient_id": self.patient_id,
                "answer": self.generation.text,
                "citations": [
                    {
                        "marker": it.marker,
                        "chunk_id": it.chunk_id,
                        "source": it.source,
                        "start": it.start.isoformat() if it.start else None,
                        "kind": it.kind.value,
                    }
                    for it in self.context.packed.items
                    if it.marker in cited
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
                "answered_by": self.answered_by,
                "answer_reason": self.answer_reason,
                "attempts": list(self.attempts),
                "derived": list(self.grounding.derived),
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
    answer: str | None = None,
    retry: bool | None = None,
    **spec_fields: Any,
) -> AskResult:
    """Answer ``question`` from ``index`` with ``backend``. The context is chosen by ``spec``
    (or by a :class:`ContextSpec` built from ``spec_fields``: ``strategy``, ``budget``,
    ``retriever``, ``order``, ``max_new_tokens``, ``retrieval``). ``on_token`` receives the
    answer's text as the backend produces it. ``answer``: ``generated`` (the backend),
    ``computed`` (from the record's events) or ``auto`` (computed where it applies); default:
    ``spec.answer``.
    ``retry``: the Self-Route retry of a generated answer that abstains or fails grounding
    (default: on for ``auto``, off for ``generated``, which stays the plain baseline)."""
    if spec is None:
        spec = ContextSpec(**{k: v for k, v in spec_fields.items() if v is not None})
    elif spec_fields:
        raise TypeError("give either a ContextSpec or its fields, not both")
    answer = check_answer_mode(answer or spec.answer)
    if retry is None:
        retry = answer == "auto"
    t0 = time.perf_counter()
    if answer == "generated":
        prep = prepare_context(index, question, spec, backend)
        return answer_prepared(
            prep,
            question,
            index.patient_id,
            backend,
            seed=seed,
            on_token=on_token,
            context_seconds=time.perf_counter() - t0,
            index=index if retry else None,
        )
    done, prep, reason, context_seconds = try_computed(index, question, spec, backend, answer, on_token=on_token)
    if done is not None:
        return done
    result = answer_prepared(
        prep,
        question,
        index.patient_id,
        backend,
        seed=seed,
        on_token=on_token,
        context_seconds=context_seconds,
        index=index if retry else None,
    )
    return replace(result, answer_reason=f"computed path declined: {reason}; {result.answer_reason}")


def try_computed(
    index: PatientIndex,
    question: str,
    spec: ContextSpec,
    backend: LLMBackend,
    answer: str = "auto",
    *,
    on_token: Callable[[str], None] | None = None,
) -> tuple[AskResult | None, PreparedContext, str, float]:
    """The computed half of ``ask`` (``answer`` ``auto`` or ``computed``): ``(result, prep,
    reason, seconds)``. ``result`` is the computed answer (or, for ``computed``, the declined
    one); ``None`` when the generator should answer from ``prep`` (``reason`` says why the
    computed path declined). Touches the index; batch mode calls it before handing ``prep``
    to a generation thread."""
    t0 = time.perf_counter()
    comp = computed_for(index, question, day_first=spec.retrieval.day_first)
    pinned = chunks_for(index, comp.needed) if isinstance(comp, Computed) and spec.strategy == "rag" else []
    t_compute = time.perf_counter() - t0
    prep = prepare_context(index, question, spec, backend, pinned=pinned)
    context_seconds = time.perf_counter() - t0
    reason = comp.reason

    def result(
        gen: Generation, grounding: Grounding, grounding_s: float, why: str, computed: Computed | None
    ) -> AskResult:
        if on_token is not None:
            on_token(gen.text)
        return AskResult(
            question=question,
            patient_id=index.patient_id,
            budget=prep.budget,
            context=prep.context,
            generation=gen,
            grounding=grounding,
            prompt_tokens=0,
            timings={
                "context": round(context_seconds, 4),
                "compute": round(t_compute, 4),
                "generate": 0.0,
                "grounding": round(grounding_s, 4),
            },
            answered_by="computed",
            answer_reason=why,
            computed=computed,
        )

    if isinstance(comp, Computed):
        worded = word(comp, prep.context.packed.items)
        if not isinstance(worded, Declined):
            t1 = time.perf_counter()
            grounding = check_grounding(worded.text, prep.context.packed.items, worded.derived)
            seconds = time.perf_counter() - t1
            gen = Generation(
                text=worded.text,
                backend="computed",
                model="ragehr.answers",
                prompt_tokens=0,
                completion_tokens=0,
                seconds=round(seconds, 6),
            )
            return result(gen, grounding, seconds, comp.reason, comp), prep, reason, context_seconds
        reason = worded.reason
    if answer == "computed":
        text = decline_text(reason)
        gen = Generation(text=text, backend="computed", model="ragehr.answers", prompt_tokens=0, completion_tokens=0)
        declined = result(gen, check_grounding(text, prep.context.packed.items), 0.0, f"declined: {reason}", None)
        return declined, prep, reason, context_seconds
    return None, prep, reason, context_seconds


def computed_for(index: PatientIndex, question: str, *, day_first: bool = False) -> Computed | Declined:
    """The computed answer to ``question`` from ``index``'s record (not yet worded), or why
    there is none. Reads the same plan retrieval reads (numeric dates read the same way,
    ``retrieval.day_first``; an event-anchored window resolved the same way)."""
    plan = plan_question(question, index.last_time, day_first=day_first)
    if plan.event_anchor is not None:
        plan = anchor_plan(index, plan)
    return compute(question, plan, index.stored.record, index.lexicon())


def answer_prepared(
    prep: PreparedContext,
    question: str,
    patient_id: str,
    backend: LLMBackend,
    *,
    seed: int = 0,
    on_token: Callable[[str], None] | None = None,
    context_seconds: float = 0.0,
    index: PatientIndex | None = None,
) -> AskResult:
    """Generate and check the answer for a context already prepared (the second half of
    :func:`ask`). Touches no index unless ``index`` is given, so batch mode runs it on several
    threads at once. With ``index``, an answer that abstains or fails the grounding check is
    retried once with a larger context (Self-Route; see the module docstring)."""
    ctx, b, counter, spec = prep.context, prep.budget, prep.counter, prep.spec
    t1 = time.perf_counter()
    messages = build_messages(question, ctx.packed.block())
    n_prompt = prompt_tokens(messages, counter)
    request = GenerationRequest(
        messages=messages,
        question=question,
        evidence=ctx.packed.items,
        max_tokens=spec.max_new_tokens,
        temperature=0.0,
        seed=seed,
    )
    gen = backend.generate(request, on_token=on_token)
    t2 = time.perf_counter()
    grounding = check_grounding(gen.text, ctx.packed.items)
    t3 = time.perf_counter()
    first = AskResult(
        question=question,
        patient_id=patient_id,
        budget=b,
        context=ctx,
        generation=gen,
        grounding=grounding,
        prompt_tokens=gen.prompt_tokens or n_prompt,
        timings={"context": round(context_seconds, 4), "generate": round(t2 - t1, 4), "grounding": round(t3 - t2, 4)},
        answer_reason="generated from the packed evidence",
    )
    why = "it abstained" if abstains(gen.text) else ("it failed the grounding check" if not grounding.ok else None)
    if index is None or why is None:
        return first
    return _retry(first, why, prep, question, backend, index, seed=seed)


def _attempt(r: AskResult, why: str | None) -> dict:
    return {
        "strategy": r.context.strategy,
        "window_tokens": r.budget.window,
        "used_tokens": r.context.packed.used_tokens,
        "n_chunks": len(r.context.packed.items),
        "answer": r.generation.text,
        "grounded": r.grounding.ok,
        "abstained": abstains(r.generation.text),
        "retried_because": why,
    }


def _retry(
    first: AskResult,
    why: str,
    prep: PreparedContext,
    question: str,
    backend: LLMBackend,
    index: PatientIndex,
    *,
    seed: int,
) -> AskResult:
    """Self-Route's second step: the model's whole window, the retrieved evidence first, then
    the record's most recent pieces, newest first, while they fit."""
    spec = prep.spec
    big = replace(spec, budget=None, strategy="rag")
    if "pieces" not in index.memo:
        index.memo["pieces"] = record_pieces(index.stored.record)
    pieces = list(index.memo["pieces"])
    recent = sorted(pieces, key=lambda c: (c.start is not None, c.start.timestamp() if c.start else 0.0), reverse=True)
    t0 = time.perf_counter()
    prep2 = prepare_context(index, question, big, backend, then=recent)
    second = answer_prepared(
        prep2, question, first.patient_id, backend, seed=seed, context_seconds=time.perf_counter() - t0
    )
    attempts = (_attempt(first, why), _attempt(second, None))
    return replace(
        second,
        attempts=attempts,
        answer_reason=f"generated; retried with the model's whole window ({prep2.window} tokens, retrieved "
        f"and most recent evidence) because the first answer {why.removeprefix('it ')}",
    )
