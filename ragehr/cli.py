"""The ``ragehr`` command line: thin over the library.

Each command parses its arguments, calls one library function and renders the result. Errors
a user can cause (:class:`ragehr.errors.RagehrError`) become one line on stderr and a non-zero
exit; ``--debug`` shows the traceback instead. Nothing here prints note text unless the
command's job is to show it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

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
_USER_OS_ERRORS = {
    errno.ENOSPC,
    getattr(errno, "EDQUOT", errno.ENOSPC),
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
}
"""File-system errors a user's set-up causes (full disk, read-only or forbidden folder): one line, exit 3."""
F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> None:
    from ragehr.errors import escape_controls

    typer.echo(f"ragehr: error: {escape_controls(message)}", err=True)
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
        except OSError as exc:
            if _state["debug"]:
                raise
            if exc.errno not in _USER_OS_ERRORS:
                _fail(f"internal error ({type(exc).__name__}); rerun with --debug for the traceback", 1)
            where = f": {exc.filename}" if exc.filename else ""
            _fail(f"{exc.strerror}{where}", 3)
        except Exception as exc:  # a bug: say so without echoing data that may hold PHI
            if _state["debug"]:
                raise
            _fail(f"internal error ({type(exc).__name__}); rerun with --debug for the traceback", 1)

    return wrapper  # type: ignore[return-value]


def _shown_id(patient_id: str) -> str:
    """A patient id as printed in plain-text output: control characters escaped, unquoted."""
    from ragehr.errors import show_id

    return show_id(patient_id, limit=200)[1:-1]


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


PatientsOpt = Annotated[
    str | None, typer.Option("--patients", help="Only these patients (comma-separated ids) of a cohort folder.")
]
PatientsFileOpt = Annotated[
    Path | None, typer.Option("--patients-file", help="Only the patients in this file (one id a line).")
]


