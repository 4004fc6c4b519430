"""``ragehr retrieve``, ``context`` and ``ask``: one question, or a file of them (batch mode)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ragehr.cli.common import (
    AnswerOpt,
    BackendOpt,
    BatchWorkersOpt,
    BudgetOpt,
    CacheSizeOpt,
    ConfigOpt,
    IndexDirOpt,
    OrderOpt,
    OutOpt,
    PatientOpt,
    QuestionArg,
    QuestionsOpt,
    RayOpt,
    RetrieverOpt,
    StrategyOpt,
    _date,
    _kinds,
    _run_batch,
    _say_window,
    _single_or_batch,
    _spec,
    app,
    handle_errors,
)


@app.command()
@handle_errors
def retrieve(
    question: Annotated[str, typer.Argument(help="The question.")],
    patient: Annotated[
        str, typer.Option("--patient-id", "--patient", help="Patient id (as `ragehr index` printed it).")
    ],
    k: Annotated[int | None, typer.Option("--k", min=1, help="How many hits (default: the config's, 10).")] = None,
    retriever: Annotated[
        str | None, typer.Option("--retriever", help="hybrid, bm25 or dense (default: the config's).")
    ] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only evidence on or after (YYYY[-MM[-DD]]).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Only evidence on or before.")] = None,
    kinds: Annotated[str | None, typer.Option("--kinds", help="Comma-separated kinds: lab,vital,note,...")] = None,
    index_dir: IndexDirOpt = Path("indexes"),
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of hits.")] = False,
) -> None:
    """Rank a patient's evidence for a question (no generation)."""
    from ragehr.api import Patient, open_index
    from ragehr.errors import ConfigError

    if retriever is not None and retriever not in ("hybrid", "bm25", "dense"):
        raise ConfigError(f"--retriever must be hybrid, bm25 or dense, not {retriever!r}")
    if not question.strip():
        raise ConfigError("the question is empty")
    since_dt, until_dt = _date(since, "--since"), _date(until, "--until", end=True)
    if since_dt is not None and until_dt is not None and since_dt > until_dt:
        raise ConfigError(f"--since {since} is after --until {until}; nothing can match")
    # Patient(...) directly: retrieve opens (and checks) the index itself, once
    window = Patient(open_index(index_dir, config), patient).retrieve(
        question,
        k=k,
        retriever=retriever,
        since=since_dt,
        until=until_dt,
        kinds=_kinds(kinds),
    )
    hits = window.hits
    if as_json:
        typer.echo(json.dumps(window.to_json(), ensure_ascii=False, indent=1))
        return
    if window.time_phrase:
        typer.echo(f"(time from the question: {window.time_phrase!r})", err=True)
    if window.time_fallback:
        typer.echo(f"(note: {window.time_fallback})", err=True)
    if not hits:
        typer.echo("no matching evidence")
    for h in hits:
        c = h.chunk
        comps = " ".join(f"{n}={v:.3g}" for n, v in h.hit.components.items())
        typer.echo(f"[{h.hit.rank}] {h.hit.score:.4f} ({comps})  {c.kind.value}  {c.sources[0] if c.sources else ''}")
        typer.echo("    " + c.text.replace("\n", "\n    "))


@app.command()
@handle_errors
def context(
    question: QuestionArg = None,
    patient: PatientOpt = None,
    strategy: StrategyOpt = "rag",
    budget: BudgetOpt = 2048,
    backend: BackendOpt = None,
    retriever: RetrieverOpt = None,
    order: OrderOpt = "chronological",
    index_dir: IndexDirOpt = Path("indexes"),
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    questions: QuestionsOpt = None,
    out: OutOpt = None,
    ray: RayOpt = None,
    workers: BatchWorkersOpt = None,
    cache_size: CacheSizeOpt = 8,
) -> None:
    """The evidence a strategy packs for a question, without generating anything. Tokens are
    counted with the backend's own tokenizer. With --questions, every question of a file."""
    from ragehr.config import RagehrConfig
    from ragehr.index.search import load_patient_index
    from ragehr.llm.registry import backend_from_config
    from ragehr.pipeline.context import context_json
    from ragehr.pipeline.spec import prepare_context

    batch = _single_or_batch(question, patient, questions, out, ray)
    cfg = RagehrConfig.from_file(config)
    spec = _spec(cfg, strategy=strategy, budget=budget, retriever=retriever, order=order)
    if batch:
        _run_batch(
            "context",
            questions,
            out,
            spec=spec,
            llm=cfg.llm,
            backend=backend,
            index_dir=index_dir,
            ray=ray,
            workers=workers,
            cache_size=cache_size,
        )
        return
    assert question is not None and patient is not None  # _single_or_batch checked both
    be = backend_from_config(cfg.llm, backend, window=spec.budget, model_cache_dir=index_dir / ".cache" / "models")
    _say_window(spec, be)
    idx = load_patient_index(index_dir, patient, need_dense=spec.needs_dense)
    prep = prepare_context(idx, question, spec, be)
    if as_json:
        typer.echo(json.dumps(context_json(prep.context, prep.window), ensure_ascii=False, indent=1))
        return
    p = prep.context.packed
    if prep.context.time_fallback:
        typer.echo(f"(note: {prep.context.time_fallback})", err=True)
    typer.echo(
        f"{spec.strategy}: {len(p.items)} pieces, {p.used_tokens}/{p.budget_tokens} evidence tokens "
        f"(window {prep.window}, {prep.counter.name})",
        err=True,
    )
    typer.echo(p.block(), nl=False)


