"""Records of the answering half: evidence packed into a prompt, generation requests and
results, and the answer with its citations."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ragehr.types.record import EventKind

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class EvidenceItem(BaseModel):
    """One piece of packed context, cited in the prompt as ``[marker]``."""

    model_config = _FROZEN

    marker: int
    """The citation number shown to the model, 1-based."""
    chunk_id: str
    kind: EventKind
    start: datetime | None
    end: datetime | None
    text: str
    source: str
    """The first source locator (``file#path``) of the chunk."""
    n_tokens: int
    """Length in the budget's tokenizer (with its citation prefix)."""
    event_ids: tuple[str, ...] = ()


class Message(BaseModel):
    model_config = _FROZEN

    role: Literal["system", "user", "assistant"]
    content: str


class GenerationRequest(BaseModel):
    """What a backend is asked. LLM backends read ``messages``; the extractive backend reads
    ``question`` and ``evidence`` (the same evidence the messages hold)."""

    model_config = _FROZEN

    messages: tuple[Message, ...]
    question: str
    evidence: tuple[EvidenceItem, ...] = ()
    max_tokens: int = 256
    temperature: float = 0.0
    seed: int = 0
    stop: tuple[str, ...] = ()


class Generation(BaseModel):
    """A backend's answer and what it cost."""

    model_config = _FROZEN

    text: str
    backend: str
    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    seconds: float = 0.0
    cached: bool = False