def _patients(ids: str | None, file: Path | None) -> list[str] | None:
    """The patient ids of --patients and --patients-file together, or None for all."""
    from ragehr.errors import ConfigError

    if ids is None and file is None:
        return None
    out = [p.strip() for p in (ids or "").split(",") if p.strip()]
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"--patients-file {file}: cannot read ({getattr(exc, 'strerror', None) or exc})"
            ) from None
        out += [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not out:
        raise ConfigError("--patients / --patients-file name no patient")
    return list(dict.fromkeys(out))


def _print_summary(label: str, s: Any, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(s.model_dump(mode="json"), ensure_ascii=False))
        return
    from ragehr.errors import escape_controls

    counts = ", ".join(f"{k} {v}" for k, v in s.counts.items()) or "none"
    typer.echo(escape_controls(label))
    typer.echo(f"  format      {s.format}")
    typer.echo(f"  patient     {_shown_id(s.patient_id)}")
    typer.echo(f"  events      {s.n_events} ({counts})")
    typer.echo(f"  visits      {s.n_visits}")
    typer.echo(f"  time span   {s.first_time or '-'} .. {s.last_time or '-'}")
    typer.echo(f"  length      ~{s.n_tokens_estimate} tokens ({s.tokenizer})")
    for w in s.warnings:
        typer.echo(f"  warning     {escape_controls(w)}")


@app.command()
@handle_errors
def inspect(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Record files (MedAlign XML, C-CDA, FHIR JSON/NDJSON) or cohort folders "
            "(a FHIR Bulk Data export, OMOP CDM tables)."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per file or patient.")] = False,
    patients: PatientsOpt = None,
    patients_file: PatientsFileOpt = None,
) -> None:
    """Format, patient id, event counts by kind, time span and length of each record; a cohort
    folder lists each of its patients. A bad file or patient is reported on its own line; the
    others are still inspected, and the exit status is 2."""
    from ragehr.ehr import load_record
    from ragehr.ehr.cohort import ambiguous_aliases, detect_cohort, select
    from ragehr.ehr.summary import summarize
    from ragehr.errors import InputError, escape_controls, show_id

    wanted = _patients(patients, patients_file)
    failed = 0
    for path in paths:
        cohort = detect_cohort(path)
        if cohort is not None:
            scan = cohort.scan()
            for problem in scan.problems:
                failed += 1
                typer.echo(f"ragehr: error: {escape_controls(problem)}", err=True)
            chosen = select(scan.slices, wanted)
            found = {sl.patient_id for sl in chosen} | {a for sl in chosen for a in sl.aliases}
            ambiguous = ambiguous_aliases(scan.slices, wanted or [])
            for p in wanted or []:
                if p in ambiguous:
                    failed += 1
                    typer.echo(
                        f"ragehr: error: patient {show_id(p)}: an identifier of {len(ambiguous[p])} patients "
                        f"in {path} ({', '.join(map(show_id, ambiguous[p][:5]))}); select them by id",
                        err=True,
                    )
                elif p not in found:
                    failed += 1
                    typer.echo(f"ragehr: error: patient {show_id(p)}: not in {escape_controls(path)}", err=True)
            for sl in chosen:
                try:
                    s = summarize(sl.load())
                except InputError as exc:
                    failed += 1
                    typer.echo(f"ragehr: error: {escape_controls(exc)}", err=True)
                    continue
                _print_summary(f"{path} patient {_shown_id(sl.patient_id)} ({cohort.format})", s, as_json)
            continue
        try:
            s = summarize(load_record(path))
        except InputError as exc:
            if len(paths) == 1:
                raise
            failed += 1
            typer.echo(f"ragehr: error: {escape_controls(exc)}", err=True)
            continue
        _print_summary(str(path), s, as_json)
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
    force: Annotated[bool, typer.Option("--force", help="Replace an existing -o file (never the input).")] = False,
) -> None:
    """Write a record as MedAlign-style XML or as JSON lines of events."""
    from ragehr.ehr import load_record
    from ragehr.ehr.convert import TARGETS, check_output
    from ragehr.ehr.convert import convert as convert_record
    from ragehr.errors import ConfigError

    if to not in TARGETS:
        raise ConfigError(f"--to must be one of {', '.join(TARGETS)}, not {to!r}")
    if output is not None:
        check_output(path, output, force=force)
    text = convert_record(load_record(path), to)
    if output is None:
        sys.stdout.write(text)
        return
    from ragehr.fsutil import atomic_write_text

    check_output(path, output, force=force)  # again: the file may have appeared while converting
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

    def __exit__(self, *exc: Any) -> None:
        self._progress.__exit__(*exc)

    def start(self, task: str, total: int) -> None:
        if task in self._tasks:
            self._progress.reset(self._tasks[task], total=total)
        else:
            self._tasks[task] = self._progress.add_task(task, total=total)

    def advance(self, task: str, n: int = 1) -> None:
        if task in self._tasks:
            self._progress.advance(self._tasks[task], n)

    def log(self, message: str) -> None:
        """One line on stderr that does not garble the bars."""
        if self._progress.disable:
            typer.echo(message, err=True)
        else:
            self._progress.console.print(message, markup=False, highlight=False, soft_wrap=True)


def _progress_enabled() -> bool:
    return sys.stderr.isatty() or bool(os.environ.get("RAGEHR_PROGRESS"))


RayOpt = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="[ADDRESS]",
        help="Spread the work over Ray: a cluster ADDRESS (auto, ray://HOST:10001, HOST:6379), "
        "or none/`local` to start a local Ray. Needs the `ray` extra.",
    ),
]


IndexDirOpt = Annotated[
    Path, typer.Option("--index-dir", help="Where per-patient indexes live.", envvar="RAGEHR_INDEX_DIR")
]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="A YAML config (see configs/default.yaml).", envvar="RAGEHR_CONFIG")
]


