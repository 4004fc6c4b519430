"""Small file-system helpers shared by every layer that reads user files or writes artifacts:
atomic writes; the one judge of what ragehr made (:func:`ragehr_made`); opening user paths
without hanging on a FIFO or device (:func:`open_regular`); bounded line reading
(:func:`iter_bounded_lines`); same-file and plain-name checks.

This module imports nothing of ragehr (every layer may use it) and raises plain ``OSError``
subclasses; callers turn them into their own typed, one-line errors."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
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


# -- what is ragehr's -----------------------------------------------------------------------
#
# ragehr writes into and deletes only what it made, and it judges that by what a folder's
# manifest *says*, never by file names: a user's folder holding a file named ``manifest.json``
# is not ragehr's. :func:`ragehr_made` is the one judge; the index store, batch ``--out``,
# ``convert -o`` and ``eval --fresh`` all ask it (or the helpers below) before they write.

INDEX_FORMAT = "ragehr-index"
"""The ``format`` marker of an index folder's ``manifest.json``."""
RUN_FORMAT = "ragehr-run"
"""The ``format`` marker of a results (eval run) folder's ``manifest.json``."""
MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 64 << 20
_INDEX_KEYS = frozenset({"format_version", "ragehr_version", "patient_id", "config_hash", "files"})
"""Keys every index manifest has had since format version 1 (manifests written before the
``format`` marker existed are recognised by these, and by their patient id)."""


def read_json_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The JSON object in ``folder/manifest.json``, or ``None`` when ``folder`` is not a real
    folder (a link, a file), the manifest is not a regular file, is too large, or is not a JSON
    object. Never follows a link and never blocks (non-regular files are not opened)."""
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return None
        fd = open_regular(Path(folder) / MANIFEST, max_bytes=MAX_MANIFEST_BYTES, follow=False)
    except (OSError, NotRegularFileError, FileTooLargeError):
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            doc = json.loads(fh.read(MAX_MANIFEST_BYTES + 1))
    except (OSError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def is_index_manifest(doc: dict[str, Any] | None, patient_id: str | None = None) -> bool:
    """Whether ``doc`` is an index manifest ragehr wrote (its format marker, or the keys of a
    version-1 manifest written before the marker), for ``patient_id`` when given."""
    if not isinstance(doc, dict):
        return False
    marked = doc.get("format") == INDEX_FORMAT or ("format" not in doc and doc.keys() >= _INDEX_KEYS)
    if not marked or not isinstance(doc.get("patient_id"), str) or not isinstance(doc.get("files"), dict):
        return False
    return patient_id is None or doc["patient_id"] == patient_id


def is_run_manifest(doc: dict[str, Any] | None) -> bool:
    """Whether ``doc`` is the manifest of an eval run folder ragehr wrote."""
    return isinstance(doc, dict) and doc.get("format") == RUN_FORMAT and isinstance(doc.get("name"), str)


def ragehr_made(path: str | Path, kind: str, *, patient_id: str | None = None) -> bool:
    """The one judge of whether ``path`` is ragehr's to replace or delete.

    - ``kind="index"``: a real folder (not a link) whose ``manifest.json`` is an index
      manifest ragehr wrote, for ``patient_id`` when given;
    - ``kind="run"``: a real folder whose ``manifest.json`` is an eval run manifest.

    File names alone never count: a damaged or foreign manifest means "not ragehr's"."""
    doc = read_json_manifest(path)
    if kind == "index":
        return is_index_manifest(doc, patient_id)
    if kind == "run":
        return is_run_manifest(doc)
    raise ValueError(f"unknown kind {kind!r}")


# -- reading user files without hanging -----------------------------------------------------


class NotRegularFileError(OSError):
    """A user path that is a FIFO, socket, device or folder: refused before any read."""


class FileTooLargeError(OSError):
    """A user file over a size limit: refused before it is read."""


def file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def open_regular(path: str | Path, *, max_bytes: int | None = None, follow: bool = True) -> int:
    """Open ``path`` for reading only if it is a regular file (at most ``max_bytes`` long);
    returns the file descriptor. Opened non-blocking, so a FIFO with no writer cannot hang
    the open, then checked with ``fstat`` on the descriptor itself (no race with a rename).
    Raises :class:`NotRegularFileError`, :class:`FileTooLargeError` or the ``OSError``."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    st = os.stat(path) if follow else os.lstat(path)
    if not stat.S_ISREG(st.st_mode):  # a socket cannot even be opened: say what it is
        raise NotRegularFileError(0, f"is {file_kind(st.st_mode)}, not a regular file", str(path))
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(0, f"is {file_kind(st.st_mode)}, not a regular file", str(path))
        if max_bytes is not None and st.st_size > max_bytes:
            raise FileTooLargeError(0, f"is {st.st_size} bytes, over the {max_bytes}-byte limit", str(path))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def regular_file_problem(path: str | Path) -> str | None:
    """``None`` when ``path`` (links followed) is a regular file, else what it is instead
    (``"no such file"``, ``"is a FIFO (named pipe), not a regular file"`` ...). Looks, never opens."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or type(exc).__name__})"
    if stat.S_ISREG(st.st_mode):
        return None
    return f"is {file_kind(st.st_mode)}, not a regular file"


def iter_bounded_lines(fh: BinaryIO, max_line: int) -> Iterator[tuple[int, int, bytes | None, int]]:
    """The lines of a binary file as ``(line number, start offset, line, length)``, reading
    at most ``max_line`` bytes of any line into memory: a longer line is yielded as ``None``
    (its length counted) and skipped, so a 600 MB line never sits in memory whole. Lines keep
    their ``\\n``."""
    off = 0
    lineno = 0
    step = max(1, min(max_line, 1 << 20))
    while True:
        line = fh.readline(max_line + 1)
        if not line:
            return
        lineno += 1
        start = off
        if len(line) > max_line and not line.endswith(b"\n"):
            n = len(line)
            while True:
                more = fh.readline(step)
                n += len(more)
                if not more or more.endswith(b"\n"):
                    break
            off += n
            yield lineno, start, None, n
            continue
        off += len(line)
        yield lineno, start, line, len(line)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether ``a`` and ``b`` are one file: the same path once resolved (links followed),
    or the same inode (a hard link). A path that does not exist is nobody's twin."""
    try:
        if Path(a).resolve() == Path(b).resolve():
            return True
        return os.path.samefile(a, b)
    except (OSError, RuntimeError):
        return False


