"""Records of a persistent per-patient index: its manifest and build summaries."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class SourceFile(BaseModel):
    """A record file an index was built from."""

    model_config = _FROZEN

    path: str
    """Absolute path at build time."""
    sha256: str
    size: int


class IndexManifest(BaseModel):
    """``manifest.json`` of an index folder: what built it, from what, and what it holds."""

    model_config = _FROZEN

    format_version: int
    ragehr_version: str
    patient_id: str
    format: str = "ragehr-index"
    """The marker by which ragehr knows a folder as its own (:func:`ragehr.fsutil.ragehr_made`)."""
    config: dict
    """The :class:`ragehr.config.IndexConfig` that built it."""
    config_hash: str
    embedder_id: str
    embedder_dim: int
    tokenizer: str
    """The token counter chunk lengths were measured with."""
    sources: tuple[SourceFile, ...]
    counts: dict[str, int]
    """``events``, ``chunks``, ``duplicates_removed``, and events per kind."""
    first_time: str | None
    last_time: str | None
    """The record's last event time: the anchor for relative time in questions."""
    built_at: str
    build_seconds: dict[str, float]
    """Time spent per stage: parse, chunk, embed, bm25, write."""
    files: dict[str, str]
    """Relative path -> sha256 of every data file in the folder, checked on load."""


class BuildSummary(BaseModel):
    """What ``ragehr index`` did for one patient."""

    model_config = _FROZEN

    patient_id: str
    index_path: str
    status: str
    """``built``, ``unchanged`` (a no-op) or ``failed``."""
    n_sources: int = 0
    n_events: int = 0
    n_chunks: int = 0
    duplicates_removed: int = 0
    n_embedded: int = 0
    """Chunks embedded by the model in this build (the rest came from the cache)."""
    seconds: dict[str, float] = {}
    message: str | None = None
    exit_code: int = 0
    """For ``failed``: the exit status its error calls for (2 bad input, 3 index problem)."""