@app.command()
@handle_errors
def index(
    paths: Annotated[list[Path], typer.Argument(help="Record files or folders of them.")],
    index_dir: IndexDirOpt = Path("indexes"),
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if nothing changed.")] = False,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Processes for parsing (files, cohort patients).")
    ] = 1,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Embedding cache (default: INDEX_DIR/.cache).")
    ] = None,
    patients: PatientsOpt = None,
    patients_file: PatientsFileOpt = None,
    ray: RayOpt = None,
    merge_conflicting: Annotated[
        bool,
        typer.Option(
            "--merge-conflicting",
            help="Merge the sources of one patient id even when they disagree on "
            "sex or birth date (by default that patient is refused, exit status 2).",
        ),
    ] = False,
) -> None:
    """Build (or update) one index per patient from record files, folders of them, and cohort
    folders (a FHIR Bulk Data export, OMOP CDM tables). With --ray, patients are parsed and
    indexed as Ray tasks (a local Ray uses --workers CPUs when more than 1 is given);
    INDEX_DIR must then be a folder every worker sees."""
    from ragehr.config import RagehrConfig
    from ragehr.index.build import build_indexes

    cfg = RagehrConfig.from_file(config)
    wanted = _patients(patients, patients_file)
    if ray is not None:
        from ragehr.distributed import RayCluster, build_indexes_ray

        with (
            RayCluster(ray, num_cpus=workers if workers > 1 else None),
            _RichProgress(enabled=_progress_enabled()) as bars,
        ):
            summaries = build_indexes_ray(
                paths,
                index_dir,
                cfg.index,
                force=force,
                cache_dir=cache_dir,
                progress=bars,
                patients=wanted,
                merge_conflicting=merge_conflicting,
            )
    else:
        with _RichProgress(enabled=_progress_enabled()) as bars:
            summaries = build_indexes(
                paths,
                index_dir,
                cfg.index,
                force=force,
                workers=workers,
                cache_dir=cache_dir,
                progress=bars,
                patients=wanted,
                merge_conflicting=merge_conflicting,
            )
    failures = [s for s in summaries if s.status == "failed"]
    failed = len(failures)
    code = max((s.exit_code or 2 for s in failures), default=0)
    if failed == 1 and len(summaries) == 1:
        _fail(failures[0].message or "indexing failed", code)
    for s in summaries:
        if s.status == "failed":
            typer.echo(f"failed     {s.message}", err=True)
            continue
        extra = f", {s.duplicates_removed} duplicate events removed" if s.duplicates_removed else ""
        how = f", {s.n_embedded} chunks embedded" if s.status == "built" else ""
        typer.echo(
            f"{s.status:<10} {_shown_id(s.patient_id)}: {s.n_sources} source(s), {s.n_events} events, "
            f"{s.n_chunks} chunks{extra}{how} -> {s.index_path}"
        )
    ok = len(summaries) - failed
    typer.echo(f"{ok} patient index(es) ready, {failed} failure(s)", err=True)
    if failed:
        raise typer.Exit(code)


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


def _date(value: str | None, flag: str, *, end: bool = False) -> Any:
    from ragehr.errors import ConfigError
    from ragehr.retrieval.timefilter import parse_date_option

    if value is None:
        return None
    try:
        return parse_date_option(value, end=end)
    except ValueError as exc:
        raise ConfigError(f"{flag}: {exc}") from None


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
OrderOpt = Annotated[
    str, typer.Option("--order", help="chronological, relevance, or edges (best pieces at both ends).")
]
AnswerOpt = Annotated[
    str | None,
    typer.Option(
        "--answer",
        help="auto (computed from the record where it can be, else the backend), computed, "
        "or generated (config key 'answer', default auto).",
    ),
]


def _spec(cfg: Any, **overrides: Any) -> Any:
    """The one ContextSpec of a command: the config's values, replaced by the flags given."""
    from ragehr.pipeline.spec import ContextSpec

    return ContextSpec.from_config(cfg, **overrides)


QuestionArg = Annotated[str | None, typer.Argument(help="The question (or give --questions).")]
PatientOpt = Annotated[
    str | None, typer.Option("--patient-id", "--patient", help="Patient id (as `ragehr index` printed it).")
]
QuestionsOpt = Annotated[
    Path | None,
    typer.Option(
        "--questions",
        help="Batch mode: a JSON-lines file, one {question, patient_id, id?, strategy?, "
        "budget?, retriever?, order?, max_new_tokens?} per line.",
    ),
]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Batch mode: JSON lines out (appended; a rerun resumes).")]
CacheSizeOpt = Annotated[int, typer.Option("--cache-size", min=1, help="Batch mode: indexes kept open at once.")]
BatchWorkersOpt = Annotated[
    int | None, typer.Option("--workers", min=1, help="With a local --ray: how many CPUs it uses (default: all).")
]


