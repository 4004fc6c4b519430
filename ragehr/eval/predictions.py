"""The owner of a run's ``predictions.jsonl``: one JSON object per (item, condition).

The runner appends rows here; the reports read them back (:func:`read_rows`) and are pure
functions of the rows. A line cut by a kill is dropped (and its condition redone) when the
file is opened again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

__all__ = ["FILENAME", "PredictionsFile", "read_rows"]

FILENAME = "predictions.jsonl"


class PredictionsFile:
    """Append-only rows of one run folder, resumable."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / FILENAME
        self._fh: TextIO | None = None

    def done(self) -> set[tuple[str, str]]:
        """``(item_id, condition)`` of the complete rows; a cut last line is removed."""
        done: set[tuple[str, str]] = set()
        if not self.path.is_file():
            return done
        lines = self.path.read_text(encoding="utf-8").splitlines()
        good = []
        for line in lines:
            try:
                obj = json.loads(line)
                done.add((obj["item_id"], obj["condition"]))
                good.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a kill: dropped and redone
        if len(good) != len(lines):
            self.path.write_text("".join(line + "\n" for line in good), encoding="utf-8")
        return done

    def __enter__(self) -> PredictionsFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def append(self, row: dict[str, Any]) -> None:
        assert self._fh is not None, "open the file with `with PredictionsFile(...)`"
        self._fh.write(json.dumps(row, default=str) + "\n")
        self._fh.flush()


def iter_rows(run_dir: Path) -> Iterator[dict[str, Any]]:
    p = Path(run_dir) / FILENAME
    if not p.is_file():
        return
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                yield json.loads(line)
            except ValueError:
                continue


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """Every complete row of ``run_dir/predictions.jsonl`` (none when it does not exist)."""
    return list(iter_rows(run_dir))
