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
    path: Annotated[Path, typer.Argument(help="A record file: MedAlign XML, C-CDA, or FHIR JSON/NDJSON.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Format, patient id, event counts by kind, time span and length of a record."""
    from ragehr.ehr import load_record
    from ragehr.ehr.summary import summarize

    s = summarize(load_record(path))
    if as_json:
        typer.echo(json.dumps(s.model_dump(mode="json"), ensure_ascii=False))
        return
    counts = ", ".join(f"{k} {v}" for k, v in s.counts.items()) or "none"
    typer.echo(f"{path}")
    typer.echo(f"  format      {s.format}")
    typer.echo(f"  patient     {s.patient_id}")
    typer.echo(f"  events      {s.n_events} ({counts})")
    typer.echo(f"  visits      {s.n_visits}")
    typer.echo(f"  time span   {s.first_time or '-'} .. {s.last_time or '-'}")
    typer.echo(f"  length      ~{s.n_tokens_estimate} tokens ({s.tokenizer})")


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
    k: Annotated[int, typer.Option("--k", min=1, help="How many hits.")] = 10,
    retriever: Annotated[str, typer.Option("--retriever", help="hybrid, bm25 or dense.")] = "hybrid",
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

    if retriever not in ("hybrid", "bm25", "dense"):
        raise ConfigError(f"--retriever must be hybrid, bm25 or dense, not {retriever!r}")
    cfg = RagehrConfig.from_file(config)
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