def _say_window(spec: Any, be: Any) -> None:
    """``context`` and ``ask`` share one rule: a budget above the backend's window is capped to
    that window, and both say so."""
    if spec.budget and spec.budget > be.context_window:
        typer.echo(
            f"ragehr: note: --budget {spec.budget} is above the backend's window of {be.context_window} tokens; "
            f"using {be.context_window}",
            err=True,
        )


def _single_or_batch(
    question: str | None, patient: str | None, questions: Path | None, out: Path | None, ray: str | None
) -> bool:
    """Whether this is a batch run; checks that one of the two forms was given."""
    from ragehr.errors import ConfigError

    if questions is not None:
        if question is not None or patient is not None:
            raise ConfigError("give either QUESTION with --patient, or --questions FILE, not both")
        if out is None:
            raise ConfigError("--questions needs --out FILE (where the answers go, one JSON line each)")
        return True
    if out is not None or ray is not None:
        raise ConfigError("--out and --ray go with --questions FILE")
    if question is None or patient is None:
        raise ConfigError("give a QUESTION and --patient ID, or --questions FILE --out FILE")
    return False


def _run_batch(
    mode: Literal["ask", "context"],
    questions: Path | None,
    out: Path | None,
    *,
    spec: Any,
    recipe: Any,
    index_dir: Path,
    ray: str | None,
    workers: int | None,
    cache_size: int,
) -> None:
    """Batch mode of `context` and `ask`: one JSON line per question, a summary line, and a
    non-zero exit when any question failed."""
    from contextlib import nullcontext

    from ragehr.pipeline.batch import run_batch

    assert questions is not None and out is not None  # _single_or_batch checked both
    mapper = None
    cluster: Any = nullcontext()
    if ray is not None:
        from ragehr.distributed import RayCluster, ray_map

        cluster = RayCluster(ray, num_cpus=workers)
        mapper = ray_map
    with cluster, _RichProgress(enabled=_progress_enabled()) as bars:
        summary = run_batch(
            questions,
            out,
            index_dir=index_dir,
            base_spec=spec,
            recipe=recipe,
            mode=mode,
            cache_size=cache_size,
            mapper=mapper,
            progress=bars,
            on_error=lambda e: bars.log(f"ragehr: error: {questions}:{e}"),
        )
    typer.echo(f"{summary.line()} -> {out}", err=True)
    if summary.failures:
        raise typer.Exit(summary.exit_code)


