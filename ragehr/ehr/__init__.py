"""EHR ingestion: read a record file of any supported format into a :class:`PatientRecord`.

Formats are told by content (root element, ``resourceType``), never by file extension:

- MedAlign XML (``<record><visit><day>...``): :mod:`ragehr.ehr.medalign`
- C-CDA R1.1/R2.1 (``ClinicalDocument`` or a bare ``section``): :mod:`ragehr.ehr.ccda`
- FHIR R4 Bundle JSON, a single resource, or NDJSON: :mod:`ragehr.ehr.fhir`

This package does not chunk, index or render for prompts beyond the canonical event line
(:mod:`ragehr.ehr.render`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ragehr.errors import InputError
from ragehr.types import PatientRecord

FORMATS = ("medalign-xml", "ccda", "fhir")


def load_record(path: str | Path, *, include_billing: bool = False) -> PatientRecord:
    """Parse one record file. Raises :class:`ragehr.errors.InputError` for any bad input.
    Times that are invalid as written are listed in the record's ``warnings``."""
    from ragehr.ehr.times import collect_time_warnings

    with collect_time_warnings() as warned:
        record = _load_record(path, include_billing=include_billing)
    if warned:
        record = record.model_copy(update={"warnings": record.warnings + warned.summary()})
    return record


def _load_record(path: str | Path, *, include_billing: bool = False) -> PatientRecord:
    from ragehr.ehr import source

    raw = source.read_source(path)
    p = raw.path
    try:
        if raw.kind == "xml":
            root = source.parse_xml(p, raw.data)
            name = source.local_name(root)
            ns = root.nsmap.get(root.prefix) if isinstance(root.tag, str) else None
            if name == "record" and not ns:
                from ragehr.ehr.medalign import parse_medalign

                return parse_medalign(root, path=p)
            if name in ("ClinicalDocument", "section") and ns in (source.CCDA_NS, None):
                if name == "ClinicalDocument" and ns != source.CCDA_NS:
                    raise source.unsupported(p, "ClinicalDocument outside the urn:hl7-org:v3 namespace")
                from ragehr.ehr.ccda import parse_ccda

                return parse_ccda(root, path=p)
            raise source.unsupported(p, f"XML root element <{name}>")
        if raw.kind == "json":
            obj = source.parse_json(p, raw.data)
            resources = _json_resources(p, obj)
        else:
            resources = [(f"line:{lineno}", obj) for lineno, obj in source.parse_ndjson(p, raw.data)]
            for where, obj in resources:
                if not isinstance(obj, dict) or "resourceType" not in obj:
                    raise source.unsupported(p, f"NDJSON {where} is not a FHIR resource")
        from ragehr.ehr.fhir import parse_fhir

        return parse_fhir(resources, path=p, include_billing=include_billing)
    except InputError:
        raise
    except RecursionError:
        raise InputError(p, "document nested too deeply; refused") from None


def _json_resources(p: Path, obj: Any) -> list[tuple[str, dict[str, Any]]]:
    from ragehr.ehr import source

    if not isinstance(obj, dict) or "resourceType" not in obj:
        raise source.unsupported(p, "JSON without a FHIR resourceType")
    if obj["resourceType"] != "Bundle":
        return [("", obj)]
    entries = obj.get("entry") or []
    if not isinstance(entries, list):
        raise InputError(p, "malformed FHIR Bundle: entry is not a list")
    out = []
    for i, entry in enumerate(entries):
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and "resourceType" in res:
            out.append((f"/entry/{i}/resource", res))
    return out


__all__ = ["FORMATS", "load_record"]
