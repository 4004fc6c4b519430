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


class UnsupportedFormatError(InputError):
    """A well-formed file whose content is not a record format ragehr knows."""


class ConfigError(RagehrError):
    """A configuration file or option that is invalid."""

    exit_code = 2