RetrieverOpt = Annotated[
    str | None, typer.Option("--retriever", help="hybrid, bm25 or dense (rag only; default: the config's).")
]


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
        from ragehr.pipeline.batch import BackendRecipe

        recipe = BackendRecipe(
            cfg.llm, backend, window=spec.budget, model_cache_dir=str(index_dir / ".cache" / "models")
        )
        _run_batch(
            "context",
            questions,
            out,
            spec=spec,
            recipe=recipe,
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
        from ragehr.pipeline.batch import BackendRecipe

        recipe = BackendRecipe(
            cfg.llm,
            backend,
            window=spec.budget,
            model_path=str(model_path) if model_path else None,
            base_url=base_url,
            model=model,
            cache_dir=None if no_cache else str(index_dir / ".cache" / "generations"),
            model_cache_dir=str(index_dir / ".cache" / "models"),
        )
        _run_batch(
            "ask",
            questions,
            out,
            spec=spec,
            recipe=recipe,
            index_dir=index_dir,
            ray=ray,
            workers=workers,
            cache_size=cache_size,
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


@app.command()
@handle_errors
def doctor(
    index_dir: IndexDirOpt = Path("indexes"),
    config: ConfigOpt = None,
    backends: Annotated[
        list[str] | None,
        typer.Option(
            "--backend",
            help="Probe only these backends (repeatable; default: the configured one, transformers and llamacpp).",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=5,
            help="Seconds each backend probe may take (the first transformers load converts the GGUF once).",
        ),
    ] = 300.0,
    no_embedder: Annotated[bool, typer.Option("--no-embedder", help="Skip loading the embedder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """What works on this machine: versions, CPU, model files, the embedder, the index folder,
    a network endpoint if configured, and for each backend whether it loads and generates
    (in a child process) with its prefill and decode tokens/s. Exit 5 when the configured
    backend cannot generate."""
    from ragehr.doctor import run_doctor

    report = run_doctor(
        index_dir,
        config,
        backends=backends,
        timeout=timeout,
        embedder=not no_embedder,
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
    typer.echo(
        f"cpu        {c['machine']}, {c['cores_usable']} usable cores, avx2 {c['avx2']}, avx512 {c['avx512']}, amx {amx}"
    )
    for m in rep["models"]:
        where = m["path"] or m.get("error")
        typer.echo(f"model      {m['what']}: {where}" + (f" ({mb(m.get('bytes'))})" if m["path"] else ""))
    e = rep.get("embedder")
    if e:
        typer.echo(
            f"embedder   {e['spec']}: "
            + (f"{e['model_id']}, dimension {e['dim']}" if e["ok"] else f"FAILS: {e['error']}")
        )
    i = rep["index"]
    typer.echo(
        f"index dir  {i['path']}: "
        + (f"{i['patients']} patient(s)" if i["exists"] else "does not exist yet (ragehr index ...)")
    )
    n = rep["network_endpoint"]
    typer.echo(
        "network    "
        + (
            f"endpoint configured ({n['from']}): {n['base_url']}"
            if n["configured"]
            else "no endpoint configured (nothing leaves this machine)"
        )
    )
    for b in rep["backends"]:
        star = "*" if b["backend"] == rep["configured_backend"] else " "
        if b.get("generates"):
            speed = ""
            if b.get("prefill_tokens_per_s") is not None:
                speed = f", prefill {b['prefill_tokens_per_s']} tok/s, decode {b.get('decode_tokens_per_s')} tok/s"
            typer.echo(
                f"backend {star} {b['backend']:<12} OK   {b.get('model')} (load {b.get('load_seconds')} s{speed})"
            )
        elif b.get("generates") is None:
            typer.echo(f"backend {star} {b['backend']:<12} skip {b.get('skipped')}")
        else:
            typer.echo(f"backend {star} {b['backend']:<12} FAIL {b.get('error')}")
    typer.echo("(* = the configured backend)")


@app.command()
@handle_errors
def patients(
    index_dir: IndexDirOpt = Path("indexes"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per patient.")] = False,
) -> None:
    """The patients indexed in INDEX_DIR, with their time span and counts (no record text)."""
    from ragehr.api import open_index

    rows = open_index(index_dir).patients()
    for p in rows:
        if as_json:
            typer.echo(json.dumps(p.to_json(), ensure_ascii=False))
        else:
            span = f"{(p.first_time or '-')[:10]} .. {(p.last_time or '-')[:10]}"
            typer.echo(
                f"{_shown_id(p.patient_id):<24} {span}  {p.n_events} events, {p.n_chunks} chunks, {p.n_sources} file(s), {p.embedder} vectors"
            )
    typer.echo(f"{len(rows)} patient(s) indexed in {index_dir}", err=True)


@app.command("eval")
@handle_errors
def eval_(
    config: Annotated[Path, typer.Argument(help="An experiment YAML (configs/experiments/...).")],
    run: Annotated[str | None, typer.Option("--run", help="Results folder name (default: the config's name).")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="Discard earlier predictions of this run.")] = False,
    ray: RayOpt = None,
    workers: BatchWorkersOpt = None,
    answer: AnswerOpt = None,
) -> None:
    """Run an ablation grid (strategies x budgets x retrievers x backends x datasets) into
    results/<run>/, resuming a killed run, and check its expected figures. With --ray, each
    condition of the grid runs as a Ray task. --answer runs every condition in that one answer
    mode (instead of the config's `answers`)."""
    from contextlib import nullcontext

    from ragehr.eval.experiment import ExperimentConfig
    from ragehr.eval.runner import run_dir_for, run_experiment
    from ragehr.fsutil import read_user_bytes

    cfg = ExperimentConfig.from_file(config)
    if answer is not None:
        from ragehr.pipeline.ask import check_answer_mode

        check_answer_mode(answer)
        cfg = cfg.model_copy(
            update={
                "answers": (answer,),
                "backends": tuple(b.model_copy(update={"answers": None}) for b in cfg.backends),
            }
        )
    run_dir = run_dir_for(cfg, run, fresh=fresh)
    mapper = None
    cluster: Any = nullcontext()
    if ray is not None:
        from ragehr.distributed import RayCluster, ray_map

        cluster, mapper = RayCluster(ray, num_cpus=workers), ray_map
    with cluster, _RichProgress(enabled=_progress_enabled()) as bars:
        config_text = read_user_bytes(config, 16 << 20).decode("utf-8")
        metrics = run_experiment(cfg, run_dir, progress=bars, config_text=config_text, mapper=mapper)
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
    typer.echo(
        f"results in {run_dir}/ (predictions.jsonl, metrics.json, summary.md, summary.csv, plots/, manifest.json)",
        err=True,
    )
    if failed:
        raise typer.Exit(1)


@app.command()
@handle_errors
def serve(
    index_dir: IndexDirOpt = Path("indexes"),
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free one).")] = 8000,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="RAGEHR_TOKEN", help="Require this token on every request (header or login)."),
    ] = None,
    backend: BackendOpt = None,
    backends: Annotated[
        str | None, typer.Option("--backends", help="Comma-separated backends the page offers (default: all).")
    ] = None,
    model_path: Annotated[Path | None, typer.Option("--model-path", help="A GGUF file (local backend).")] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="OpenAI-compatible server (openai backend).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name on that server.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the generation cache.")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Questions answered at the same time.")] = 4,
    ssl_certfile: Annotated[
        Path | None, typer.Option("--ssl-certfile", help="Serve HTTPS with this certificate.")
    ] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option("--ssl-keyfile", help="... and this key.")] = None,
    config: ConfigOpt = None,
) -> None:
    """A web page to ask a patient's record questions and read the answer beside its evidence
    and timeline, plus a JSON API (POST /api/ask, GET /api/patients, GET /api/context)."""
    from ragehr.config import RagehrConfig
    from ragehr.llm.registry import BACKENDS
    from ragehr.serve import serve as run_server
    from ragehr.serve.core import ServeOptions

    cfg = RagehrConfig.from_file(config)
    offered = tuple(b.strip().lower() for b in backends.split(",") if b.strip()) if backends else BACKENDS
    options = ServeOptions(
        index_dir=index_dir,
        config=cfg,
        backend=backend,
        backends=offered,
        model_path=str(model_path) if model_path else None,
        base_url=base_url,
        model=model,
        cache_generations=not no_cache,
        workers=workers,
    )
    run_server(
        options,
        host=host,
        port=port,
        token=token,
        debug=_state["debug"],
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )


def with_ray_default(args: list[str]) -> list[str]:
    """``--ray`` given without an address (last, or followed by something that is not one)
    means ``--ray local``; click options cannot take an optional value."""
    from ragehr.distributed import LOCAL, is_address

    out = list(args)
    i = 0
    while i < len(out):
        if out[i] == "--ray" and (i + 1 == len(out) or not is_address(out[i + 1])):
            out.insert(i + 1, LOCAL)
        i += 1
    return out


def _usage_line(exc: Any) -> str:
    """A click usage error as one line: the problem and where to read the usage."""
    msg = " ".join(exc.format_message().split())
    cmd = exc.ctx.command_path if getattr(exc, "ctx", None) is not None else "ragehr"
    return f"{msg} (see `{cmd} --help`)"


def main(argv: list[str] | None = None) -> None:
    """Run the CLI. Usage errors (a bad option, a missing argument, a value out of range) are
    one line and exit status 2, not click's usage box."""
    args = with_ray_default(sys.argv[1:] if argv is None else list(argv))
    try:
        rv = app(args=args, prog_name="ragehr", standalone_mode=False)
    except typer.TyperException as exc:  # click's UsageError, BadParameter, ... (typer vendors click)
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help())
            sys.exit(2)
        code = getattr(exc, "exit_code", 2) or 2
        line = _usage_line(exc) if ctx is not None else " ".join(exc.format_message().split())
        typer.echo(f"ragehr: error: {line}", err=True)
        sys.exit(code)
    except typer.Abort:
        typer.echo("ragehr: error: interrupted", err=True)
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
