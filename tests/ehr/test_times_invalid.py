"""Invalid or out-of-range times are kept at the precision that is valid, with a warning that
``inspect`` shows, and never silently replaced by another field of the source (issue 15 (5))."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ragehr.cli import main as cli_main
from ragehr.ehr import load_record
from ragehr.ehr.times import collect_time_warnings, parse_hl7_ts, parse_iso, parse_medalign_time
from ragehr.types import EventKind, TimePrecision
from tests.conftest import FIXTURES
from tests.ehr.test_ccda import _doc

P = TimePrecision


@pytest.mark.parametrize(
    "value, expected, precision",
    [
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, tzinfo=UTC), P.MINUTE),  # a leap second
        ("2016-12-31T23:59:60+01:00", datetime(2016, 12, 31, 22, 59, tzinfo=UTC), P.MINUTE),
        ("2020-02-30", datetime(2020, 2, 1, tzinfo=UTC), P.MONTH),
        ("2020-02-30T10:00:00Z", datetime(2020, 2, 1, tzinfo=UTC), P.MONTH),
        ("2021-13-01", datetime(2021, 1, 1, tzinfo=UTC), P.YEAR),
        ("2019-05-05T25:00:00Z", datetime(2019, 5, 5, tzinfo=UTC), P.DAY),
        ("2019-05-05T10:00:00+25:00", datetime(2019, 5, 5, tzinfo=UTC), P.DAY),  # offset invalid: date kept
    ],
)
def test_iso_invalid_kept_at_valid_precision_with_a_warning(value, expected, precision):
    with collect_time_warnings() as warned:
        dt, prec = parse_iso(value)
    assert dt == expected and prec is precision
    assert len(warned) == 1 and value in warned[0] and precision.value in warned[0]


@pytest.mark.parametrize("value", ["2019-05-05T10:00:00Z", "2019-05", "2019", "2019-05-05T10:00:00.123456789+02:00"])
def test_valid_times_raise_no_warning(value):
    with collect_time_warnings() as warned:
        assert parse_iso(value) is not None
    assert warned == []


@pytest.mark.parametrize("value", ["yesterday", "0000-01-01", "05/05/2019"])
def test_no_valid_year_is_none_with_a_warning(value):
    with collect_time_warnings() as warned:
        assert parse_iso(value) is None
    assert len(warned) == 1 and "not a valid date" in warned[0]


def test_hl7_and_medalign_invalid_times():
    with collect_time_warnings() as warned:
        assert parse_hl7_ts("20200230") == (datetime(2020, 2, 1, tzinfo=UTC), P.MONTH)
        assert parse_hl7_ts("20161231235960") == (datetime(2016, 12, 31, 23, 59, tzinfo=UTC), P.MINUTE)
        assert parse_hl7_ts("200130311") is None  # not a TS at all: no part of it is trusted
        assert parse_medalign_time("02/30/2020 10:00") == (datetime(2020, 2, 1, tzinfo=UTC), P.MONTH)
        assert parse_medalign_time("02/28/2020 25:00") == (datetime(2020, 2, 28, tzinfo=UTC), P.DAY)
    assert len(warned) == 5


def test_warnings_are_capped():
    with collect_time_warnings() as warned:
        for _ in range(250):
            parse_iso("2020-02-30")
    assert len(warned.summary()) == 201 and warned.summary()[-1] == "... and 50 more invalid time(s)"


_BUNDLE = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1"}},
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o1",
                "status": "final",
                "code": {"text": "Potassium"},
                "effectiveDateTime": "2016-12-31T23:59:60Z",
                "issued": "2024-06-01T10:00:00Z",
                "valueQuantity": {"value": 4.1, "unit": "mmol/L"},
            }
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o2",
                "status": "final",
                "code": {"text": "Sodium"},
                "effectiveDateTime": "2020-02-30",
                "issued": "2024-06-01T10:00:00Z",
                "valueQuantity": {"value": 140, "unit": "mmol/L"},
            }
        },
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o3",
                "status": "final",
                "code": {"text": "Chloride"},
                "effectiveDateTime": "not a date",
                "issued": "2024-06-01T10:00:00Z",
                "valueQuantity": {"value": 100, "unit": "mmol/L"},
            }
        },
    ],
}


def test_fhir_never_falls_back_to_issued(tmp_path):
    """Issue 15 (5): both times used to become `issued`, eight years away, without a word."""
    p = tmp_path / "leap.json"
    p.write_text(json.dumps(_BUNDLE))
    rec = load_record(p)
    by_text = {e.text: e for e in rec.events}
    k, na, cl = by_text["Potassium"], by_text["Sodium"], by_text["Chloride"]
    assert (k.start, k.precision) == (datetime(2016, 12, 31, 23, 59, tzinfo=UTC), P.MINUTE)
    assert (na.start, na.precision) == (datetime(2020, 2, 1, tzinfo=UTC), P.MONTH)
    assert cl.start is None  # undated rather than dated by another field
    assert all(e.start is None or e.start.year < 2024 for e in rec.events)
    assert len(rec.warnings) == 3 and any("2016-12-31T23:59:60Z" in w for w in rec.warnings)


def test_ccda_invalid_value_is_not_replaced_by_low():
    from lxml import etree

    from ragehr.ehr.ccda import parse_ccda

    results = """<section><code code="30954-2" codeSystem="2.16.840.1.113883.6.1"/><title>Results</title><text>x</text>
      <entry><observation classCode="OBS" moodCode="EVN"><code code="2823-3" codeSystem="2.16.840.1.113883.6.1" displayName="Potassium"/>
        <effectiveTime value="20200230"><low value="20110101"/></effectiveTime>
        <value xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:type="PQ" value="4.1" unit="mmol/L"/>
      </observation></entry></section>"""
    with collect_time_warnings() as warned:
        rec = parse_ccda(etree.fromstring(_doc(results).encode()), path=Path("x.xml"))
    k = next(e for e in rec.events if e.code == "2823-3")
    assert (k.start, k.precision) == (datetime(2020, 2, 1, tzinfo=UTC), P.MONTH)
    assert any("20200230" in w for w in warned)


def test_medalign_invalid_time_keeps_its_month(tmp_path):
    src = (FIXTURES / "medalign" / "EHR_sample.xml").read_text()
    p = tmp_path / "EHR_bad.xml"
    p.write_text(
        src.replace('<measurement start="10/08/2018 08:05 PM">', '<measurement start="02/30/2018 08:05 PM">', 1)
    )
    rec = load_record(p)
    assert any("02/30/2018 08:05 PM" in w for w in rec.warnings)
    assert any(
        e.kind is not EventKind.ENCOUNTER and e.precision is P.MONTH and e.start == datetime(2018, 2, 1, tzinfo=UTC)
        for e in rec.events
    )


def test_inspect_shows_the_warnings(tmp_path, capsys):
    p = tmp_path / "leap.json"
    p.write_text(json.dumps(_BUNDLE))
    with pytest.raises(SystemExit) as info:
        cli_main(["inspect", str(p)])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "warning     time '2016-12-31T23:59:60Z' is not valid; kept as 2016-12-31 23:59 (minute precision)" in out
    assert "2024" not in out
    with pytest.raises(SystemExit):
        cli_main(["inspect", "--json", str(p)])
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["warnings"]) == 3


def test_warnings_survive_merge_and_index(tmp_path):
    from ragehr.config import IndexConfig
    from ragehr.index.build import build_indexes
    from ragehr.index.store import open_index

    p = tmp_path / "leap.json"
    p.write_text(json.dumps(_BUNDLE))
    [s] = build_indexes([p], tmp_path / "idx", IndexConfig(embedder="hashing"))
    assert s.status == "built"
    assert len(open_index(tmp_path / "idx", "p1").record.warnings) == 3
