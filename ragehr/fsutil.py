"""Small file-system helpers shared by every layer that writes artifacts."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file so that readers see either the old content or the whole new content:
    ``write`` fills a temporary file beside it, which is flushed to disk and then renamed over
    the target. On any failure the temporary file is removed and the target is untouched."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> None:
    atomic_write(path, lambda fh: fh.write(text.encode(encoding)))


def atomic_save_npy(path: str | Path, array: Any) -> None:
    """``numpy.save`` (never pickling) through :func:`atomic_write`."""
    import numpy as np

    atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))
