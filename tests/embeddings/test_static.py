"""The model2vec static embedder: distilled once, cached with its own id, safe to share.

Most tests use a tiny stand-in for model2vec's distillation (the real MiniLM tokenizer with
small random vectors), so they take milliseconds; one test, marked ``models`` and ``slow``,
distils the real model from the packaged MiniLM (~1 minute on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragehr.embeddings import QueryLRU, load_embedder, minilm_folder
from ragehr.embeddings.static import META_FILE, StaticEmbedder, distill_static

REPO = Path(__file__).resolve().parents[2]
DIM = 8


def tiny_distill(source: Path, pca_dims: int, progress=None):
    """A StaticModel over MiniLM's own word-piece vocabulary with seeded random vectors."""
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(source / "tokenizer.json"))
    n = tok.get_vocab_size()
    if progress is not None:
        progress(0, n)
        progress(n, n)
    vecs = np.random.default_rng(0).standard_normal((n, pca_dims)).astype(np.float32)
    return StaticModel(vectors=vecs, tokenizer=tok, config={"normalize": True}, normalize=True)


def _distil(models: Path, **kw):
    return distill_static(models, pca_dims=DIM, distill_fn=tiny_distill, **kw)


@pytest.fixture()
def tiny(tmp_path: Path) -> StaticEmbedder:
    return StaticEmbedder(_distil(tmp_path / "models", notice=None))


def test_distils_once_with_a_notice_and_progress(tmp_path: Path) -> None:
    notices: list[str] = []
    steps: list[tuple[int, int]] = []
    calls = []

    def counting(source, dims, progress):
        calls.append(source)
        return tiny_distill(source, dims, progress)

    kw = dict(pca_dims=DIM, distill_fn=counting, notice=notices.append, progress=lambda d, t: steps.append((d, t)))
    first = distill_static(tmp_path, **kw)
    again = distill_static(tmp_path, **kw)
    assert first == again and len(calls) == 1
    assert len(notices) == 1 and "once" in notices[0] and str(first) in notices[0]
    assert steps[-1][0] == steps[-1][1] > 0
    # no temporary folders left behind; only the model and its lock file
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([first.name, f".{first.name}.lock"])


def test_model_id_names_source_vocabulary_dims_and_version(tiny: StaticEmbedder) -> None:
    from importlib.metadata import version

    meta = json.loads((tiny.folder / META_FILE).read_text())
    mid = tiny.model_id
    assert mid == meta["model_id"]
    assert "sentence-transformers/all-MiniLM-L6-v2" in mid
    assert f"vocab{meta['vocabulary_size']}" in mid and meta["vocabulary_size"] > 20000
    assert f"/d{DIM}/" in mid and tiny.dim == DIM
    assert f"model2vec-{version('model2vec')}" in mid
    assert meta["safetensors_sha256"][:12] in mid


def test_embeddings_are_the_normalised_mean_of_token_vectors(tiny: StaticEmbedder) -> None:
    """Cross-check against an independent computation: the MiniLM tokenizer's word pieces
    (special tokens dropped), their rows of the safetensors matrix, averaged, normalised."""
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(minilm_folder() / "tokenizer.json"))
    tok.no_padding()
    table = load_file(str(tiny.folder / "model.safetensors"))["embeddings"].astype(np.float64)
    texts = ["blood pressure 165/100", "Potassium 4.1 mmol/L on 2019-03-03", "hypertension"]
    out = tiny.embed(texts)
    assert out.dtype == np.float32 and out.shape == (3, DIM)
    for text, row in zip(texts, out):
        ids = tok.encode(text, add_special_tokens=False).ids
        assert ids
        mean = table[ids].mean(axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), atol=2e-3)


