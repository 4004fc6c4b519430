"""The exception hierarchy of ragehr.

The library raises these and never prints; the CLI turns each into one line on stderr and a
non-zero exit. Messages name files, ids and counts, never note text.
"""

from __future__ import annotations


class RagehrError(Exception):
    """Base class of every error a user can cause and ragehr can explain."""

    exit_code: int = 1


class InputError(RagehrError):
    """A record file that cannot be read or parsed: bad, truncated, hostile or unknown."""

    exit_code = 2

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self):
        return (type(self), (self.path, self.problem))


class UnsupportedFormatError(InputError):
    """A well-formed file whose content is not a record format ragehr knows."""


class ConfigError(RagehrError):
    """A configuration file or option that is invalid."""

    exit_code = 2


class IndexNotFoundError(RagehrError):
    """No index exists for the patient asked about."""

    exit_code = 3


class StaleIndexError(RagehrError):
    """An index built by another format version or config, or from changed sources."""

    exit_code = 3


class CorruptIndexError(RagehrError):
    """An index folder with a missing, truncated or inconsistent file."""

    exit_code = 3


class ModelNotFoundError(RagehrError):
    """Model weights that are not installed (ragehr never downloads them)."""

    exit_code = 4


class NotAnIndexError(RagehrError):
    """A folder where a patient's index belongs that is not one of ragehr's: never touched."""

    exit_code = 3


class IndexBusyError(RagehrError):
    """Another ragehr process holds the patient's index lock (a build in progress)."""

    exit_code = 3


class IndexWriteError(RagehrError):
    """The index could not be written (a full disk, a read-only folder); the old one is kept."""

    exit_code = 3


def show_id(value: object, limit: int = 80) -> str:
    """A patient id (or any user-given name) as it is safe to print in a one-line message:
    quoted, control and other unprintable characters escaped, cut at ``limit`` characters."""
    text = str(value)
    cut = len(text) > limit
    text = text[:limit]
    out = []
    for ch in text:
        if ch == "\\" or ch == "'":
            out.append("\\" + ch)
        elif ch.isprintable() and ch not in "\u2028\u2029":
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "'" + "".join(out) + ("...'" if cut else "'")


def escape_controls(text: object) -> str:
    """``text`` with control characters (terminal escapes, newlines, bells) and other
    unprintable ones escaped, so one message stays one line and cannot drive a terminal."""
    out = []
    for ch in str(text):
        if ch.isprintable() and ch not in "\u2028\u2029":
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)
