"""The ``ragehr`` command line: thin over the library.

Each command parses its arguments, calls one library function and renders the result. Errors
a user can cause (:class:`ragehr.errors.RagehrError`) become one line on stderr and a non-zero
exit; ``--debug`` shows the traceback instead. Nothing here prints note text unless the
command's job is to show it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ragehr import __version__
from ragehr.errors import RagehrError

# Rich tracebacks print local variables, which can hold patient text: keep them off.
app = typer.Typer(
    name="ragehr",
    help="Retrieval-augmented question answering over a patient's EHR.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

_state = {"debug": False}
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> None:
    typer.echo(f"ragehr: error: {message}", err=True)
    raise typer.Exit(code)


def handle_errors(fn: F) -> F:
    """Turn library errors into one clear line and an exit status."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except RagehrError as exc:
            if _state["debug"]:
                raise
            _fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except ModuleNotFoundError as exc:  # an optional extra that is not installed
            from ragehr.extras import missing_extra_error

            err = missing_extra_error(exc)
            if err is None or _state["debug"]:
                raise
            _fail(str(err), err.exit_code)
        except Exception as exc:  # a bug: say so without echoing data that may hold PHI
            if _state["debug"]:
                raise
            _fail(f"internal error ({type(exc).__name__}); rerun with --debug for the traceback", 1)

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ragehr {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and DEBUG logs.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    _state["debug"] = debug
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
@handle_errors
def inspect(
    paths: Annotated[
        list[Path], typer.Argument(help="Record files: MedAlign XML, C-CDA, or FHIR JSON/NDJSON.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per file.")] = False,
) -> None:
    """Format, patient id, event counts by kind, time span and length of each record. A bad
    file is reported on its own line; the others are still inspected, and the exit status is 2."""
    from ragehr.ehr import load_record
    from ragehr.ehr.summary import summarize
    from ragehr.errors import InputError

    failed = 0
    for path in paths:
        try:
            s = summarize(load_record(path))
        except InputError as exc:
            if len(paths) == 1:
                raise
            failed += 1
            typer.echo(f"ragehr: error: {exc}", err=True)
            continue
        if as_json:
            typer.echo(json.dumps(s.model_dump(mode="json"), ensure_ascii=False))
            continue
        counts = ", ".join(f"{k} {v}" for k, v in s.counts.items()) or "none"
        typer.echo(f"{path}")
        typer.echo(f"  format      {s.format}")
        typer.echo(f"  patient     {s.patient_id}")
        typer.echo(f"  events      {s.n_events} ({counts})")
        typer.echo(f"  visits      {s.n_visits}")
        typer.echo(f"  time span   {s.first_time or '-'} .. {s.last_time or '-'}")
        typer.echo(f"  length      ~{s.n_tokens_estimate} tokens ({s.tokenizer})")
    if failed:
        raise typer.Exit(2)


@app.command()
@handle_errors
def convert(
    path: Annotated[Path, typer.Argument(help="A record file of any supported format.")],
    to: Annotated[str, typer.Option("--to", help="medalign-xml or jsonl.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here (atomically) instead of stdout.")
    ] = None,
) -> None:
    """Write a record as MedAlign-style XML or as JSON lines of events."""
    from ragehr.ehr import load_record
    from ragehr.ehr.convert import TARGETS, convert as convert_record
    from ragehr.errors import ConfigError

    if to not in TARGETS:
        raise ConfigError(f"--to must be one of {', '.join(TARGETS)}, not {to!r}")
    text = convert_record(load_record(path), to)
    if output is None:
        sys.stdout.write(text)
        return
    if output.is_dir():
        raise ConfigError(f"{output}: is a directory; give a file name for -o")
    from ragehr.fsutil import atomic_write_text

    atomic_write_text(output, text)
    typer.echo(f"wrote {output}", err=True)


class _RichProgress:
    """Progress bars for long work (files, chunks, embedding), drawn on stderr."""

    def __init__(self, enabled: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("{task.description:<10}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
            disable=not enabled,
        )
        self._tasks: dict[str, Any] = {}

    def __enter__(self) -> _RichProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def start(self, task: str, total: int) -> None:
        if task in self._tasks:
            self._progress.reset(self._tasks[task], total=total)
        else:
            self._tasks[task] = self._progress.add_task(task, total=total)

    def advance(self, task: str, n: int = 1) -> None:
        if task in self._tasks:
            self._progress.advance(self._tasks[task], n)


IndexDirOpt = Annotated[
    Path, typer.Option("--index-dir", help="Where per-patient indexes live.", envvar="RAGEHR_INDEX_DIR")
]
ConfigOpt = Annotated[Path | None, typer.Option("--config", help="A YAML config (see configs/default.yaml).")]


@app.command()
@handle_errors
def index(
    paths: Annotated[list[Path], typer.Argument(help="Record files or folders of them.")],
    index_dir: IndexDirOpt = Path("indexes"),
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if nothing changed.")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Processes for parsing.")] = 1,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Embedding cache (default: INDEX_DIR/.cache).")
    ] = None,
) -> None:
    """Build (or update) one index per patient from record files and folders."""
    from ragehr.config import RagehrConfig
    from ragehr.index.build import build_indexes

    cfg = RagehrConfig.from_file(config)
    with _RichProgress(enabled=sys.stderr.isatty() or bool(os.environ.get("RAGEHR_PROGRESS"))) as bars:
        summaries = build_indexes(
            paths, index_dir, cfg.index, force=force, workers=workers, cache_dir=cache_dir, progress=bars
        )
    failed = 0
    for s in summaries:
        if s.status == "failed":
            failed += 1
            typer.echo(f"failed     {s.message}", err=True)
            continue
        extra = f", {s.duplicates_removed} duplicate events removed" if s.duplicates_removed else ""
        how = f", {s.n_embedded} chunks embedded" if s.status == "built" else ""
        typer.echo(
            f"{s.status:<10} {s.patient_id}: {s.n_sources} file(s), {s.n_events} events, "
            f"{s.n_chunks} chunks{extra}{how} -> {s.index_path}"
        )
    ok = len(summaries) - failed
    typer.echo(f"{ok} patient index(es) ready, {failed} failure(s)", err=True)
    if failed:
        raise typer.Exit(1)