def test_pieces_without_letters_are_zero_so_numbers_and_dates_do_not_move_a_vector(tiny: StaticEmbedder) -> None:
    """The ``words1`` recipe: a chunk's vector is the mean of its word pieces that carry
    words; digits, punctuation and dates leave it where it was (BM25 still matches them)."""
    from safetensors.numpy import load_file

    from ragehr.embeddings.static import RECIPE, non_word_pieces

    meta = json.loads((tiny.folder / META_FILE).read_text())
    assert meta["recipe"] == RECIPE and f"/{RECIPE}/" in tiny.model_id and tiny.folder.name.endswith(RECIPE)
    table = load_file(str(tiny.folder / "model.safetensors"))["embeddings"]
    vocab = tiny._model.tokenizer.get_vocab()
    zero = non_word_pieces(vocab)
    assert meta["non_word_pieces_zeroed"] == len(zero) > 100
    assert not table[zero].any() and np.abs(table[vocab["potassium"]]).sum() > 0
    assert {vocab[t] for t in ("4", ".", "##3", "/", "2019", "-")} <= set(zero)
    assert not {vocab[t] for t in ("potassium", "##ol", "a1c" if "a1c" in vocab else "mg", "[UNK]")} & set(zero)
    a, b, c = tiny.embed(
        ["Potassium 4.1 mmol/L on 2019-03-03", "Potassium mmol L on", "Potassium 5.9 mmol/L on 2021-11-30"]
    )
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)
    only_numbers = tiny.embed(["120/80 2019-03-03"])[0]
    assert np.linalg.norm(only_numbers) == pytest.approx(1.0, abs=1e-5)


