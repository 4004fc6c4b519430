"""Ray for cohorts gives the results of the single-process run: the same indexes, the same
batch answers, the same eval predictions; a failing patient or task is reported, never fatal.
One small local Ray (2 CPUs, no dashboard) serves the whole module."""

from __future__ import annotations

import json
import shutil

import pytest

ray = pytest.importorskip("ray")

from ragehr.config import IndexConfig, LLMConfig  # noqa: E402
from ragehr.distributed import RayCluster, build_indexes_ray, ray_map  # noqa: E402
from ragehr.eval.experiment import ExperimentConfig  # noqa: E402
from ragehr.eval.runner import run_experiment  # noqa: E402
from ragehr.index import store  # noqa: E402
from ragehr.index.build import build_indexes  # noqa: E402
from ragehr.pipeline.batch import BackendRecipe, run_batch  # noqa: E402
from ragehr.pipeline.spec import ContextSpec  # noqa: E402
from tests.conftest import FIXTURES  # noqa: E402

HASHING = IndexConfig(embedder="hashing")
SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"


@pytest.fixture(scope="module")
def cluster():
    with RayCluster("local", num_cpus=2) as c:
        yield c


@pytest.fixture(scope="module")
def records(tmp_path_factory, shared_data):
    d = tmp_path_factory.mktemp("records")
    shutil.copy(SAMPLE, d / "sample.xml")
    for name in (
        "exafluence_CA_936988e9-d587-ef42-ebdf-541238540ff3.xml",
        "exafluence_CA_4bbb9f69-eb0b-871f-4306-66931556e2c2.xml",
    ):
        shutil.copy(shared_data / "synthea" / "ccda" / name, d / name)
    (d / "broken.xml").write_text("<record><visit>")  # a bad file: reported, the rest indexed
    return d


def _index_view(index_dir):
    out = {}
    for m in store.list_manifests(index_dir):
        out[m.patient_id] = (m.files, m.counts, m.config_hash, [s.path for s in m.sources])
    return out


def _summaries(ss):
    return sorted(
        (s.patient_id, s.status, s.n_events, s.n_chunks, s.n_embedded, s.message.split(":")[0] if s.message else "")
        for s in ss
    )


def test_index_over_ray_is_the_single_process_index(cluster, records, tmp_path):
    single = build_indexes([records, tmp_path / "missing"], tmp_path / "one", HASHING)
    spread = build_indexes_ray([records, tmp_path / "missing"], tmp_path / "ray", HASHING)
    assert _summaries(spread) == _summaries(single)
    assert [s.status for s in spread].count("failed") == 2  # broken.xml and the missing path
    assert sum(s.status == "built" for s in spread) == 3
    one, two = _index_view(tmp_path / "one"), _index_view(tmp_path / "ray")
    assert one == two and len(one) == 3  # byte-identical files (sha256 in the manifests)
    # a second run finds everything unchanged, without parsing
    again = build_indexes_ray([records], tmp_path / "ray", HASHING)
    assert sorted(s.status for s in again) == ["failed", "unchanged", "unchanged", "unchanged"]


def test_batch_over_ray_gives_the_single_process_answers(cluster, records, tmp_path):
    idx = tmp_path / "idx"
    built = [s.patient_id for s in build_indexes([records], idx, HASHING) if s.status == "built"]
    qs = []
    for pid in built:
        for j, (q, extra) in enumerate(
            [
                ("most recent potassium", {}),
                ("medications", {"strategy": "recent", "budget": 1024}),
                ("blood pressure", {"retriever": "bm25"}),
            ]
        ):
            qs.append({"id": f"{pid}-{j}", "patient_id": pid, "question": q, **extra})
    qs.append({"id": "ghost", "patient_id": "nobody", "question": "anything"})
    qfile = tmp_path / "q.jsonl"
    qfile.write_text("".join(json.dumps(q) + "\n" for q in qs))
    recipe = BackendRecipe(LLMConfig(backend="extractive"))  # no generation cache: both really answer
    a = run_batch(qfile, tmp_path / "a.jsonl", index_dir=idx, base_spec=ContextSpec(), recipe=recipe)
    b = run_batch(qfile, tmp_path / "b.jsonl", index_dir=idx, base_spec=ContextSpec(), recipe=recipe, mapper=ray_map)

    def rows(p):
        out = {}
        for line in p.read_text().splitlines():
            r = json.loads(line)
            r.pop("timings", None)
            out[r["id"]] = r
        return out

    ra, rb = rows(tmp_path / "a.jsonl"), rows(tmp_path / "b.jsonl")
    assert ra == rb and len(ra) == len(qs)
    assert (a.answered, b.answered) == (len(qs) - 1, len(qs) - 1)
    assert [f.id for f in b.failures] == ["ghost"] and b.failures[0].exit_code == 3