def _kinds(value: str | None) -> list[Any] | None:
    from ragehr.errors import ConfigError
    from ragehr.types import EventKind

    if not value:
        return None
    out = []
    for part in value.split(","):
        try:
            out.append(EventKind(part.strip().lower()))
        except ValueError:
            names = ", ".join(k.value for k in EventKind)
            raise ConfigError(f"unknown kind {part.strip()!r}; use any of: {names}") from None
    return out


def _date(value: str | None, flag: str) -> Any:
    from ragehr.errors import ConfigError
    from ragehr.retrieval.timefilter import parse_date_option

    if value is None:
        return None
    try:
        return parse_date_option(value)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


@app.command()
@handle_errors
def retrieve(
    question: Annotated[str, typer.Argument(help="The question.")],
    patient: Annotated[str, typer.Option("--patient", help="Patient id (as `ragehr index` printed it).")],
    k: Annotated[int | None, typer.Option("--k", min=1, help="How many hits (default: the config's, 10).")] = None,
    retriever: Annotated[str | None, typer.Option("--retriever", help="hybrid, bm25 or dense (default: the config's).")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Only evidence on or after (YYYY[-MM[-DD]]).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Only evidence on or before.")] = None,
    kinds: Annotated[str | None, typer.Option("--kinds", help="Comma-separated kinds: lab,vital,note,...")] = None,
    index_dir: IndexDirOpt = Path("indexes"),
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of hits.")] = False,
) -> None:
    """Rank a patient's evidence for a question (no generation)."""
    from ragehr.config import RagehrConfig
    from ragehr.errors import ConfigError
    from ragehr.index.search import load_patient_index, search

    cfg = RagehrConfig.from_file(config)
    retriever = retriever or cfg.retrieval.retriever
    k = k or cfg.retrieval.k
    if retriever not in ("hybrid", "bm25", "dense"):
        raise ConfigError(f"--retriever must be hybrid, bm25 or dense, not {retriever!r}")
    idx = load_patient_index(index_dir, patient, need_dense=retriever != "bm25")
    hits, window = search(
        idx, question, config=cfg.retrieval, k=k, retriever=retriever,
        since=_date(since, "--since"), until=_date(until, "--until"), kinds=_kinds(kinds),
    )
    if as_json:
        typer.echo(json.dumps([h.to_json() for h in hits], ensure_ascii=False, indent=1))
        return
    if window.phrase:
        typer.echo(f"(time from the question: {window.phrase!r})", err=True)
    if not hits:
        typer.echo("no matching evidence")
    for h in hits:
        c = h.chunk
        comps = " ".join(f"{n}={v:.3g}" for n, v in h.hit.components.items())
        typer.echo(f"[{h.hit.rank}] {h.hit.score:.4f} ({comps})  {c.kind.value}  {c.sources[0] if c.sources else ''}")
        typer.echo("    " + c.text.replace("\n", "\n    "))


StrategyOpt = Annotated[str, typer.Option("--strategy", help="rag, visit-bm25, recent or full.")]
BudgetOpt = Annotated[
    int | None,
    typer.Option("--budget", min=64, help="Context window in tokens for this question (prompt + answer)."),
]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="transformers (local, the default), llamacpp (local, faster; alias: local), openai, extractive or fake.",
    ),
]
OrderOpt = Annotated[str, typer.Option("--order", help="chronological or relevance.")]


