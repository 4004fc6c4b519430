"""The on-disk embedding cache: hits cost no model calls, damage is skipped, no text leaks."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from ragehr.embeddings.cache import EmbeddingCache, embed_with_cache, text_hash
from ragehr.embeddings.hashing import HashingEmbedder

SECRET = "Patient Zebediah Quux reports chest pain"
TEXTS = [
    SECRET,
    "blood pressure 165/100",
    "influenza vaccine given",
    "metformin 500 mg twice daily",
    "blood pressure 165/100",  # a repeat within one call
]


class CountingEmbedder:
    """A fake that wraps HashingEmbedder and counts what it is asked to embed."""

    def __init__(self, dim: int = 32, model_id: str | None = None) -> None:
        self.inner = HashingEmbedder(dim=dim)
        self._model_id = model_id or self.inner.model_id
        self.calls = 0
        self.texts_embedded: list[str] = []

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self.inner.dim

    def embed(
        self,
        texts: Sequence[str],
        *,
        batch_size: int = 64,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        self.calls += 1
        self.texts_embedded.extend(texts)
        return self.inner.embed(texts, batch_size=batch_size, progress=progress)


def _shards(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


def _shard_files(folder: Path) -> list[tuple[Path, Path]]:
    """(vectors, keys) of each shard, oldest first (shard names start with microseconds)."""
    names = sorted(p.name[len("keys-") : -len(".json")] for p in folder.glob("keys-*.json"))
    return [(folder / f"vectors-{n}.npy", folder / f"keys-{n}.json") for n in names]


def test_text_hash_is_sha256_hex() -> None:
    assert text_hash("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_second_run_costs_no_model_calls(tmp_path: Path) -> None:
    emb = CountingEmbedder()
    first = embed_with_cache(emb, TEXTS, EmbeddingCache(tmp_path))
    np.testing.assert_array_equal(first, emb.inner.embed(TEXTS))
    assert first.dtype == np.float32 and first.shape == (5, 32)
    assert emb.calls == 1 and len(emb.texts_embedded) == 4  # the repeat was embedded once

    again = embed_with_cache(emb, TEXTS, EmbeddingCache(tmp_path))  # fresh object: from disk
    np.testing.assert_array_equal(again, first)
    assert emb.calls == 1


def test_only_misses_are_embedded_one_shard_per_call(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    emb = CountingEmbedder()
    embed_with_cache(emb, TEXTS[:2], cache)
    embed_with_cache(emb, TEXTS[1:4], cache)
    assert emb.texts_embedded == TEXTS[:4]
    folder = cache.model_dir(emb.model_id)
    files = _shard_files(folder)
    assert len(files) == 2 and all(v.is_file() and k.is_file() for v, k in files)
    assert sorted(_shards(folder)) == sorted(["model.json", *(p.name for vk in files for p in vk)])
    out = embed_with_cache(emb, list(reversed(TEXTS)), EmbeddingCache(tmp_path))
    assert emb.calls == 2
    np.testing.assert_array_equal(out, emb.inner.embed(list(reversed(TEXTS))))
    assert len(_shards(folder)) == 5  # a full hit writes nothing


def test_models_do_not_share_entries(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    a = CountingEmbedder(dim=32, model_id="org/model-a")
    b = CountingEmbedder(dim=16, model_id="org/model-b")
    embed_with_cache(a, TEXTS, cache)
    out = embed_with_cache(b, TEXTS, cache)
    assert b.calls == 1 and out.shape == (5, 16)
    assert cache.count("org/model-a") == 4 and cache.count("org/model-b") == 4


def test_model_ids_become_safe_distinct_folder_names(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    names = {
        cache.model_dir(m).name for m in ("../../etc/passwd", "a/b", "a_b", "sentence-transformers/all-MiniLM-L6-v2")
    }
    assert len(names) == 4
    for m in ("../../etc/passwd", "a/b", "/abs", ""):
        d = cache.model_dir(m)
        assert d.parent == tmp_path and d.name not in ("", ".", "..")
    embed_with_cache(CountingEmbedder(model_id="../../evil"), TEXTS[:1], cache)
    assert [p.parent for p in tmp_path.rglob("*.npy")] == [cache.model_dir("../../evil")]


def test_no_text_is_written_or_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cache = EmbeddingCache(tmp_path)
    embed_with_cache(CountingEmbedder(), TEXTS, cache)
    embed_with_cache(CountingEmbedder(), TEXTS, EmbeddingCache(tmp_path))
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"Zebediah" not in path.read_bytes()
    assert "Zebediah" not in caplog.text


def test_vectors_are_plain_npy_without_pickle(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    emb = CountingEmbedder()
    embed_with_cache(emb, TEXTS, cache)
    folder = cache.model_dir(emb.model_id)
    [(vec_path, keys_path)] = _shard_files(folder)
    vec = np.load(vec_path, allow_pickle=False)
    keys = json.loads(keys_path.read_text())
    assert vec.dtype == np.float32 and vec.shape == (4, 32)
    assert keys[0] == text_hash(SECRET)
    assert json.loads((folder / "model.json").read_text())["model_id"] == emb.model_id


@pytest.mark.parametrize(
    "damage",
    ["truncate_vectors", "delete_vectors", "keys_too_short", "keys_not_json", "keys_not_hex", "vectors_wrong_dtype"],
)
def test_damaged_shard_is_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str) -> None:
    emb = CountingEmbedder()
    cache = EmbeddingCache(tmp_path)
    embed_with_cache(emb, TEXTS[:2], cache)  # shard 1: damaged below
    embed_with_cache(emb, TEXTS[2:4], cache)  # shard 2: stays good
    folder = cache.model_dir(emb.model_id)
    vec, keys = _shard_files(folder)[0]
    if damage == "truncate_vectors":
        vec.write_bytes(vec.read_bytes()[:100])
    elif damage == "delete_vectors":
        vec.unlink()
    elif damage == "keys_too_short":
        keys.write_text(json.dumps(json.loads(keys.read_text())[:1]))
    elif damage == "keys_not_json":
        keys.write_text("[not json")
    elif damage == "keys_not_hex":
        keys.write_text(json.dumps(["x", "y"]))
    elif damage == "vectors_wrong_dtype":
        np.save(vec, np.zeros((2, 32), dtype=np.float64))

    caplog.set_level(logging.WARNING, logger="ragehr.embeddings.cache")
    emb2 = CountingEmbedder()
    out = embed_with_cache(emb2, TEXTS, EmbeddingCache(tmp_path))
    assert keys.name in caplog.text
    assert any(r.levelno == logging.WARNING for r in caplog.records)
    assert emb2.texts_embedded == TEXTS[:2]  # only shard 1's texts were re-embedded
    np.testing.assert_array_equal(out, emb.inner.embed(TEXTS))
    # the re-embedded texts went into a new shard that does not reuse the damaged name
    assert len(_shard_files(folder)) == 3
    emb3 = CountingEmbedder()
    embed_with_cache(emb3, TEXTS, EmbeddingCache(tmp_path))
    assert emb3.calls == 0


def test_orphan_vectors_from_a_crash_are_ignored(tmp_path: Path) -> None:
    """A crash between the vectors file and the keys file leaves vectors nobody points at."""
    emb = CountingEmbedder()
    cache = EmbeddingCache(tmp_path)
    embed_with_cache(emb, TEXTS[:2], cache)
    folder = cache.model_dir(emb.model_id)
    np.save(folder / "vectors-0000000000000002-1-00000000.npy", np.ones((7, 32), dtype=np.float32))
    emb2 = CountingEmbedder()
    out = embed_with_cache(emb2, TEXTS, EmbeddingCache(tmp_path))
    assert emb2.texts_embedded == TEXTS[2:4]
    np.testing.assert_array_equal(out, emb.inner.embed(TEXTS))
    assert len(_shard_files(folder)) == 2  # the orphan is not reused, its text re-stored


def test_progress_is_monotone_and_ends_at_len(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    seen: list[int] = []
    embed_with_cache(CountingEmbedder(), TEXTS[:2], cache)
    embed_with_cache(CountingEmbedder(), TEXTS, cache, batch_size=1, progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == len(TEXTS) and seen[0] == 3


def test_empty_input(tmp_path: Path) -> None:
    out = embed_with_cache(CountingEmbedder(dim=8), [], EmbeddingCache(tmp_path))
    assert out.shape == (0, 8) and out.dtype == np.float32


def test_lookup_and_store_api(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    h = [text_hash(t) for t in ("a", "b")]
    vecs = np.eye(2, 4, dtype=np.float32)
    assert cache.store("m", h, vecs) == 2
    assert cache.store("m", h, vecs) == 0  # already cached: nothing written
    got = EmbeddingCache(tmp_path).lookup("m", [h[1], text_hash("c")])
    assert list(got) == [h[1]]
    np.testing.assert_array_equal(got[h[1]], vecs[1])
    with pytest.raises(ValueError):
        cache.store("m", ["not-a-hash"], vecs[:1])


def test_a_model_id_reused_with_another_dimension_is_refused(tmp_path: Path) -> None:
    from ragehr.embeddings import EmbedderError

    cache = EmbeddingCache(tmp_path)
    embed_with_cache(CountingEmbedder(dim=32, model_id="same"), TEXTS[:1], cache)
    with pytest.raises(EmbedderError):
        embed_with_cache(CountingEmbedder(dim=16, model_id="same"), TEXTS[1:2], cache)


def test_shards_of_older_numbered_caches_are_still_read(tmp_path: Path) -> None:
    emb = CountingEmbedder()
    cache = EmbeddingCache(tmp_path)
    embed_with_cache(emb, TEXTS[:2], cache)
    [(vec, keys)] = _shard_files(cache.model_dir(emb.model_id))
    vec.rename(vec.with_name("vectors-000001.npy"))
    keys.rename(keys.with_name("keys-000001.json"))
    emb2 = CountingEmbedder()
    out = embed_with_cache(emb2, TEXTS, EmbeddingCache(tmp_path))
    assert emb2.texts_embedded == TEXTS[2:4]
    np.testing.assert_array_equal(out, emb.inner.embed(TEXTS))


_WRITER = """
import sys
from pathlib import Path
import numpy as np
from ragehr.embeddings.cache import EmbeddingCache, text_hash

