"""The hashing fake embedder, load_embedder's specs, and the import-lightness of the layer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragehr.embeddings import Embedder, ModelNotFoundError, load_embedder
from ragehr.embeddings.hashing import HashingEmbedder, features
from ragehr.errors import ConfigError, RagehrError

TEXTS = [
    "Blood pressure 165/100 mmHg, elevated. Hypertension noted.",
    "Hypertension: blood pressure remains elevated at 160/95.",
    "Influenza vaccine given in the left deltoid.",
    "",
    "   ...   ",
    "Métformine 500 mg deux fois par jour",
]


def test_shape_dtype_and_unit_norm() -> None:
    emb = HashingEmbedder(dim=64)
    out = emb.embed(TEXTS)
    assert out.shape == (len(TEXTS), 64)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_empty_input_gives_zero_rows() -> None:
    out = HashingEmbedder(dim=32).embed([])
    assert out.shape == (0, 32) and out.dtype == np.float32


def test_model_id_and_dim() -> None:
    emb = HashingEmbedder()
    assert emb.dim == 256 and emb.model_id == "hashing-v1-d256"
    assert HashingEmbedder(dim=8).model_id == "hashing-v1-d8"
    assert isinstance(emb, Embedder)
    with pytest.raises(ValueError):
        HashingEmbedder(dim=0)


def test_similar_texts_score_higher_than_unrelated() -> None:
    out = HashingEmbedder().embed(TEXTS[:3])
    related = float(out[0] @ out[1])
    unrelated = float(out[0] @ out[2])
    assert related > unrelated + 0.2


def test_identical_texts_and_case_give_identical_rows() -> None:
    emb = HashingEmbedder()
    a, b = emb.embed(["Aspirin 81 mg daily", "ASPIRIN 81 MG DAILY"])
    np.testing.assert_array_equal(a, b)


def test_bigrams_make_word_order_matter() -> None:
    w = features("no chest pain")
    assert w["no chest"] == 0.5 and w["chest pain"] == 0.5 and w["pain"] == 1.0
    a, b = HashingEmbedder().embed(["no chest pain", "pain chest no"])
    assert float(a @ b) < 0.999


def test_batches_do_not_change_rows_and_progress_is_cumulative() -> None:
    emb = HashingEmbedder(dim=128)
    seen: list[int] = []
    out = emb.embed(TEXTS, batch_size=4, progress=seen.append)
    assert seen == [4, len(TEXTS)]
    np.testing.assert_array_equal(out, emb.embed(TEXTS, batch_size=1))
    np.testing.assert_array_equal(out[2], emb.embed([TEXTS[2]])[0])


def test_stable_across_processes() -> None:
    """BLAKE2b, not Python's salted hash(): another interpreter gives the same bytes."""
    code = (
        "import json, sys; from ragehr.embeddings.hashing import HashingEmbedder;"
        "print(json.dumps(HashingEmbedder(dim=16).embed(json.loads(sys.argv[1])).tolist()))"
    )
    texts = TEXTS[:3]
    runs = [
        subprocess.run(
            [sys.executable, "-c", code, json.dumps(texts)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            cwd=Path(__file__).resolve().parents[2],
        ).stdout
        for seed in ("1", "2")
    ]
    assert runs[0] == runs[1]
    np.testing.assert_allclose(np.array(json.loads(runs[0]), dtype=np.float32), HashingEmbedder(dim=16).embed(texts))


def test_load_embedder_hashing_specs() -> None:
    assert load_embedder("hashing").model_id == "hashing-v1-d256"
    e = load_embedder("hashing:64")
    assert e.dim == 64 and e.model_id == "hashing-v1-d64"
    for bad in ("hashing:", "hashing:abc", "hashing:0", "hashing:-3"):
        with pytest.raises(ConfigError):
            load_embedder(bad)


def test_load_embedder_unknown_path_raises_model_not_found(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        load_embedder(str(tmp_path / "no-such-model"))
    assert isinstance(info.value, RagehrError)
    assert "no-such-model" in str(info.value)


def test_importing_the_layer_stays_light() -> None:
    """No torch, transformers, sentence-transformers or faiss until a model is used."""
    code = (
        "import sys, json\n"
        "import ragehr.embeddings, ragehr.embeddings.hashing, ragehr.embeddings.cache\n"
        "import ragehr.embeddings.sentence, ragehr.retrieval.dense\n"
        "e = ragehr.embeddings.load_embedder('hashing:8'); e.embed(['a b'])\n"
        "heavy = ['torch', 'transformers', 'sentence_transformers', 'faiss']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert json.loads(out) == []
