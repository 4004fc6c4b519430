"""Configuration records. The lowest layer: imports nothing from ragehr but the types.

Every config is a frozen pydantic model with a ``config_hash()`` so artifacts can record
exactly what built them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ragehr.errors import ConfigError

_FROZEN = ConfigDict(frozen=True, extra="forbid")


def stable_hash(obj: Any, n: int = 16) -> str:
    """A short sha256 of an object's canonical JSON."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:n]


class ChunkingConfig(BaseModel):
    """How a record is cut into retrievable pieces."""

    model_config = _FROZEN

    max_tokens: int = Field(256, ge=16, le=8192)
    """Upper bound on a chunk's length, by the estimate counter (:mod:`ragehr.tokens`)."""
    overlap_tokens: int = Field(32, ge=0)
    """Tokens of a note's previous sentences repeated at the start of its next chunk."""
    version: int = 1
    """Bumped whenever the chunking algorithm changes, so old indexes are rebuilt."""

    def config_hash(self) -> str:
        return stable_hash(self.model_dump(mode="json"))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a :class:`ConfigError`."""
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: malformed YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data
