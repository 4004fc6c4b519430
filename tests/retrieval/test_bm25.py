"""BM25Index: exact search, filters, ties, files; scores cross-checked against rank_bm25."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rank_bm25 import BM25Okapi

from ragehr.errors import CorruptIndexError, RagehrError
from ragehr.retrieval.analyzer import Analyzer
from ragehr.retrieval.bm25 import BM25Index

CORPUS = [
    "Patient reports chest pain radiating to the left arm since this morning.",
    "Denies chest pain. No shortness of breath. No fever.",
    "Systolic blood pressure 163.5 mm[Hg] (LOINC 8480-6) on 2018-10-08.",
    "Diastolic blood pressure 92 mm[Hg], LOINC 8462-4.",
    "Diagnosis: cerebral infarction due to thrombosis, ICD-10 I63.5.",
    "Metformin 500mg by mouth twice daily for type 2 diabetes mellitus.",
    "HbA1c 8.1% on 2019-02-11, up from 7.2% last year.",
    "SpO2 94% on room air; oxygen saturation improved to 98% on 2L nasal cannula.",
    "Glucose 182 mg/dL fasting; repeat glucose 140 mg/dL.",
    "Lisinopril 10mg daily for hypertension; blood pressures remain elevated.",
    "Chest x-ray shows no acute cardiopulmonary process.",
    "Head CT negative for hemorrhage; MRI confirms acute ischemic stroke.",
    "WBC 12.4 10*3/uL, mildly elevated; no signs of infection otherwise.",
    "Follow-up in cardiology clinic in two weeks for stress test.",
    "Patient is a former smoker, quit in 2010; drinks alcohol socially.",
    "Allergic to penicillin: rash and hives.",
    "Aspirin 81mg daily started after the stroke for secondary prevention.",
    "Atorvastatin 40mg nightly; LDL 142 mg/dL on last lipid panel.",
    "Creatinine 1.4 mg/dL, eGFR 52, stable chronic kidney disease stage 3.",
    "Discharged home in stable condition with home health nursing.",
]
IDS = [f"c{i:02d}" for i in range(len(CORPUS))]
QUERIES = [
    "chest pain",
    "blood pressure hypertension",
    "stroke aspirin",
    "glucose mg/dL",
    "8480-6",
    "I63.5",
    "HbA1c diabetes metformin",
    "oxygen saturation SpO2",
    "kidney creatinine eGFR",
    "penicillin allergy rash",
]


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer()


@pytest.fixture(scope="module")
def index(analyzer: Analyzer) -> BM25Index:
    return BM25Index.build(CORPUS, IDS, analyzer)


def _ids(hits: list) -> list[str]:
    return [h.chunk_id for h in hits]


# ---------------------------------------------------------------- cross-check with rank_bm25


def test_query_terms_have_positive_okapi_idf(analyzer: Analyzer) -> None:
    """Precondition of the exact cross-check: every query term occurs in fewer than half
    the documents, so rank_bm25's epsilon floor for negative idf never applies."""
    docs = [set(analyzer.tokenize(t)) for t in CORPUS]
    for q in QUERIES:
        for term in analyzer.tokenize(q):
            df = sum(term in d for d in docs)
            assert df < len(CORPUS) / 2, (q, term, df)


@pytest.mark.parametrize("query", QUERIES)
def test_scores_equal_rank_bm25_okapi(analyzer: Analyzer, query: str) -> None:
    """BM25Okapi = ATIRE's tf part (tf*(k1+1)/(tf+k1*(1-b+b*dl/avgdl))) times Robertson's
    idf (log((N-n+0.5)/(n+0.5))); in bm25s that is method="atire", idf_method="robertson"."""
    okapi = BM25Okapi([analyzer.tokenize(t) for t in CORPUS], k1=1.5, b=0.75)
    ours = BM25Index.build(CORPUS, IDS, analyzer, k1=1.5, b=0.75, method="atire", idf_method="robertson")
    expected = okapi.get_scores(analyzer.tokenize(query))
    np.testing.assert_allclose(ours.score_all(query), expected, rtol=0, atol=1e-5)
    assert expected.max() > 0