def check_plain_name(name: str, what: str) -> str | None:
    """``None`` when ``name`` can name one folder inside another (no separator, not ``.`` or
    ``..``, not absolute, no NUL or control character, not empty), else the problem."""
    if not name or name in (".", ".."):
        return f"{what} {name!r} is not a folder name"
    if "/" in name or "\\" in name or os.sep in name or (os.altsep and os.altsep in name):
        return f"{what} {name!r} holds a path separator; give a plain name"
    if any(ord(c) < 32 or c == "\x7f" for c in name):
        return f"{what} holds a NUL or control character; give a plain name"
    if len(name.encode("utf-8", "surrogatepass")) > 200:
        return f"{what} is longer than 200 bytes"
    return None


def output_problem(out: str | Path, inputs: Iterable[tuple[str | Path, str]], flag: str) -> str | None:
    """Why ``out`` must not be written, or ``None``: it is one of ``inputs`` (``(path, what it
    is)`` pairs; the same file by path, ``..``, symlink or hard link), a folder, or a special
    file (a FIFO, a device). Whether an existing regular file may be replaced is the caller's
    rule (``convert`` wants ``--force``; batch mode, that every line is ragehr's)."""
    p = Path(out)
    for src, what in inputs:
        if same_file(p, src):
            return f"{p}: {flag} is {what} {src}; give another file name"
    if p.is_dir():
        return f"{p}: is a directory; give a file name for {flag}"
    if os.path.lexists(p):
        problem = regular_file_problem(p)
        if problem is not None and problem != "no such file":
            return f"{p}: {flag} {problem}; give a regular file name"
    return None


MAX_TEXT_FILE_BYTES = 256 << 20
"""Questions files, eval datasets and tables: larger files are refused before reading."""
MAX_JSONL_LINE_BYTES = 1 << 20
"""One line of a questions (JSONL) file: a longer line is skipped and reported."""


def read_user_bytes(path: str | Path, max_bytes: int = MAX_TEXT_FILE_BYTES) -> bytes:
    """The whole of a user's regular file of at most ``max_bytes`` (see :func:`open_regular`)."""
    with os.fdopen(open_regular(path, max_bytes=max_bytes), "rb") as fh:
        return fh.read(max_bytes + 1)