root, tag, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(rounds):
    cache = EmbeddingCache(root)  # a fresh view each round: shard names must never collide
    texts = [f"{tag} text {i} {j}" for j in range(1 + i % 3)] + [f"shared text {i}"]
    rows = np.ones((len(texts), 8), dtype=np.float32)
    rows[:, 0] = [int(text_hash(t)[:6], 16) / 2**20 for t in texts]  # a direction per text
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    cache.store("org/m", [text_hash(t) for t in texts], rows)
"""


def test_two_processes_storing_at_once_keep_every_shard_whole(tmp_path: Path) -> None:
    """Two writers racing on one model folder: every shard written must load (no keys of one
    process paired with the vectors of the other), and every text either wrote is found."""
    import os
    import subprocess
    import sys

    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    rounds = 60
    procs = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), tag, str(rounds)], env=env)
        for tag in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    cache = EmbeddingCache(tmp_path / "cache")
    folder = cache.model_dir("org/m")
    assert len(_shard_files(folder)) == 2 * rounds
    for tag in ("a", "b"):
        for i in range(rounds):
            texts = [f"{tag} text {i} {j}" for j in range(1 + i % 3)]
            found = cache.lookup("org/m", [text_hash(t) for t in texts])
            assert len(found) == len(texts)
            for t in texts:  # the stored row is the writer's own row for that text
                row = np.ones(8, dtype=np.float32)
                row[0] = int(text_hash(t)[:6], 16) / 2**20
                np.testing.assert_allclose(found[text_hash(t)], row / np.linalg.norm(row), rtol=1e-6)