@pytest.mark.parametrize("query", QUERIES)
def test_robertson_is_okapi_over_k1_plus_1(analyzer: Analyzer, query: str) -> None:
    """bm25s's "robertson" tf part omits the (k1 + 1) factor; otherwise it is BM25Okapi."""
    okapi = BM25Okapi([analyzer.tokenize(t) for t in CORPUS], k1=1.2, b=0.75)
    ours = BM25Index.build(CORPUS, IDS, analyzer, k1=1.2, b=0.75, method="robertson")
    expected = okapi.get_scores(analyzer.tokenize(query)) / (1.2 + 1)
    np.testing.assert_allclose(ours.score_all(query), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("query", QUERIES)
def test_lucene_ranks_same_top_docs_as_okapi(analyzer: Analyzer, index: BM25Index, query: str) -> None:
    okapi = BM25Okapi([analyzer.tokenize(t) for t in CORPUS], k1=1.5, b=0.75)
    expected = okapi.get_scores(analyzer.tokenize(query))
    best = sorted(range(len(IDS)), key=lambda i: (-expected[i], IDS[i]))
    hits = index.search(query, 3)
    assert hits[0].chunk_id == IDS[best[0]]
    n_matching = int((expected > 0).sum())
    assert {h.chunk_id for h in index.search(query, 100)} == {IDS[i] for i in best[:n_matching]}


# ---------------------------------------------------------------- search


def test_codes_are_searchable(index: BM25Index) -> None:
    assert _ids(index.search("8480-6", 5)) == ["c02"]
    assert _ids(index.search("I63.5", 5)) == ["c04"]
    assert _ids(index.search("what does I63.5. mean?", 5)) == ["c04"]
    assert _ids(index.search("mm[Hg]", 5)) == ["c03", "c02"]  # c03 is the shorter doc
    assert index.search("8480", 5) == []


def test_results_sorted_positive_and_consistent_with_score_all(index: BM25Index) -> None:
    for q in QUERIES:
        hits = index.search(q, 5)
        scores = index.score_all(q)
        assert hits and all(h.score > 0 for h in hits)
        assert [(-h.score, h.chunk_id) for h in hits] == sorted((-h.score, h.chunk_id) for h in hits)
        for h in hits:
            assert h.score == pytest.approx(scores[IDS.index(h.chunk_id)], abs=0)
        assert hits[0].score == scores.max()


def test_k_larger_than_corpus_returns_all_matches(index: BM25Index) -> None:
    hits = index.search("chest pain", 1000)
    n_matching = int((index.score_all("chest pain") > 0).sum())
    assert len(hits) == n_matching >= 3
    assert index.search("chest pain", 0) == []
    with pytest.raises(ValueError):
        index.search("chest pain", -1)


@pytest.mark.parametrize("query", ["", "   ", "...", "the of and", "zzzzqqq unknownword"])
def test_empty_or_unmatched_query(index: BM25Index, query: str) -> None:
    assert index.search(query, 10) == []
    assert not index.score_all(query).any()
    assert index.score_all(query).shape == (len(IDS),)


def test_ties_broken_by_chunk_id(analyzer: Analyzer) -> None:
    idx = BM25Index.build(["aspirin given", "aspirin given", "nothing here"], ["b", "a", "c"], analyzer)
    hits = idx.search("aspirin", 10)
    assert _ids(hits) == ["a", "b"]
    assert hits[0].score == hits[1].score
    assert _ids(idx.search("aspirin", 1)) == ["a"]


def test_ties_at_the_cut_use_chunk_id() -> None:
    ids = [f"d{i:03d}" for i in range(200)][::-1]
    idx = BM25Index.build(["same words here"] * 200, ids, Analyzer())
    assert _ids(idx.search("words", 5)) == ["d000", "d001", "d002", "d003", "d004"]


@settings(max_examples=60, deadline=None)
@given(
    allowed=st.sets(st.sampled_from(IDS + ["not-an-id"])),
    k=st.integers(min_value=1, max_value=25),
    query=st.sampled_from(QUERIES + ["pressure", "daily", "mg/dL stable"]),
)
def test_allowed_filter_matches_brute_force(allowed: set[str], k: int, query: str) -> None:
    idx = BM25Index.build(CORPUS, IDS, Analyzer())
    scores = idx.score_all(query)
    brute = sorted(((-float(scores[i]), cid) for i, cid in enumerate(IDS) if cid in allowed and scores[i] > 0))[:k]
    hits = idx.search(query, k, allowed=allowed)
    assert [(-h.score, h.chunk_id) for h in hits] == brute
    assert idx.search(query, k, allowed=idx.mask(allowed)) == hits


def test_allowed_is_top_k_among_allowed_not_filtered_top_k(index: BM25Index) -> None:
    full = index.search("blood pressure", 100)
    assert len(full) >= 3
    allowed = {full[-1].chunk_id}
    assert _ids(index.search("blood pressure", 1, allowed=allowed)) == [full[-1].chunk_id]
    assert index.search("blood pressure", 5, allowed=set()) == []
    with pytest.raises(ValueError):
        index.search("blood pressure", 5, allowed=np.ones(3, dtype=bool))


def test_build_rejects_bad_input(analyzer: Analyzer) -> None:
    with pytest.raises(ValueError):
        BM25Index.build(["a", "b"], ["x"], analyzer)
    with pytest.raises(ValueError):
        BM25Index.build(["a", "b"], ["x", "x"], analyzer)
    with pytest.raises(ValueError):
        BM25Index.build(["a"], ["x"], analyzer, method="bm25+")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BM25Index.build(["a"], ["x"], analyzer, b=2.0)


def test_empty_corpora(analyzer: Analyzer, tmp_path: Path) -> None:
    for texts, ids in [([], []), (["...", ""], ["x", "y"])]:
        idx = BM25Index.build(texts, ids, analyzer)
        assert idx.search("pain", 10) == []
        assert idx.score_all("pain").shape == (len(ids),)
        d = tmp_path / f"empty{len(ids)}"
        idx.save(d)
        back = BM25Index.load(d)
        assert back.ids == tuple(ids) and back.search("pain", 10) == []


def test_documents_analyzed_once_with_our_analyzer() -> None:
    """A query is tokenized by the index's analyzer: with stemming, "pressures" finds
    "pressure"; without, it does not."""
    docs, ids = ["blood pressure high", "nothing"], ["p", "q"]
    assert _ids(BM25Index.build(docs, ids, Analyzer()).search("pressures", 5)) == ["p"]
    from ragehr.retrieval.analyzer import AnalyzerConfig

    plain = Analyzer(AnalyzerConfig(stem=False))
    assert BM25Index.build(docs, ids, plain).search("pressures", 5) == []


# ---------------------------------------------------------------- files


def test_save_load_round_trip(index: BM25Index, tmp_path: Path) -> None:
    index.save(tmp_path / "bm25")
    back = BM25Index.load(tmp_path / "bm25")
    assert back.ids == index.ids
    assert back.analyzer == index.analyzer
    assert back.params == index.params
    for q in QUERIES + ["", "unknownword"]:
        assert back.search(q, 7) == index.search(q, 7)
        np.testing.assert_array_equal(back.score_all(q), index.score_all(q))
    files = sorted(p.name for p in (tmp_path / "bm25").iterdir())
    assert "bm25.json" in files and "ids.json" in files
    assert not [f for f in files if f.endswith((".pkl", ".pickle"))]
    for f in files:
        if f.endswith(".npy"):
            np.load(tmp_path / "bm25" / f, allow_pickle=False)
    manifest = json.loads((tmp_path / "bm25" / "bm25.json").read_text())
    assert manifest["analyzer_hash"] == index.analyzer.config_hash()
    assert manifest["n_docs"] == len(IDS)


def test_save_is_deterministic(analyzer: Analyzer, tmp_path: Path) -> None:
    BM25Index.build(CORPUS, IDS, analyzer).save(tmp_path / "a")
    BM25Index.build(CORPUS, IDS, analyzer).save(tmp_path / "b")
    for p in sorted((tmp_path / "a").iterdir()):
        assert p.read_bytes() == (tmp_path / "b" / p.name).read_bytes(), p.name


@pytest.mark.parametrize(
    "name",
    [
        "bm25.json",
        "ids.json",
        "data.csc.index.npy",
        "indices.csc.index.npy",
        "indptr.csc.index.npy",
        "vocab.index.json",
        "params.index.json",
    ],
)
def test_missing_file_names_the_file(index: BM25Index, tmp_path: Path, name: str) -> None:
    index.save(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(CorruptIndexError, match=name.replace(".", r"\.")):
        BM25Index.load(tmp_path)


@pytest.mark.parametrize(
    "name",
    [
        "bm25.json",
        "ids.json",
        "data.csc.index.npy",
        "indices.csc.index.npy",
        "indptr.csc.index.npy",
        "vocab.index.json",
        "params.index.json",
    ],
)
@pytest.mark.parametrize("how", ["truncate", "garbage", "flip"])
def test_corrupt_file_names_the_file(index: BM25Index, tmp_path: Path, name: str, how: str) -> None:
    index.save(tmp_path)
    path = tmp_path / name
    raw = path.read_bytes()
    if how == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00\xffnot what you expected")
    else:
        path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0x01]))
    with pytest.raises(CorruptIndexError, match=name.replace(".", r"\.")):
        BM25Index.load(tmp_path)


