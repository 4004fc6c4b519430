"""DenseIndex: FAISS results cross-checked against brute-force numpy; ties; files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragehr.errors import CorruptIndexError, RagehrError, StaleIndexError
from ragehr.retrieval.dense import DenseIndex

TOL = 1e-5


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _ids(n: int) -> list[str]:
    return [f"c{i:04d}" for i in range(n)]


def _check_against_brute_force(
    index: DenseIndex,
    vecs: np.ndarray,
    ids: list[str],
    q: np.ndarray,
    k: int,
    allowed: set[str] | None,
) -> None:
    cand = [i for i, c in enumerate(ids) if allowed is None or c in allowed]
    hits = index.search(q, k, allowed=allowed)
    assert len(hits) == max(0, min(k, len(cand)))
    brute = {ids[i]: float(vecs[i] @ q) for i in cand}
    returned = [h.chunk_id for h in hits]
    assert len(set(returned)) == len(returned)
    for h in hits:
        assert h.chunk_id in brute
        assert abs(h.score - brute[h.chunk_id]) < TOL
    for a, b in zip(hits, hits[1:]):
        assert (-a.score, a.chunk_id) < (-b.score, b.chunk_id)
    if hits:
        worst = hits[-1].score
        for cid, s in brute.items():
            if cid not in returned:
                assert s <= worst + TOL
    # with no near-ties, the exact expected list
    order = sorted(brute, key=lambda c: (-brute[c], c))[: max(0, k)]
    gaps = np.diff(sorted(brute.values()))
    if len(gaps) == 0 or gaps.min() > 10 * TOL:
        assert returned == order


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 120),
    dim=st.integers(1, 24),
    k=st.integers(0, 130),
    filter_fraction=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_search_matches_brute_force(seed: int, n: int, dim: int, k: int, filter_fraction: float | None) -> None:
    rng = np.random.default_rng(seed)
    vecs = _unit(rng, n, dim)
    ids = _ids(n)
    index = DenseIndex.build(vecs, ids, "m")
    q = _unit(rng, 1, dim)[0]
    allowed = None
    if filter_fraction is not None:
        allowed = {c for c in ids if rng.random() < filter_fraction} | {"not-in-index"}
    _check_against_brute_force(index, vecs, ids, q, k, allowed)


def test_k_larger_than_n_returns_all_and_k_zero_none() -> None:
    rng = np.random.default_rng(0)
    vecs = _unit(rng, 5, 8)
    index = DenseIndex.build(vecs, _ids(5), "m")
    assert len(index.search(vecs[0], 50)) == 5
    assert index.search(vecs[0], 0) == [] and index.search(vecs[0], -1) == []
    top = index.search(vecs[0], 1)[0]
    assert top.chunk_id == "c0000" and abs(top.score - 1.0) < TOL


def test_ties_break_by_chunk_id_even_at_the_kth_place() -> None:
    rng = np.random.default_rng(1)
    base = _unit(rng, 1, 16)[0]
    other = _unit(rng, 30, 16)
    other = other - np.outer(other @ base, base)  # orthogonal to base: score 0
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    vecs = np.vstack([np.tile(base, (40, 1)), other]).astype(np.float32)
    ids = [f"z{i:03d}" for i in range(70)]
    perm = rng.permutation(70)  # duplicates scattered through the rows
    index = DenseIndex.build(vecs[perm], [ids[i] for i in perm], "m")
    expected = sorted(ids[:40])
    for k in (1, 3, 7, 39, 40):
        hits = index.search(base, k)
        assert [h.chunk_id for h in hits] == expected[:k]
        assert len({h.score for h in hits}) == 1
    allowed = {"z039", "z005", "z020", "z050"}
    assert [h.chunk_id for h in index.search(base, 2, allowed=allowed)] == ["z005", "z020"]


def test_allowed_filter_edge_cases() -> None:
    rng = np.random.default_rng(2)
    vecs = _unit(rng, 10, 4)
    index = DenseIndex.build(vecs, _ids(10), "m")
    assert index.search(vecs[3], 5, allowed=set()) == []
    assert index.search(vecs[3], 5, allowed={"nope"}) == []
    assert [h.chunk_id for h in index.search(vecs[3], 5, allowed={"c0003"})] == ["c0003"]
    full = index.search(vecs[3], 10, allowed=set(_ids(10)))
    assert full == index.search(vecs[3], 10)


def test_build_normalises_and_validates() -> None:
    rng = np.random.default_rng(3)
    raw = rng.standard_normal((6, 5)).astype(np.float64) * 7
    index = DenseIndex.build(raw, _ids(6), "m")
    assert index.vectors.dtype == np.float32 and index.dim == 5 and len(index) == 6
    np.testing.assert_allclose(np.linalg.norm(index.vectors, axis=1), 1.0, atol=1e-6)
    q = raw[2] * 3  # an un-normalised query is normalised too
    assert abs(index.search(q, 1)[0].score - 1.0) < TOL
    with pytest.raises(ValueError):
        DenseIndex.build(raw, _ids(5), "m")
    with pytest.raises(ValueError):
        DenseIndex.build(raw, ["a"] * 6, "m")
    with pytest.raises(ValueError):
        DenseIndex.build(raw[0], ["a"], "m")
    with pytest.raises(ValueError):
        DenseIndex.build(np.zeros((2, 5)), ["a", "b"], "m")
    bad = raw.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError):
        DenseIndex.build(bad, _ids(6), "m")
    with pytest.raises(ValueError):
        index.search(np.ones(4, dtype=np.float32), 3)


def test_empty_index() -> None:
    index = DenseIndex.build(np.zeros((0, 8), dtype=np.float32), [], "m")
    assert len(index) == 0 and index.search(np.ones(8), 3) == []


def test_save_load_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    vecs = _unit(rng, 25, 12)
    index = DenseIndex.build(vecs, _ids(25), "sentence-transformers/all-MiniLM-L6-v2")
    index.save(tmp_path / "dense")
    assert sorted(p.name for p in (tmp_path / "dense").iterdir()) == [
        "dense_ids.json",
        "dense_meta.json",
        "vectors.npy",
    ]
    meta = json.loads((tmp_path / "dense" / "dense_meta.json").read_text())
    assert meta["model_id"] == index.model_id and meta["dim"] == 12 and meta["n"] == 25
    loaded = DenseIndex.load(tmp_path / "dense", expected_model_id=index.model_id)
    assert loaded.ids == index.ids and loaded.model_id == index.model_id
    np.testing.assert_array_equal(loaded.vectors, index.vectors)
    q = _unit(rng, 1, 12)[0]
    assert loaded.search(q, 7) == index.search(q, 7)
    with pytest.raises(StaleIndexError):
        DenseIndex.load(tmp_path / "dense", expected_model_id="hashing-v1-d12")


def _corrupt(folder: Path, how: str) -> str:
    """Damage one file; return the name the error must mention."""
    meta = json.loads((folder / "dense_meta.json").read_text())
    if how == "no_vectors":
        (folder / "vectors.npy").unlink()
        return "vectors.npy"
    if how == "no_ids":
        (folder / "dense_ids.json").unlink()
        return "dense_ids.json"
    if how == "no_meta":
        (folder / "dense_meta.json").unlink()
        return "dense_meta.json"
    if how == "truncated_vectors":
        data = (folder / "vectors.npy").read_bytes()
        (folder / "vectors.npy").write_bytes(data[: len(data) // 2])
        return "vectors.npy"
    if how == "garbage_vectors":
        (folder / "vectors.npy").write_bytes(b"not numpy at all")
        return "vectors.npy"
    if how == "pickled_vectors":
        np.save(folder / "vectors.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
        return "vectors.npy"
    if how == "float64_vectors":
        v = np.load(folder / "vectors.npy")
        np.save(folder / "vectors.npy", v.astype(np.float64))
        return "vectors.npy"
    if how == "not_unit_vectors":
        v = np.load(folder / "vectors.npy")
        np.save(folder / "vectors.npy", v * 2)
        return "vectors.npy"
    if how == "ids_count":
        ids = json.loads((folder / "dense_ids.json").read_text())
        (folder / "dense_ids.json").write_text(json.dumps(ids[:-1]))
        return "dense_ids.json"
    if how == "ids_not_json":
        (folder / "dense_ids.json").write_text("{oops")
        return "dense_ids.json"
    if how == "ids_repeated":
        ids = json.loads((folder / "dense_ids.json").read_text())
        (folder / "dense_ids.json").write_text(json.dumps([ids[0]] * len(ids)))
        return "dense_ids.json"
    if how == "meta_dim":
        meta["dim"] = meta["dim"] + 1
        (folder / "dense_meta.json").write_text(json.dumps(meta))
        return "vectors.npy"
    if how == "meta_n":
        meta["n"] = meta["n"] + 1
        (folder / "dense_meta.json").write_text(json.dumps(meta))
        return "dense_ids.json"
    if how == "meta_format":
        meta["format"] = "other"
        (folder / "dense_meta.json").write_text(json.dumps(meta))
        return "dense_meta.json"
    if how == "meta_not_json":
        (folder / "dense_meta.json").write_text("")
        return "dense_meta.json"
    raise AssertionError(how)


@pytest.mark.parametrize(
    "how",
    [
        "no_vectors",
        "no_ids",
        "no_meta",
        "truncated_vectors",
        "garbage_vectors",
        "pickled_vectors",
        "float64_vectors",
        "not_unit_vectors",
        "ids_count",
        "ids_not_json",
        "ids_repeated",
        "meta_dim",
        "meta_n",
        "meta_format",
        "meta_not_json",
    ],
)
def test_corrupt_or_missing_files_raise_naming_the_file(tmp_path: Path, how: str) -> None:
    rng = np.random.default_rng(5)
    DenseIndex.build(_unit(rng, 6, 4), _ids(6), "m").save(tmp_path)
    name = _corrupt(tmp_path, how)
    with pytest.raises(CorruptIndexError) as info:
        DenseIndex.load(tmp_path)
    assert isinstance(info.value, RagehrError)
    assert name in str(info.value)


def test_importing_dense_does_not_import_faiss() -> None:
    code = (
        "import sys, numpy as np\n"
        "from ragehr.retrieval.dense import DenseIndex\n"
        "i = DenseIndex.build(np.eye(2, dtype='float32'), ['a', 'b'], 'm')\n"
        "before = 'faiss' in sys.modules\n"
        "i.search(np.array([1, 0], dtype='float32'), 1)\n"
        "print(before, 'faiss' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout.split()
    assert out == ["False", "True"]


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 300), k=st.integers(1, 50), fraction=st.floats(0.0, 1.0))
def test_a_boolean_mask_gives_the_same_hits_as_the_ids(seed: int, n: int, k: int, fraction: float) -> None:
    """The mask path (FAISS bitmap selector) and the id path agree, and both match brute force;
    n up to 300 crosses byte boundaries of the packed bitmap at every offset."""
    rng = np.random.default_rng(seed)
    vecs = _unit(rng, n, 16)
    ids = _ids(n)
    index = DenseIndex.build(vecs, ids, "m")
    q = _unit(rng, 1, 16)[0]
    allowed = {c for c in ids if rng.random() < fraction}
    mask = index.mask(allowed | {"not-in-index"})
    assert mask.dtype == np.bool_ and int(mask.sum()) == len(allowed)
    assert index.search(q, k, allowed=mask) == index.search(q, k, allowed=allowed)
    _check_against_brute_force(index, vecs, ids, q, k, allowed)


def test_a_malformed_mask_is_refused() -> None:
    index = DenseIndex.build(_unit(np.random.default_rng(0), 5, 4), _ids(5), "m")
    q = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match="mask"):
        index.search(q, 3, allowed=np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match="mask"):
        index.search(q, 3, allowed=np.ones(5, dtype=np.int64))
    with pytest.raises(ValueError):
        index.mask("c0001")
