from __future__ import annotations

from datetime import UTC, date, datetime

from ragehr.pipeline.grounding import check_grounding, find_dates
from ragehr.types import EventKind, EvidenceItem


def item(marker: int, text: str) -> EvidenceItem:
    return EvidenceItem(
        marker=marker,
        chunk_id=f"c{marker}",
        kind=EventKind.VITAL,
        start=datetime(2018, 10, 8, 20, 5, tzinfo=UTC),
        end=None,
        text=text,
        source="f#/x",
        n_tokens=10,
    )


EVIDENCE = [
    item(1, "2018-10-08 20:05 | vital | Systolic blood pressure: 165 | LOINC 8480-6"),
    item(2, "2022-05-15 14:15 | note | Neurology\nMRI Brain 4/28/22: infarcts. Weight 1,250.50 g"),
]


def test_supported_numbers_and_dates_pass():
    g = check_grounding("Her systolic pressure was 165 on October 8, 2018 [1].", EVIDENCE)
    assert g.ok and g.cited == (1,) and g.checked == 2 and not g.uncited


def test_invented_number_is_flagged():
    g = check_grounding("Her systolic pressure was 172 on 2018-10-08 [1].", EVIDENCE)
    assert g.unsupported == ("172",) and not g.ok


def test_invented_date_is_flagged():
    g = check_grounding("SBP 165 was measured on 10/09/2018 [1].", EVIDENCE)
    assert g.unsupported == ("10/09/2018",)


def test_number_must_be_in_the_cited_item_not_any_item():
    # 165 is in [1], but the answer cites only [2]
    g = check_grounding("SBP 165 [2].", EVIDENCE)
    assert g.unsupported == ("165",)


def test_formats_normalise():
    g = check_grounding("MRI on April 28, 2022 showed infarcts; weight 1250.5 g [2].", EVIDENCE)
    assert g.ok, g


def test_unknown_citation_and_uncited():
    g = check_grounding("See [7].", EVIDENCE)
    assert g.unknown_citations == (7,) and not g.ok
    g = check_grounding("Systolic 165.", EVIDENCE)
    assert g.uncited and g.ok  # checked against all evidence, and says it cited nothing


def test_markers_are_not_numbers():
    g = check_grounding("Yes [1][2].", EVIDENCE)
    assert g.ok and g.checked == 0 and g.cited == (1, 2)


def test_find_dates():
    found = [d for d, _ in find_dates("on 2019-03-02, 3/4/2020, Jan 5 2021 and 7 February 2022; 4/28/22")]
    assert found == [date(2019, 3, 2), date(2020, 3, 4), date(2021, 1, 5), date(2022, 2, 7), date(2022, 4, 28)]


def test_bracketed_identifier_in_a_note_is_not_a_citation():
    """A note's ``MRN: [1234555]`` quoted by the answer is a number of the evidence, not a
    citation of piece 1234555 (which grounding used to flag as unknown)."""
    ev = [item(1, "2019-01-02 | note | Admission\nPatient MRN: [1234555]. Potassium 4.1")]
    g = check_grounding("The MRN is [1234555] [1].", ev)
    assert g.ok and g.unknown_citations == () and g.cited == (1,), g
    g = check_grounding("The MRN is [7654321] [1].", ev)
    assert g.unsupported == ("7654321",) and g.unknown_citations == ()


def test_citation_ranges_are_citations_not_numbers():
    g = check_grounding("Yes [1-2].", EVIDENCE)
    assert g.ok and g.cited == (1, 2) and g.checked == 0, g
