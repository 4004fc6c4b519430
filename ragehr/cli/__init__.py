"""The ``ragehr`` command line: thin over the library.

Each command parses its arguments, calls one library function and renders the result. Errors
a user can cause (:class:`ragehr.errors.RagehrError`) become one line on stderr and a non-zero
exit; ``--debug`` shows the traceback instead. Nothing here prints note text unless the
command's job is to show it.

Commands by group, one module each: :mod:`ragehr.cli.records` (inspect, convert, index,
patients), :mod:`ragehr.cli.query` (retrieve, context, ask), :mod:`ragehr.cli.evaluate`
(eval), :mod:`ragehr.cli.serving` (serve, doctor); the app, shared options and the one-line
error handling are in :mod:`ragehr.cli.common`. Typer and rich are imported in this package
and nowhere else.
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Any

import typer

from ragehr.cli.common import app

__all__ = ["app", "main", "with_ray_default"]

# Importing a group registers its commands, in this order (the order `ragehr --help` lists).
for _group in ("records", "query", "evaluate", "serving"):
    import_module(f"ragehr.cli.{_group}")


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
