"""The same records give the same ids wherever they are stored: event ids hash the source
file's name and the position inside it, not its folder, so chunk ids, every tie-break and
every figure built on them are the same from any checkout (a smoke evaluation's accuracy
once changed with the folder the shared data sat in)."""

from __future__ import annotations

import shutil
from pathlib import Path

from ragehr.config import IndexConfig
from ragehr.ehr import load_record
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index, search

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "medalign" / "EHR_sample.xml"


def _copy(where: Path) -> Path:
    where.mkdir(parents=True)
    return Path(shutil.copy(SAMPLE, where / SAMPLE.name))


def test_event_ids_do_not_depend_on_the_folder(tmp_path: Path) -> None:
    a = load_record(_copy(tmp_path / "one"))
    b = load_record(_copy(tmp_path / "two" / "deeper"))
    assert [str(e.source) for e in a.events] != [str(e.source) for e in b.events]  # the locators say where
    assert [e.event_id for e in a.events] == [e.event_id for e in b.events]
    assert len({e.event_id for e in a.events}) == len(a.events)


def test_another_file_name_or_position_is_another_id(tmp_path: Path) -> None:
    e = load_record(SAMPLE).events[0]
    renamed = e.model_copy(update={"source": e.source.model_copy(update={"file": "/x/other.xml"})})
    moved = e.model_copy(update={"source": e.source.model_copy(update={"path": e.source.path + "[2]"})})
    windows = e.model_copy(update={"source": e.source.model_copy(update={"file": "C:\\data\\" + SAMPLE.name})})
    assert len({e.event_id, renamed.event_id, moved.event_id}) == 3
    assert windows.event_id == e.event_id


def test_indexes_of_the_same_file_in_two_folders_rank_alike(tmp_path: Path) -> None:
    results = []
    for name in ("a", "b/c"):
        idx_dir = tmp_path / f"idx-{name.replace('/', '-')}"
        [s] = build_indexes([_copy(tmp_path / name)], idx_dir, IndexConfig(embedder="hashing"))
        assert s.status == "built"
        idx = load_patient_index(idx_dir, s.patient_id)
        chunk_ids = [c.chunk_id for c in idx.stored.chunks]
        hits = [[h.hit for h in search(idx, q, k=10)[0]] for q in ("blood pressure", "latest creatinine", "MRI")]
        results.append((chunk_ids, hits))
    assert results[0] == results[1]