def test_rows_are_unit_and_deterministic_and_long_texts_are_not_truncated(tiny: StaticEmbedder) -> None:
    texts = ["", "x", "influenza vaccine given", "a " * 5000 + "metformin"]
    out = tiny.embed(texts)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(out, tiny.embed(texts))
    np.testing.assert_array_equal(out[2], tiny.embed([texts[2]])[0])
    # the word after 5,000 others still counts (no 512-token truncation)
    assert not np.allclose(out[3], tiny.embed(["a " * 5000])[0])
    seen: list[int] = []
    tiny.embed(texts * 300, batch_size=64, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == 1200


def test_load_embedder_static_uses_the_models_dir(tmp_path: Path) -> None:
    folder = distill_static(tmp_path, distill_fn=tiny_distill, notice=None)  # 256 dims, as `static`
    emb = load_embedder("static", models_dir=tmp_path)
    assert isinstance(emb, StaticEmbedder)
    assert emb.model_id == StaticEmbedder(folder).model_id


def test_two_processes_distilling_at_once_distil_once(tmp_path: Path) -> None:
    script = tmp_path / "distil.py"
    script.write_text(
        "import sys, time\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, sys.argv[3])\n"
        "from test_static import tiny_distill\n"
        "from ragehr.embeddings.static import distill_static\n"
        "def slow(source, dims, progress):\n"
        "    with open(sys.argv[2], 'a') as fh: fh.write('distil\\n')\n"
        "    time.sleep(1.5)\n"
        "    return tiny_distill(source, dims, progress)\n"
        "print(distill_static(Path(sys.argv[1]), pca_dims=8, distill_fn=slow, notice=None))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "calls.log"
    args = [sys.executable, str(script), str(tmp_path / "models"), str(log), str(Path(__file__).parent)]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1]
    assert log.read_text().count("distil") == 1
    assert StaticEmbedder(Path(outs[0])).dim == 8


def test_a_model_finished_elsewhere_first_is_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the lock (another machine on a shared disk), the atomic rename still leaves
    one whole model: the later copy is discarded, not mixed in."""
    import contextlib

    import ragehr.embeddings.static as static

    monkeypatch.setattr(static, "_file_lock", lambda path: contextlib.nullcontext())
    other = tmp_path / "other"
    finished = _distil(other, notice=None)
    target = tmp_path / "models" / finished.name

    def racing(source, dims, progress):
        import shutil

        shutil.copytree(finished, target)  # the other writer wins while we distil
        return tiny_distill(source, dims, progress)

    got = distill_static(tmp_path / "models", pca_dims=DIM, distill_fn=racing, notice=None)
    assert got == target
    assert StaticEmbedder(got).model_id == StaticEmbedder(finished).model_id
    assert [p.name for p in (tmp_path / "models").iterdir() if p.name.endswith(".tmp")] == []


def test_a_damaged_model_folder_is_a_clear_error(tmp_path: Path) -> None:
    from ragehr.errors import RagehrError

    folder = _distil(tmp_path, notice=None)
    (folder / META_FILE).write_text("{not json")
    with pytest.raises(RagehrError, match="delete the folder"):
        StaticEmbedder(folder).embed(["x"])


def test_query_lru_returns_remembered_rows_without_calling_the_model(tiny: StaticEmbedder) -> None:
    calls: list[int] = []

    class Counting:
        model_id, dim = tiny.model_id, tiny.dim

        def embed(self, texts, **kw):
            calls.append(len(texts))
            return tiny.embed(texts, **kw)

    lru = QueryLRU(Counting(), size=2)
    a = lru.embed(["latest potassium?"])
    a[0, 0] = 99.0  # a caller changing its copy must not change the remembered row
    b = lru.embed(["latest potassium?"])
    np.testing.assert_array_equal(b, tiny.embed(["latest potassium?"]))
    assert calls == [1] and lru.hits == 1
    lru.embed(["q2"])
    lru.embed(["q3"])  # evicts "latest potassium?"
    lru.embed(["latest potassium?"])
    assert calls == [1, 1, 1, 1]
    lru.embed(["x", "y"])  # batches pass straight through
    assert calls[-1] == 2 and lru.model_id == tiny.model_id and lru.dim == DIM


def test_an_index_records_the_static_model_and_refuses_another(tmp_path: Path, monkeypatch) -> None:
    from ragehr.config import IndexConfig
    from ragehr.errors import StaleIndexError
    from ragehr.index.build import build_indexes
    from ragehr.index.search import load_patient_index, search

    record = REPO / "tests" / "fixtures" / "medalign" / "EHR_sample.xml"
    models = tmp_path / "idx" / ".cache" / "models"
    # the folder `embedder: static` looks for by default (256 dimensions), made by the tiny
    # stand-in; `make test` points RAGEHR_MODELS_DIR at a shared folder, which would win
    monkeypatch.delenv("RAGEHR_MODELS_DIR", raising=False)
    emb = StaticEmbedder(distill_static(models, distill_fn=tiny_distill, notice=None))
    [s] = build_indexes([record], tmp_path / "idx", IndexConfig(embedder="static"))
    assert s.status == "built"
    idx = load_patient_index(tmp_path / "idx", s.patient_id)  # finds the model beside the cache
    assert idx.stored.manifest.embedder_id == emb.model_id == idx.embedder.model_id
    hits, _ = search(idx, "blood pressure", k=3)
    assert hits
    other = StaticEmbedder(_distil(tmp_path / "elsewhere", notice=None))
    meta = json.loads((other.folder / META_FILE).read_text())
    meta["model_id"] += "-changed"
    (other.folder / META_FILE).write_text(json.dumps(meta))
    with pytest.raises(StaleIndexError):
        load_patient_index(tmp_path / "idx", s.patient_id, embedder=StaticEmbedder(other.folder))


@pytest.mark.models
@pytest.mark.slow
def test_real_distillation_from_the_packaged_minilm(tmp_path: Path) -> None:
    """Distils the real static model offline (~1 minute) and checks it knows some meaning."""
    emb = load_embedder("static", models_dir=tmp_path)
    emb.prepare(notice=None)
    assert emb.dim == 256
    v = emb.embed(["high blood pressure", "hypertension", "influenza vaccine given"])
    assert v[0] @ v[1] > v[0] @ v[2]