def test_a_failing_task_is_reported_and_the_others_finish(cluster):
    got = dict(ray_map(int, ["1", "two", "3"]))
    assert got[0] == 1 and got[2] == 3
    assert isinstance(got[1], ValueError)


def test_eval_over_ray_gives_the_single_process_predictions(cluster, shared_data, tmp_path):
    base = {
        "name": "tiny",
        "data_root": str(shared_data),
        "index_dir": str(tmp_path / "idx"),
        "index": {"embedder": "hashing"},
        "datasets": [
            {
                "name": "ma",
                "type": "medalign",
                "instructions": "medalign/instructions-sample.csv",
                "pair_with": "medalign/sample-ehr-clean.xml",
                "limit": 4,
            },
            {
                "name": "gen",
                "type": "generated",
                "per_type": 1,
                "records": ["synthea/fhir/smart_Judi_Schamberger_3228ed47-7683-4cf1-8104-59f6bdd49f49.json"],
            },
        ],
        "strategies": ["rag", "recent"],
        "budgets": [2048],
        "retrievers": ["hybrid", "bm25"],
        "backends": ["extractive", {"name": "fake", "settings": {"context_window": 8192}}],
        "max_new_tokens": 64,
        "bootstrap_resamples": 100,
    }
    one = ExperimentConfig.model_validate({**base, "results_dir": str(tmp_path / "one")})
    two = ExperimentConfig.model_validate(
        {**base, "results_dir": str(tmp_path / "two"), "index_dir": str(tmp_path / "idx2")}
    )
    m1 = run_experiment(one, tmp_path / "one" / "tiny")
    m2 = run_experiment(two, tmp_path / "two" / "tiny", mapper=ray_map)

    def preds(p):
        rows = []
        for line in (p / "predictions.jsonl").read_text().splitlines():
            r = json.loads(line)
            for k in ("latency_s", "generate_s", "cached"):
                r.pop(k, None)
            rows.append(r)
        return sorted(rows, key=lambda r: (r["item_id"], r["condition"]))

    p1, p2 = preds(tmp_path / "one" / "tiny"), preds(tmp_path / "two" / "tiny")
    assert len(p1) > 20 and p1 == p2
    strip = lambda m: [(s["condition"], s.get("n"), s.get("accuracy"), s.get("evidence_recall")) for s in m["summary"]]
    assert strip(m1) == strip(m2)
    assert not [p for p in m2["problems"] if "failed in a worker" in p]


def test_a_bulk_export_over_ray_is_the_single_process_index(cluster, shared_data, tmp_path):
    """A FHIR Bulk export folder (a cohort: many patients per file) is scanned once and its
    patients built as tasks; ``patients`` selects some of them, an unknown id is reported."""
    from ragehr.ehr.cohort import split_cohorts

    bulk = shared_data / "fhir-bulk" / "10-patients"
    [cohort], _ = split_cohorts([bulk])
    some = [sl.patient_id for sl in cohort.scan().slices[:3]]
    wanted = [*some, "nobody"]
    single = build_indexes([bulk], tmp_path / "one", HASHING, patients=wanted)
    spread = build_indexes_ray([bulk], tmp_path / "ray", HASHING, patients=wanted)
    assert _summaries(spread) == _summaries(single)
    assert sum(s.status == "built" for s in spread) == 3
    assert [s.message for s in spread if s.status == "failed"] == ["patient 'nobody': not found in the given sources"]
    assert _index_view(tmp_path / "one") == _index_view(tmp_path / "ray")
