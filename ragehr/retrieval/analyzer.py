"""The clinical text analyzer: one function from text to index terms.

What it does: normalises Unicode (NFKC, dashes to ``-``), splits text into terms, keeps
numbers, decimals, units and codes whole (``8480-6``, ``I63.5``, ``mg/dL``, ``mm[Hg]``,
``10*3/uL``, ``2018-10-08``, ``SpO2``, ``HbA1c``), strips the punctuation around a term (a
sentence's closing period never sticks to a code), optionally lowercases, drops a short list of
English function words, and optionally stems purely alphabetic terms with the Snowball English
stemmer (PyStemmer). Negation words ("no", "not", "denies", "without", ...) are never dropped.

What it does not do: it knows nothing of BM25, vocabularies or indexes; it does not expand
abbreviations, map synonyms or parse dates. The same :class:`Analyzer` must tokenize both the
documents and the queries of an index, so its config is saved with the index
(:meth:`Analyzer.to_json`) and stamped into manifests (:meth:`Analyzer.config_hash`).

Splitting rules, in order (see :func:`_split`):

1. Whitespace and any character other than a word character or one of ``. - / * [ ] ^ % + # ' , :``
   separates terms; ``,`` and ``:`` separate too unless they sit between two digits
   (``1,000``, ``10:30``); runs of two or more ``.`` or ``-`` separate.
2. Leading non-alphanumerics are stripped (a leading ``.5`` becomes ``0.5``); trailing ones
   are stripped except a ``%`` and a ``]`` that closes a ``[`` in the term; a possessive
   ``'s`` is dropped.
3. A term whose ``-``-separated parts are all alphabetic is split there (``follow-up`` ->
   ``follow``, ``up``); codes and dates with digits stay whole.
4. Terms with no letter or digit are dropped.
5. (version 2) A name compounded with ``/`` or ``.`` from alphanumeric parts of three or more
   characters, at least one of them a word, is kept whole AND followed by its parts:
   ``A1c/Hemoglobin.total`` -> ``a1c/hemoglobin.total``, ``a1c``, ``hemoglobin``, ``total``, so
   a question's "A1c" matches a lab named ``Hemoglobin A1c/Hemoglobin.total in Blood``; a
   hyphenated name with digits also gives its words of three letters or more (``COVID-19`` ->
   ``covid-19``, ``covid``), so "COVID" finds the vaccine. Units
   and codes keep their single term (``mg/dL``, ``I63.5``, ``10*3/uL``, ``mL/min/1.73m2``: a
   part is short or not alphanumeric). Version 1 (indexes built before) does not do this.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import unicodedata
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ragehr.errors import ConfigError

DEFAULT_STOPWORDS: tuple[str, ...] = (
    "a",
    "about",
    "an",
    "and",
    "are",
    "as",
    "at",
    "be",
    "been",
    "being",
    "by",
    "did",
    "do",
    "does",
    "for",
    "from",
    "had",
    "has",
    "have",
    "he",
    "her",
    "here",
    "him",
    "his",
    "how",
    "in",
    "into",
    "is",
    "it",
    "its",
    "me",
    "my",
    "of",
    "on",
    "or",
    "our",
    "she",
    "so",
    "such",
    "than",
    "that",
    "the",
    "their",
    "them",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "to",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "who",
    "whom",
    "why",
    "with",
    "you",
    "your",
)
"""English function words. Deliberately absent: negation and its kin ("no", "not", "nor",
"never", "none", "without", "denies", "negative"), laterality and time words ("left",
"right", "before", "after", "prior"), "may" (a month), "i" (type I, grade I) and every
clinical word."""

# Characters allowed inside a term; everything else separates.
_PIECE = re.compile(r"[\w.\-/*\[\]^%+#',:]+")
# ``,``/``:`` not between two digits, and runs of dots or hyphens, separate.
_SOFT_SPLIT = re.compile(r"(?<!\d)[,:]|[,:](?!\d)|\.{2,}|-{2,}")
_DASH_CHARS = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"
_APOSTROPHE_CHARS = "\u2018\u2019\u02bc"
_TRANSLATE = {
    **dict.fromkeys(map(ord, _DASH_CHARS), "-"),
    **dict.fromkeys(map(ord, _APOSTROPHE_CHARS), "'"),
}
_TRANSLATED = re.compile(f"[{_DASH_CHARS}{_APOSTROPHE_CHARS}]")
_MISSING: Any = object()
_CACHE_MAX = 500_000


class AnalyzerConfig(BaseModel):
    """How text becomes terms. Saved with every index that uses it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lowercase: bool = True
    """Lowercase every term (``str.lower``)."""
    stem: bool = True
    """Snowball English stemming (PyStemmer) of purely alphabetic terms; codes, numbers and
    units are never stemmed."""
    stopwords: tuple[str, ...] = DEFAULT_STOPWORDS
    """Terms dropped, compared in lowercase before stemming."""
    version: Literal[1, 2] = 2
    """Version of the splitting rules in this module. Bump it when they change, so an index
    built under the old rules is not silently queried under the new ones: an index saved with
    version 1 is still read and queried with version 1's rules."""