def test_load_of_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CorruptIndexError, match="bm25.json"):
        BM25Index.load(tmp_path / "nowhere")
    assert issubclass(CorruptIndexError, RagehrError)


def test_bm25s_and_stemmer_are_imported_lazily() -> None:
    code = (
        "import sys, ragehr.retrieval, ragehr.retrieval.analyzer, ragehr.retrieval.bm25, "
        "ragehr.retrieval.fusion; "
        "print(sorted(m for m in ('bm25s', 'Stemmer', 'scipy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _rehash(directory: Path, name: str) -> None:
    """Update the manifest's sha256 for ``name``, as a forger (or a buggy writer) would."""
    import hashlib

    mpath = directory / "bm25.json"
    manifest = json.loads(mpath.read_text())
    manifest["files"][name] = hashlib.sha256((directory / name).read_bytes()).hexdigest()
    mpath.write_text(json.dumps(manifest))


@pytest.mark.parametrize(
    ("name", "edit"),
    [
        ("vocab.index.json", lambda v: json.dumps({k: i + 1 for i, k in enumerate(json.loads(v))})),
        ("vocab.index.json", lambda v: json.dumps(dict.fromkeys(json.loads(v), "x"))),
        ("params.index.json", lambda v: v.replace('"k1": 1.5', '"k1": 0.9')),
        ("ids.json", lambda v: json.dumps(json.loads(v)[:-1])),
        ("ids.json", lambda v: json.dumps(["same"] * len(json.loads(v)))),
    ],
)
def test_consistent_hash_but_inconsistent_content(index: BM25Index, tmp_path: Path, name, edit) -> None:  # type: ignore[no-untyped-def]
    index.save(tmp_path)
    path = tmp_path / name
    path.write_text(edit(path.read_text()))
    _rehash(tmp_path, name)
    with pytest.raises(CorruptIndexError, match=name.replace(".", r"\.")):
        BM25Index.load(tmp_path)


def test_manifest_listing_other_files_is_rejected(index: BM25Index, tmp_path: Path) -> None:
    index.save(tmp_path)
    mpath = tmp_path / "bm25.json"
    manifest = json.loads(mpath.read_text())
    manifest["files"]["../elsewhere.json"] = "0" * 64
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(CorruptIndexError, match=r"bm25\.json"):
        BM25Index.load(tmp_path)
