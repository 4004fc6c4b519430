"""``ragehr index --workers N``: a bad file parsed in a worker process is reported and the
others are indexed (its error crosses the process boundary intact)."""

from __future__ import annotations

import pickle
import shutil

from ragehr.config import IndexConfig
from ragehr.errors import InputError, UnsupportedFormatError
from ragehr.index.build import build_indexes
from tests.conftest import FIXTURES


def test_input_errors_survive_pickling():
    for cls in (InputError, UnsupportedFormatError):
        e = pickle.loads(pickle.dumps(cls("/data/x.xml", "malformed XML")))
        assert type(e) is cls and str(e) == "/data/x.xml: malformed XML" and e.problem == "malformed XML"


def test_a_bad_file_in_a_worker_is_reported_and_the_rest_indexed(tmp_path):
    d = tmp_path / "records"
    d.mkdir()
    shutil.copy(FIXTURES / "medalign" / "EHR_sample.xml", d / "sample.xml")
    (d / "broken.xml").write_text("<record><visit>")
    summaries = build_indexes([d], tmp_path / "idx", IndexConfig(embedder="hashing"), workers=2)
    by_status = {s.status: s for s in summaries}
    assert set(by_status) == {"built", "failed"}
    assert "broken.xml: malformed XML" in by_status["failed"].message
