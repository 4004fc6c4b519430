"""What every command shares: the typer app, one-line errors, common options and helpers."""

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
    llm: Any,
    backend: str | None,
    index_dir: Path,
    ray: str | None,
    workers: int | None,
    cache_size: int,
    **backend_options: Any,
) -> None:
    """Batch mode of `context` and `ask`: one JSON line per question, a summary line, and a
    non-zero exit when any question failed. The backend is made per worker from ``llm`` (the
    config's), ``backend`` and ``backend_options`` (``BackendRecipe``'s fields)."""
    from contextlib import nullcontext

    from ragehr.pipeline.batch import BackendRecipe, run_batch

    recipe = BackendRecipe(
        llm, backend, window=spec.budget, model_cache_dir=str(index_dir / ".cache" / "models"), **backend_options
    )

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