@app.command()
@handle_errors
def ask(
    question: QuestionArg = None,
    patient: PatientOpt = None,
    strategy: StrategyOpt = "rag",
    budget: BudgetOpt = 2048,
    backend: BackendOpt = None,
    retriever: RetrieverOpt = None,
    order: OrderOpt = "chronological",
    model_path: Annotated[
        Path | None, typer.Option("--model-path", help="A GGUF file, or a Hugging Face model folder (transformers).")
    ] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="OpenAI-compatible server (openai backend).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name on that server.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", min=1)] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the generation cache.")] = False,
    index_dir: IndexDirOpt = Path("indexes"),
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    questions: QuestionsOpt = None,
    out: OutOpt = None,
    ray: RayOpt = None,
    workers: BatchWorkersOpt = None,
    cache_size: CacheSizeOpt = 8,
    answer: AnswerOpt = None,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot", help="Write a computed series answer's chart to FILE (.svg, or .png with the eval extra)."
        ),
    ] = None,
) -> None:
    """Answer a question from the patient's record, with cited, dated evidence and a check
    that every number and date in the answer appears in that evidence. With --questions,
    answer every question of a file in this process (or over Ray with --ray)."""
    from ragehr.config import RagehrConfig
    from ragehr.index.search import load_patient_index
    from ragehr.llm.registry import backend_from_config
    from ragehr.pipeline.ask import ask as run_ask

    batch = _single_or_batch(question, patient, questions, out, ray)
    cfg = RagehrConfig.from_file(config)
    spec = _spec(
        cfg,
        strategy=strategy,
        budget=budget,
        retriever=retriever,
        order=order,
        max_new_tokens=max_new_tokens,
        answer=answer,
    )
    if plot is not None and (batch or plot.suffix.lower() not in (".svg", ".png")):
        from ragehr.errors import ConfigError

        raise ConfigError("--plot FILE goes with a single question, and FILE must end in .svg or .png")
    if batch:
        _run_batch(
            "ask",
            questions,
            out,
            spec=spec,
            llm=cfg.llm,
            backend=backend,
            index_dir=index_dir,
            ray=ray,
            workers=workers,
            cache_size=cache_size,
            model_path=str(model_path) if model_path else None,
            base_url=base_url,
            model=model,
            cache_dir=None if no_cache else str(index_dir / ".cache" / "generations"),
        )
        return
    assert question is not None and patient is not None  # _single_or_batch checked both
    be = backend_from_config(
        cfg.llm,
        backend,
        window=spec.budget,
        model_path=str(model_path) if model_path else None,
        base_url=base_url,
        model=model,
        cache_dir=None if no_cache else index_dir / ".cache" / "generations",
        model_cache_dir=index_dir / ".cache" / "models",
    )
    _say_window(spec, be)
    idx = load_patient_index(index_dir, patient, need_dense=spec.needs_dense)
    stream = not as_json and sys.stdout.isatty()  # tokens as they come, on a terminal
    streamed: list[str] = []

    def show(piece: str) -> None:
        if not streamed:  # nothing shown yet: leading whitespace is dropped, as the plain print does
            piece = piece.lstrip()
            if not piece:
                return
        streamed.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()

    r = run_ask(idx, question, be, spec, on_token=show if stream else None)
    if plot is not None:
        _write_plot(r, plot)
    if as_json:
        typer.echo(json.dumps(r.to_json(), ensure_ascii=False, indent=1))
        return
    if r.answered_by == "computed" and not (r.answer_reason or "").startswith("declined"):
        typer.echo(f"Computed from the record ({r.answer_reason}):")
        stream = False
    if stream and streamed:
        typer.echo("")
    else:
        typer.echo(r.generation.text.strip())
    g = r.grounding
    if g.unsupported:
        typer.echo(
            f"\n!! UNSUPPORTED: {', '.join(g.unsupported)} (not found in the cited evidence; do not rely on them)"
        )
    if g.unknown_citations:
        typer.echo(
            f"!! the answer cites {', '.join(f'[{n}]' for n in g.unknown_citations)}, which are not in the evidence"
        )
    items = r.context.packed.items
    shown = [it for it in items if it.marker in set(g.cited)] if g.cited else list(items)[:5]
    more = "" if g.cited or len(items) <= 5 else f", first 5 of {len(items)}"
    typer.echo("\nEvidence" + (" cited:" if g.cited else f" given (the answer cites none{more}):"))
    if r.context.time_fallback:
        typer.echo(f"  (note: {r.context.time_fallback})")
    from ragehr.ehr.times import format_time

    for it in shown:
        snippet = " ".join(it.text.split())[:160]
        typer.echo(f"  [{it.marker}] {format_time(it.start)}  {it.kind.value}  {snippet}")
        typer.echo(f"       {it.source}")
    typer.echo(
        f"\n({r.generation.backend}/{r.generation.model}, {r.context.strategy}, {r.prompt_tokens} prompt tokens, "
        f"{r.context.packed.used_tokens}/{r.context.packed.budget_tokens} evidence tokens"
        f"{', cached' if r.generation.cached else ''}, {sum(r.timings.values()):.2f}s)",
        err=True,
    )


def _write_plot(r: Any, plot: Path) -> None:
    """``ask --plot``: the computed series answer's chart (one line and exit 2 when there is
    none, or the PNG needs the eval extra)."""
    from ragehr.answers.chart import plot_answer

    plot_answer(r.computed, plot)
    typer.echo(f"chart written to {plot}", err=True)
