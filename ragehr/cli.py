"""The ``ragehr`` command line: thin over the library.

Each command parses its arguments, calls one library function and renders the result. Errors
a user can cause (:class:`ragehr.errors.RagehrError`) become one line on stderr and a non-zero
exit; ``--debug`` shows the traceback instead. Nothing here prints note text unless the
command's job is to show it.
"""

from __future__ import annotations

import json
import logging
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