class Analyzer:
    """Turns text into index terms under one :class:`AnalyzerConfig`.

    Pure and deterministic: the same config and text always give the same terms. Safe to
    share between threads (the stemmer, created on first use, is guarded by a lock). Each
    split term's result is memoised (up to 500,000 distinct terms), which makes indexing
    several times faster on clinical text, where a few thousand terms recur."""

    def __init__(self, config: AnalyzerConfig | None = None) -> None:
        self._config = config if config is not None else AnalyzerConfig()
        self._stop = frozenset(w.lower() for w in self._config.stopwords)
        self._stemmer: Any = None
        self._lock = threading.Lock()
        self._cache: dict[str, str | None] = {}
        """Split term -> index term (None: dropped). A memo of a pure function."""
        self._parts = self._config.version >= 2

    @property
    def config(self) -> AnalyzerConfig:
        return self._config

    def __repr__(self) -> str:
        return f"Analyzer(config_hash={self.config_hash()[:12]!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Analyzer) and other._config == self._config

    def __hash__(self) -> int:
        return hash(self._config)

    def tokenize(self, text: str) -> list[str]:
        """The terms of ``text``, in order (duplicates kept: term frequency matters)."""
        cache = self._cache
        out: list[str] = []
        for raw in _split(text, compound=self._parts):
            term = cache.get(raw, _MISSING)
            if term is _MISSING:
                term = self._analyze(raw)
                if len(cache) < _CACHE_MAX:
                    cache[raw] = term
            if term is not None:
                out.append(term)
        return out

    def to_json(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (``from_json`` reverses it)."""
        return self._config.model_dump(mode="json")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Analyzer:
        """Rebuild an analyzer from :meth:`to_json`'s dict.

        Raises :class:`ragehr.errors.ConfigError` on an unknown field or version."""
        try:
            return cls(AnalyzerConfig.model_validate(dict(data)))
        except (ValidationError, TypeError, ValueError) as exc:
            raise ConfigError(f"invalid analyzer config: {exc}") from exc

    def config_hash(self) -> str:
        """sha256 (hex) of the canonical JSON of the config, for manifests."""
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _analyze(self, raw: str) -> str | None:
        """One split term to its index term, or None for a stopword."""
        low = raw.lower()
        if low in self._stop:
            return None
        term = low if self._config.lowercase else raw
        if self._config.stem and term.isalpha():
            with self._lock:
                if self._stemmer is None:
                    import Stemmer  # PyStemmer, imported only when stemming is first needed

                    self._stemmer = Stemmer.Stemmer("english")
                term = self._stemmer.stemWord(term)
        return term


def _split(text: str, compound: bool = True) -> list[str]:
    """Terms of ``text`` before case folding, stopwords and stemming (rules in the module
    docstring; ``compound``: rule 5)."""
    text = unicodedata.normalize("NFKC", text)
    if _TRANSLATED.search(text):
        text = text.translate(_TRANSLATE)
    out: list[str] = []
    for piece in _PIECE.findall(text):
        if piece.isalnum():  # the common case: a plain word or number
            out.append(piece)
            continue
        if "," in piece or ":" in piece or ".." in piece or "--" in piece:
            parts: list[str] = _SOFT_SPLIT.split(piece)
        else:
            parts = [piece]
        for part in parts:
            term = _strip(part)
            if not term:
                continue
            if "-" in term:
                sub = term.split("-")
                if all(x.isalpha() for x in sub):
                    out.extend(sub)
                    continue
                if compound:  # rule 5: COVID-19 also gives covid, SARS-CoV-2 sars and cov
                    out.append(term)
                    out.extend(x for x in sub if len(x) >= 3 and x.isalpha())
                    continue
            out.append(term)
            if compound and ("/" in term or "." in term):
                out.extend(_compound_parts(term))
    return out


_COMPOUND = re.compile(r"[/.]")


def _compound_parts(term: str) -> list[str]:
    """The parts of a compound name (rule 5), or ``[]`` when ``term`` is a unit or code."""
    pieces = _COMPOUND.split(term)
    if len(pieces) < 2 or not all(len(x) >= 3 and x.isalnum() for x in pieces):
        return []
    if not any(sum(c.isalpha() for c in x) >= 3 for x in pieces):
        return []
    return pieces


def _strip(part: str) -> str:
    """Strip the punctuation around one candidate term; ``""`` when nothing is left."""
    if part and part[0].isalnum() and part[-1].isalnum() and not part.endswith("'s"):
        return part
    n = len(part)
    i = 0
    while i < n and not part[i].isalnum():
        if part[i] == "." and i + 1 < n and part[i + 1].isdigit():
            break
        i += 1
    j = n
    while j > i and not part[j - 1].isalnum():
        c = part[j - 1]
        if c == "%" and j - 1 > i:
            break
        if c == "]" and part.count("[", i, j) >= part.count("]", i, j):
            break
        j -= 1
    term = part[i:j]
    if term.endswith("'s") and len(term) > 2:
        term = term[:-2].rstrip("'")
    if not term or not any(c.isalnum() for c in term):
        return ""
    if term[0] == ".":
        term = "0" + term
    return term
