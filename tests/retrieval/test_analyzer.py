"""The clinical analyzer: codes, units and numbers survive; punctuation does not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ragehr.errors import ConfigError, RagehrError
from ragehr.retrieval.analyzer import Analyzer, AnalyzerConfig

KEPT_WHOLE = [
    ("8480-6", "8480-6"),
    ("I63.5", "i63.5"),
    ("163.5", "163.5"),
    ("mg/dL", "mg/dl"),
    ("mm[Hg]", "mm[hg]"),
    ("10*3/uL", "10*3/ul"),
    ("98.2", "98.2"),
    ("5mg", "5mg"),
    ("2018-10-08", "2018-10-08"),
    ("SpO2", "spo2"),
    ("HbA1c", "hba1c"),
]


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer()


@pytest.mark.parametrize(("raw", "term"), KEPT_WHOLE)
def test_codes_units_numbers_are_single_lowercase_terms(analyzer: Analyzer, raw: str, term: str) -> None:
    assert analyzer.tokenize(raw) == [term]


@pytest.mark.parametrize(("raw", "term"), KEPT_WHOLE)
@pytest.mark.parametrize("wrap", ["{}.", "({})", "{},", '"{}"', "{};", "{}:", "[{}]", "{}?!"])
def test_surrounding_punctuation_is_stripped(analyzer: Analyzer, raw: str, term: str, wrap: str) -> None:
    assert analyzer.tokenize(wrap.format(raw)) == [term]


def test_sentence_with_codes(analyzer: Analyzer) -> None:
    text = "Diagnosed with I63.5. Systolic BP (LOINC 8480-6) was 163.5 mm[Hg] on 2018-10-08."
    assert analyzer.tokenize(text) == [
        "diagnos",
        "i63.5",
        "systol",
        "bp",
        "loinc",
        "8480-6",
        "163.5",
        "mm[hg]",
        "2018-10-08",
    ]


def test_pure_punctuation_emits_nothing(analyzer: Analyzer) -> None:
    assert analyzer.tokenize("... -- !!! ( ) [ ] / * , ; : ' \" % +") == []
    assert analyzer.tokenize("") == []
    assert analyzer.tokenize("   \n\t ") == []


def test_stemming_alphabetic_only(analyzer: Analyzer) -> None:
    assert analyzer.tokenize("pressures") == ["pressur"]
    assert analyzer.tokenize("Pressures HbA1c SpO2 8480-6 mg/dL") == [
        "pressur",
        "hba1c",
        "spo2",
        "8480-6",
        "mg/dl",
    ]


def test_negation_kept_and_stopwords_dropped(analyzer: Analyzer) -> None:
    assert analyzer.tokenize("The patient denies pain and has no fever, not nauseous, without rash") == [
        "patient",
        "deni",
        "pain",
        "no",
        "fever",
        "not",
        "nauseous",
        "without",
        "rash",
    ]


def test_other_shapes(analyzer: Analyzer) -> None:
    assert analyzer.tokenize("follow-up") == ["follow", "up"]
    assert analyzer.tokenize("COVID-19") == ["covid-19", "covid"]
    assert analyzer.tokenize("SARS-CoV-2") == ["sars-cov-2", "sar", "cov"]  # parts are stemmed like words
    assert Analyzer(AnalyzerConfig(version=1)).tokenize("COVID-19") == ["covid-19"]
    assert analyzer.tokenize(".5 mg") == ["0.5", "mg"]
    assert analyzer.tokenize("1,000 at 10:30") == ["1,000", "10:30"]
    assert analyzer.tokenize("BP:120/80") == ["bp", "120/80"]
    assert analyzer.tokenize("SpO2 98%.") == ["spo2", "98%"]
    assert analyzer.tokenize("patient's") == ["patient"]
    assert analyzer.tokenize("2018\u201310\u201308") == ["2018-10-08"]  # en dashes


@pytest.mark.parametrize(
    ("raw", "terms"),
    [
        ("A1c/Hemoglobin.total", ["a1c/hemoglobin.total", "a1c", "hemoglobin", "total"]),
        ("Cholesterol.total", ["cholesterol.total", "cholesterol", "total"]),
        ("HDL/LDL", ["hdl/ldl", "hdl", "ldl"]),
        ("mL/min/1.73m2", ["ml/min/1.73m2"]),
        ("10*3/uL", ["10*3/ul"]),
        ("I63.5", ["i63.5"]),
        ("120/80", ["120/80"]),
        ("mg/dL", ["mg/dl"]),
        ("163.5", ["163.5"]),
    ],
)
def test_compound_names_also_give_their_parts(analyzer: Analyzer, raw: str, terms: list[str]) -> None:
    assert analyzer.tokenize(raw) == terms


def test_latest_a1c_matches_the_synthea_lab_name(analyzer: Analyzer) -> None:
    """The question's "A1c" is a term of the lab's name (it was not under version 1)."""
    name = analyzer.tokenize("Hemoglobin A1c/Hemoglobin.total in Blood")
    assert "a1c" in name and set(analyzer.tokenize("latest A1c?")) <= set(name) | {"latest"}
    v1 = Analyzer(AnalyzerConfig(version=1))
    assert "a1c" not in v1.tokenize("Hemoglobin A1c/Hemoglobin.total in Blood")
    assert Analyzer.from_json(v1.to_json()).tokenize("HDL/LDL") == ["hdl/ldl"]


def test_config_switches() -> None:
    raw = Analyzer(AnalyzerConfig(lowercase=False, stem=False, stopwords=()))
    assert raw.tokenize("The Pressures of I63.5.") == ["The", "Pressures", "of", "I63.5"]


def test_json_round_trip_and_hash(analyzer: Analyzer) -> None:
    back = Analyzer.from_json(analyzer.to_json())
    assert back == analyzer
    assert back.config_hash() == analyzer.config_hash()
    other = Analyzer(AnalyzerConfig(stem=False))
    assert other.config_hash() != analyzer.config_hash()
    assert len(analyzer.config_hash()) == 64


@pytest.mark.parametrize("bad", [{"version": 3}, {"unknown": 1}, {"stem": "maybe"}])
def test_from_json_rejects_bad_config(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Analyzer.from_json(bad)
    assert issubclass(ConfigError, RagehrError)


_TEXT = st.text(
    alphabet=st.sampled_from(list("abcXYZ019 .,;:-/*[]%()'\"\n\u2013é")) | st.characters(),
    max_size=200,
)
_CONFIGS = st.builds(
    AnalyzerConfig,
    lowercase=st.booleans(),
    stem=st.booleans(),
    stopwords=st.lists(st.sampled_from(["the", "a", "of", "and", "pain"]), max_size=3).map(tuple),
)


@settings(max_examples=200, deadline=None)
@given(config=_CONFIGS, text=_TEXT)
def test_round_trip_gives_identical_tokens(config: AnalyzerConfig, text: str) -> None:
    a = Analyzer(config)
    b = Analyzer.from_json(a.to_json())
    assert b.tokenize(text) == a.tokenize(text)


@settings(max_examples=200, deadline=None)
@given(text=_TEXT)
def test_deterministic_and_well_formed(text: str) -> None:
    first = Analyzer().tokenize(text)
    assert Analyzer().tokenize(text) == first
    assert Analyzer().tokenize(text) == first
    for term in first:
        assert term and not any(c.isspace() for c in term)
        assert any(c.isalnum() for c in term)
        assert term == term.lower()
