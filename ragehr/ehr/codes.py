"""Coding systems: HL7 OIDs (C-CDA) and FHIR URIs mapped to one short name each, so the same
code read from two formats compares equal (``("SNOMED", "44054006")``)."""

from __future__ import annotations

import re

from ragehr.types import Event

# name -> (OIDs, URIs)
_SYSTEMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "LOINC": (("2.16.840.1.113883.6.1",), ("http://loinc.org",)),
    "SNOMED": (("2.16.840.1.113883.6.96",), ("http://snomed.info/sct",)),
    "ICD10CM": (
        ("2.16.840.1.113883.6.90", "2.16.840.1.113883.6.3"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "http://hl7.org/fhir/sid/icd-10"),
    ),
    "ICD9CM": (
        ("2.16.840.1.113883.6.103", "2.16.840.1.113883.6.104", "2.16.840.1.113883.6.42"),
        ("http://hl7.org/fhir/sid/icd-9-cm",),
    ),
    "RxNorm": (("2.16.840.1.113883.6.88",), ("http://www.nlm.nih.gov/research/umls/rxnorm",)),
    "CVX": (("2.16.840.1.113883.12.292", "2.16.840.1.113883.6.59"), ("http://hl7.org/fhir/sid/cvx",)),
    "CPT": (("2.16.840.1.113883.6.12",), ("http://www.ama-assn.org/go/cpt",)),
    "HCPCS": (("2.16.840.1.113883.6.285", "2.16.840.1.113883.6.14"), ("urn:oid:2.16.840.1.113883.6.285",)),
    "NDC": (("2.16.840.1.113883.6.69",), ("http://hl7.org/fhir/sid/ndc",)),
    "UNII": (("2.16.840.1.113883.4.9",), ("http://fdasis.nlm.nih.gov",)),
    "NDFRT": (("2.16.840.1.113883.3.26.1.5",), ("http://hl7.org/fhir/ndfrt",)),
    "MEDRT": (("2.16.840.1.113883.6.345",), ("http://va.gov/terminology/medrt",)),
    "UCUM": (("2.16.840.1.113883.6.8",), ("http://unitsofmeasure.org",)),
    "ActCode": (("2.16.840.1.113883.5.4",), ("http://terminology.hl7.org/CodeSystem/v3-ActCode",)),
    "CDCREC": (("2.16.840.1.113883.6.238",), ("urn:oid:2.16.840.1.113883.6.238",)),
}

_BY_KEY: dict[str, str] = {}
for _name, (_oids, _uris) in _SYSTEMS.items():
    for _k in (*_oids, *_uris, *(f"urn:oid:{o}" for o in _oids)):
        _BY_KEY[_k.lower()] = _name


def system_name(oid_or_uri: str | None, fallback_name: str | None = None) -> str | None:
    """The short name of a coding system given as an OID, a ``urn:oid:``, or a URI.

    Unknown systems keep ``fallback_name`` (a C-CDA ``codeSystemName``) or the raw value."""
    if not oid_or_uri:
        return fallback_name or None
    return _BY_KEY.get(oid_or_uri.strip().lower(), fallback_name or oid_or_uri.strip())


_TRAILING_UNIT = re.compile(r"\s*[\(\[][^\(\)\[\]]*[\)\]]\s*$")


def concept_key(e: Event) -> str:
    """Which concept an event belongs to (one lab analyte, vital, drug, condition, ...): its
    coding (``LOINC 2345-7``) when coded, else its name, case-folded, whitespace collapsed,
    without a trailing bracketed unit. The per-concept series chunks
    (:func:`ragehr.chunking.chunk_series`), concept resolution
    (:mod:`ragehr.retrieval.concepts`) and computed answers all group events by it."""
    if e.code:
        return f"{e.system or 'code'} {e.code}"
    name = " ".join((e.text or "").split())
    return _TRAILING_UNIT.sub("", name).casefold()