def _spec(cfg: Any, **overrides: Any) -> Any:
    """The one ContextSpec of a command: the config's values, replaced by the flags given."""
    from ragehr.pipeline.spec import ContextSpec

    return ContextSpec.from_config(cfg, **overrides)


RetrieverOpt = Annotated[
    str | None, typer.Option("--retriever", help="hybrid, bm25 or dense (rag only; default: the config's).")
]


@app.command()
@handle_errors
def context(
    question: Annotated[str, typer.Argument(help="The question.")],
    patient: Annotated[str, typer.Option("--patient", help="Patient id.")],
    strategy: StrategyOpt = "rag",
    budget: BudgetOpt = 2048,
    backend: BackendOpt = None,
    retriever: RetrieverOpt = None,
    order: OrderOpt = "chronological",
    index_dir: IndexDirOpt = Path("indexes"),
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """The evidence a strategy packs for a question, without generating anything. Tokens are
    counted with the backend's own tokenizer."""
    from ragehr.config import RagehrConfig
    from ragehr.index.search import load_patient_index
    from ragehr.llm.registry import backend_from_config
    from ragehr.pipeline.context import context_json
    from ragehr.pipeline.spec import prepare_context

    cfg = RagehrConfig.from_file(config)
    spec = _spec(cfg, strategy=strategy, budget=budget, retriever=retriever, order=order)
    be = backend_from_config(cfg.llm, backend, window=spec.budget, model_cache_dir=index_dir / ".cache" / "models")
    idx = load_patient_index(index_dir, patient, need_dense=spec.needs_dense)
    prep = prepare_context(idx, question, spec, be)
    if as_json:
        typer.echo(json.dumps(context_json(prep.context, prep.window), ensure_ascii=False, indent=1))
        return
    p = prep.context.packed
    typer.echo(
        f"{spec.strategy}: {len(p.items)} pieces, {p.used_tokens}/{p.budget_tokens} evidence tokens "
        f"(window {prep.window}, {prep.counter.name})", err=True
    )
    typer.echo(p.block(), nl=False)


@app.command()
@handle_errors
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    patient: Annotated[str, typer.Option("--patient", help="Patient id.")],
    strategy: StrategyOpt = "rag",
    budget: BudgetOpt = 2048,
    backend: BackendOpt = None,
    retriever: RetrieverOpt = None,
    order: OrderOpt = "chronological",
    model_path: Annotated[
        Path | None, typer.Option("--model-path", help="A GGUF file, or a Hugging Face model folder (transformers).")
    ] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server (openai backend).")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name on that server.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", min=1)] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the generation cache.")] = False,
    index_dir: IndexDirOpt = Path("indexes"),
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Answer a question from the patient's record, with cited, dated evidence and a check
    that every number and date in the answer appears in that evidence."""
    from ragehr.config import RagehrConfig
    from ragehr.index.search import load_patient_index
    from ragehr.llm.registry import backend_from_config
    from ragehr.pipeline.ask import ask as run_ask

    cfg = RagehrConfig.from_file(config)
    spec = _spec(cfg, strategy=strategy, budget=budget, retriever=retriever, order=order, max_new_tokens=max_new_tokens)
    be = backend_from_config(
        cfg.llm, backend, window=spec.budget, model_path=str(model_path) if model_path else None,
        base_url=base_url, model=model, cache_dir=None if no_cache else index_dir / ".cache" / "generations",
        model_cache_dir=index_dir / ".cache" / "models",
    )
    idx = load_patient_index(index_dir, patient, need_dense=spec.needs_dense)
    stream = not as_json and sys.stdout.isatty()  # tokens as they come, on a terminal
    streamed: list[str] = []

    def show(piece: str) -> None:
        if not streamed:
            piece = piece.lstrip()
        streamed.append(piece)
        sys.stdout.write(piece)
        sys.stdout.flush()

    r = run_ask(idx, question, be, spec, on_token=show if stream else None)
    if as_json:
        typer.echo(json.dumps(r.to_json(), ensure_ascii=False, indent=1))
        return
    if stream and streamed:
        typer.echo("")
    else:
        typer.echo(r.generation.text.strip())
    g = r.grounding
    if g.unsupported:
        typer.echo(f"\n!! UNSUPPORTED: {', '.join(g.unsupported)} (not found in the cited evidence; do not rely on them)")
    if g.unknown_citations:
        typer.echo(f"!! the answer cites {', '.join(f'[{n}]' for n in g.unknown_citations)}, which are not in the evidence")
    items = r.context.packed.items
    shown = [it for it in items if it.marker in set(g.cited)] if g.cited else list(items)[:5]
    more = "" if g.cited or len(items) <= 5 else f", first 5 of {len(items)}"
    typer.echo("\nEvidence" + (" cited:" if g.cited else f" given (the answer cites none{more}):"))
    from ragehr.ehr.times import format_time

    for it in shown:
        snippet = " ".join(it.text.split())[:160]
        typer.echo(f"  [{it.marker}] {format_time(it.start)}  {it.kind.value}  {snippet}")
        typer.echo(f"       {it.source}")
    typer.echo(
        f"\n({r.generation.backend}/{r.generation.model}, {r.context.strategy}, {r.prompt_tokens} prompt tokens, "
        f"{r.context.packed.used_tokens}/{r.context.packed.budget_tokens} evidence tokens"
        f"{', cached' if r.generation.cached else ''}, {sum(r.timings.values()):.2f}s)", err=True
    )


@app.command()
@handle_errors
def doctor(
    index_dir: IndexDirOpt = Path("indexes"),
    config: ConfigOpt = None,
    backends: Annotated[
        list[str] | None, typer.Option("--backend", help="Probe only these backends (repeatable; default: the configured one, transformers and llamacpp).")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=5, help="Seconds each backend probe may take (the first transformers load converts the GGUF once).")] = 300.0,
    no_embedder: Annotated[bool, typer.Option("--no-embedder", help="Skip loading the embedder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """What works on this machine: versions, CPU, model files, the embedder, the index folder,
    a network endpoint if configured, and for each backend whether it loads and generates
    (in a child process) with its prefill and decode tokens/s. Exit 5 when the configured
    backend cannot generate."""
    from ragehr.doctor import run_doctor

    report = run_doctor(
        index_dir, config, backends=backends, timeout=timeout, embedder=not no_embedder,
        progress=None if as_json else (lambda line: typer.echo(f"... {line}", err=True)),
    )
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        _print_doctor(report)
    if not report["configured_backend_generates"]:
        typer.echo(f"ragehr: error: the configured backend ({report['configured_backend']}) cannot generate", err=True)
        raise typer.Exit(5)


def _print_doctor(rep: dict[str, Any]) -> None:
    def mb(n: int | None) -> str:
        return "-" if n is None else f"{n / 1e6:.1f} MB"

    v = rep["versions"]
    typer.echo("versions   " + ", ".join(f"{k} {val or 'not installed'}" for k, val in v.items()))
    c = rep["cpu"]
    amx = ",".join(c["amx"]) if c.get("amx") else "no"
    typer.echo(f"cpu        {c['machine']}, {c['cores_usable']} usable cores, avx2 {c['avx2']}, avx512 {c['avx512']}, amx {amx}")
    for m in rep["models"]:
        where = m["path"] or m.get("error")
        typer.echo(f"model      {m['what']}: {where}" + (f" ({mb(m.get('bytes'))})" if m["path"] else ""))
    e = rep.get("embedder")
    if e:
        typer.echo(f"embedder   {e['spec']}: " + (f"{e['model_id']}, dimension {e['dim']}" if e["ok"] else f"FAILS: {e['error']}"))
    i = rep["index"]
    typer.echo(f"index dir  {i['path']}: " + (f"{i['patients']} patient(s)" if i["exists"] else "does not exist yet (ragehr index ...)"))
    n = rep["network_endpoint"]
    typer.echo("network    " + (f"endpoint configured ({n['from']}): {n['base_url']}" if n["configured"] else "no endpoint configured (nothing leaves this machine)"))
    for b in rep["backends"]:
        star = "*" if b["backend"] == rep["configured_backend"] else " "
        if b.get("generates"):
            speed = ""
            if b.get("prefill_tokens_per_s") is not None:
                speed = f", prefill {b['prefill_tokens_per_s']} tok/s, decode {b.get('decode_tokens_per_s')} tok/s"
            typer.echo(f"backend {star} {b['backend']:<12} OK   {b.get('model')} (load {b.get('load_seconds')} s{speed})")
        elif b.get("generates") is None:
            typer.echo(f"backend {star} {b['backend']:<12} skip {b.get('skipped')}")
        else:
            typer.echo(f"backend {star} {b['backend']:<12} FAIL {b.get('error')}")
    typer.echo("(* = the configured backend)")


@app.command("eval")
@handle_errors
def eval_(
    config: Annotated[Path, typer.Argument(help="An experiment YAML (configs/experiments/...).")],
    run: Annotated[str | None, typer.Option("--run", help="Results folder name (default: the config's name).")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard earlier predictions of this run.")] = False,
) -> None:
    """Run an ablation grid (strategies x budgets x retrievers x backends x datasets) into
    results/<run>/, resuming a killed run, and check its expected figures."""
    import shutil

    from ragehr.eval.experiment import ExperimentConfig
    from ragehr.eval.runner import run_experiment

    cfg = ExperimentConfig.from_file(config)
    run_dir = Path(cfg.results_dir) / (run or cfg.name)
    if fresh and run_dir.exists():
        shutil.rmtree(run_dir)
    with _RichProgress(enabled=sys.stderr.isatty() or bool(os.environ.get("RAGEHR_PROGRESS"))) as bars:
        metrics = run_experiment(cfg, run_dir, progress=bars, config_text=config.read_text(encoding="utf-8"))
    typer.echo((run_dir / "summary.md").read_text(encoding="utf-8"))
    for p in metrics["problems"]:
        typer.echo(f"warning: {p}", err=True)
    checks = metrics["expected"]
    failed = [c for c in checks if not c["ok"]]
    for c in checks:
        e = c["expectation"]
        val = c.get("value")
        shown = f"{val:.3f}" if isinstance(val, float) else str(val)
        typer.echo(f"{'OK  ' if c['ok'] else 'FAIL'} {e['metric']} {e['op']} {e['value']} {e['where']} -> {shown}")
    typer.echo(f"results in {run_dir}/ (predictions.jsonl, metrics.json, summary.md, summary.csv, plots/, manifest.json)", err=True)
    if failed:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
