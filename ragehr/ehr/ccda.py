"""C-CDA (R1.1 and R2.1) documents and bare ``<section>`` fragments into a :class:`PatientRecord`.

What it does:

- Reads the header: the patient id (``recordTarget/patientRole/id``, never the SSN), the
  demographics, the document time and the ``componentOf/encompassingEncounter`` (its id becomes
  the ``visit_id`` of the document's events).
- Walks every section, nested ones included, and identifies it by its LOINC code (never by its
  title). Coded entries become events of the kind the section implies (problems ->
  ``condition``, results -> ``lab``, vital signs -> ``vital``, ...), refined by the entry's own
  element and templateIds where the section is unknown or mixed. Planned entries
  (``moodCode`` INT, RQO, ...) outside the medication lists become ``other`` events whose text
  starts with ``Planned:``.
- Narrative-only sections, and the note-type sections (HPI, hospital course, assessment and
  plan, physical exam, ...) whatever their entries, become one ``note`` event each, with the
  narrative flattened to plain text (table rows as ``cell | cell``, list items and paragraphs on
  their own lines). Note Activity entries (templateId ``2.16.840.1.113883.10.20.22.4.202``)
  become their own notes, with their own time; base64 text/plain is decoded and RTF stripped to
  plain text when no narrative reference resolves.
- Treats every element with a ``nullFlavor`` as absent (a nullFlavored code may still give its
  ``originalText`` or ``translation``), and skips a malformed entry with a DEBUG log line that
  names the element path only, never the clinical text.

What it does not do: validate against the C-CDA schematron, read payers (skipped),
participants, authors or performers, resolve ``sdtc`` extensions other than
``deceasedTime``, decode non-text attachments (PDF, DICOM), or merge duplicate facts that a
document states twice (``ragehr.ehr`` merges records later). Coded entries without a time of
their own or of their parent get ``start=None``; no time is invented from the document date
except for section notes, whose time is the document's.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeAlias

from lxml import etree

from ragehr.ehr.codes import system_name
from ragehr.ehr.source import element_path, local_name
from ragehr.ehr.times import parse_hl7_ts
from ragehr.types import (
    Demographics,
    Event,
    EventKind,
    PatientRecord,
    SourceLocator,
    Status,
    TimePrecision,
)

log = logging.getLogger(__name__)

_El: TypeAlias = etree._Element
_XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_SSN_OID = "2.16.840.1.113883.4.1"
_TPL = "2.16.840.1.113883.10.20.22.4."

# --- templateIds (C-CDA entry templates) -------------------------------------------------
_NOTE_ACTIVITY = _TPL + "202"
_PROBLEM_OBS = _TPL + "4"
_ALLERGY_OBS = _TPL + "7"
_RESULT_OBS = _TPL + "2"
_RESULT_ORG = _TPL + "1"
_VITAL_OBS = _TPL + "27"
_VITAL_ORG = _TPL + "26"
_IMMUNIZATION = _TPL + "52"
_PROCEDURE_ACT = _TPL + "12"
_PROCEDURE_CONTEXT = "2.16.840.1.113883.10.20.6.2.5"
_STATUS_OBS = {_TPL + "6", _TPL + "28", _TPL + "72"}  # problem / allergy / health status
_SUPPORTING = _STATUS_OBS | {
    _TPL + n for n in ("8", "9", "145", "64", "31", "143", "113", "119", "20", "118", "123", "122")
}
"""Severity, reaction, criticality, comment, age, priority, prognosis, author, instruction,
substance-administered, drug-monitoring and entry-reference statements: parts of another
entry, not facts of their own."""
_GOAL_OBS = _TPL + "121"
_SUPPORTING_CODES = frozenset({"SEV", "33999-4", "48767-8", "445518008", "MFST"})
_WRAPPER_ACTS = {_TPL + n for n in ("3", "30", "80", "33", "34", "35", "65", "51", "131", "132", "136", "140", "146")}
"""Concern, diagnosis and medication-list acts that only group the statements inside them."""

# --- sections by LOINC code --------------------------------------------------------------
_PROBLEM, _ALLERGY, _MEDICATION, _IMMUNIZATION_S = "problem", "allergy", "medication", "immunization"
_RESULT, _VITAL, _PROCEDURE, _ENCOUNTER = "result", "vital", "procedure", "encounter"
_PLAN, _GENERIC, _SKIP = "plan", "generic", "skip"

_SECTION_KIND: dict[str, str] = {
    # problems and diagnoses
    "11450-4": _PROBLEM,
    "11348-0": _PROBLEM,
    "46241-6": _PROBLEM,
    "42347-5": _PROBLEM,
    "11535-2": _PROBLEM,
    "78375-3": _PROBLEM,
    "10219-4": _PROBLEM,
    "10218-6": _PROBLEM,
    "59769-0": _PROBLEM,
    "29548-5": _PROBLEM,
    "C-CDAV2-DDN": _PROBLEM,
    # medications
    "10160-0": _MEDICATION,
    "29549-3": _MEDICATION,
    "42346-7": _MEDICATION,
    "10183-2": _MEDICATION,
    "75311-1": _MEDICATION,
    "11369-6": _IMMUNIZATION_S,
    "48765-2": _ALLERGY,
    "30954-2": _RESULT,
    "8716-3": _VITAL,
    "47519-4": _PROCEDURE,
    "29554-3": _PROCEDURE,
    "10223-6": _PROCEDURE,
    "46240-8": _ENCOUNTER,
    "18776-5": _PLAN,
    "59772-4": _PLAN,
    "48768-6": _SKIP,
}
"""Sections whose entries have a known kind; every other section is read generically (its
observations become ``observation`` events, templates decide the rest)."""

_NOTE_SECTIONS: frozenset[str] = frozenset(
    {
        "10164-2",  # history of present illness
        "8648-8",  # hospital course
        "51848-0",  # assessment
        "51847-2",  # assessment and plan
        "18776-5",  # plan of care / treatment
        "10154-3",  # chief complaint
        "46239-0",  # chief complaint and reason for visit
        "29299-5",  # reason for visit
        "42349-1",  # reason for referral
        "10187-3",  # review of systems
        "29545-1",  # physical exam
        "10184-0",  # hospital discharge physical
        "10210-3",  # general status
        "8653-8",  # hospital discharge instructions
        "69730-0",  # instructions
        "11493-4",  # hospital discharge studies summary
        "18841-7",  # hospital consultations
        "61149-1",  # objective
        "61150-9",  # subjective
        "11348-0",  # past medical history
        "59776-5",  # procedure findings
        "18782-3",  # radiology study observation (findings)
        "19005-8",  # radiology impression
        "121070",  # DICOM findings
        "121072",  # DICOM impressions
        "121109",  # DICOM indications
        "11329-0",  # history general
        "10223-6",  # surgical operation note
        "29554-3",  # procedure description
        "59768-2",  # procedure indications
        "59775-7",  # procedure disposition
        "59770-8",  # estimated blood loss
        "59771-6",  # procedure implants
        "59773-2",  # specimens taken
        "55109-3",  # complications
        "10216-0",  # operative note fluids
        "11537-8",  # surgical drains
        "10218-6",  # postoperative diagnosis
        "10219-4",  # preoperative diagnosis
        "59769-0",  # postprocedure diagnosis
        "59774-0",  # anesthesia
    }
)
"""Sections whose narrative is a note in its own right, so it becomes a note even when the
section also has coded entries."""

_PLANNED_MOODS = frozenset({"INT", "RQO", "PRP", "ARQ", "PRMS", "APT"})
_STATEMENTS = frozenset(
    {"observation", "act", "substanceAdministration", "procedure", "encounter", "organizer", "supply"}
)
_STATUS_CODE = {
    "active": Status.ACTIVE,
    "completed": Status.COMPLETED,
    "aborted": Status.STOPPED,
    "cancelled": Status.STOPPED,
    "suspended": Status.INACTIVE,
}
_CLINICAL_STATUS = {
    "55561003": Status.ACTIVE,
    "73425007": Status.INACTIVE,
    "413322009": Status.RESOLVED,
    "277022003": Status.RESOLVED,  # remission
    "723506003": Status.RESOLVED,
}
_GENERIC_PROBLEM_CODES = frozenset(
    {
        "55607006",
        "282291009",
        "64572001",
        "404684003",
        "409586006",
        "418799008",
        "248536006",
        "373930000",
        "29308-4",
        "75326-9",
        "ASSERTION",
    }
)
"""Problem-type codes (SNOMED problem, diagnosis, condition, finding, complaint, symptom; LOINC
diagnosis) that say what kind of fact a problem is, not what the problem is."""
_VAGUE_NAMES = frozenset({"unknown", "unk", "other", "not available"})
_GENDER = {"M": "male", "F": "female", "UN": "undifferentiated"}
_BAD_TEXT = frozenset({"", "null", "none", "nan", "undefined"})
_BAD_CODES = frozenset({"UNKNOWN", "UNK", "NI", "NA", "NULL", "NONE", "OTH", "NASK", "ASKU"})

_Time = tuple[datetime, TimePrecision]


# --- small XML helpers (namespace-free: by local name) ------------------------------------


def _present(el: _El | None) -> _El | None:
    """The element, or None when it is missing or carries a nullFlavor."""
    if el is None or el.get("nullFlavor") is not None:
        return None
    return el


def _kids(el: _El | None, name: str) -> Iterator[_El]:
    if el is None:
        return
    for c in el:
        if isinstance(c.tag, str) and local_name(c) == name:
            yield c


def _kid(el: _El | None, name: str) -> _El | None:
    return next(_kids(el, name), None)


def _find(el: _El | None, path: str) -> _El | None:
    """The first element along a ``/``-separated path of local names (first match each step)."""
    for part in path.split("/"):
        el = _kid(el, part)
        if el is None:
            return None
    return el


def _templates(el: _El) -> set[str]:
    return {t.get("root", "") for t in _kids(el, "templateId")}


def _xsi_type(el: _El) -> str:
    t = el.get(_XSI_TYPE) or ""
    return t.rsplit(":", 1)[-1].upper()


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    s = " ".join(text.split())
    return None if s.lower() in _BAD_TEXT else s


def _negated(el: _El) -> bool:
    return (el.get("negationInd") or "").strip().lower() == "true"


def _ii(el: _El | None) -> str | None:
    """An instance identifier as one string: its extension, else its root."""
    el = _present(el)
    if el is None:
        return None
    return _clean(el.get("extension")) or _clean(el.get("root"))


# --- narrative ---------------------------------------------------------------------------

_BLOCKS = frozenset({"paragraph", "list", "item", "caption", "div", "p", "tr", "li", "ul", "ol", "h1", "h2", "h3"})
_NO_TEXT = frozenset({"renderMultiMedia", "footnoteRef", "col", "colgroup", "reference"})


class _Lines:
    """Accumulates inline text into whitespace-normalised lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._cur: list[str] = []

    def add(self, text: str | None) -> None:
        if text:
            self._cur.append(text)

    def brk(self) -> None:
        if self._cur:
            line = " ".join("".join(self._cur).split())
            if line:
                self.lines.append(line)
            self._cur = []

    def text(self) -> str:
        self.brk()
        return "\n".join(self.lines)


def _walk(el: _El, out: _Lines) -> None:
    name = local_name(el)
    if name in _NO_TEXT:
        return
    if name == "table":
        out.brk()
        for c in _kids(el, "caption"):
            out.lines.append(_inline(c))
        out.lines.extend(_table_rows(el))
        return
    if name == "br":
        out.brk()
        return
    block = name in _BLOCKS
    if block:
        out.brk()
    out.add(el.text)
    for c in el:
        if isinstance(c.tag, str):
            _walk(c, out)
        out.add(c.tail)
    if block:
        out.brk()


def _inline(el: _El) -> str:
    """An element's text on one line."""
    out = _Lines()
    _walk(el, out)
    return " ".join(out.text().split("\n"))


def _table_rows(table: _El) -> list[str]:
    rows: list[_El] = []
    for c in table:
        if not isinstance(c.tag, str):
            continue
        n = local_name(c)
        if n == "tr":
            rows.append(c)
        elif n in ("thead", "tbody", "tfoot"):
            rows.extend(_kids(c, "tr"))
    lines = []
    for tr in rows:
        cells = [_inline(c) for c in tr if isinstance(c.tag, str) and local_name(c) in ("td", "th")]
        if any(cells):
            lines.append(" | ".join(cells).strip())
    return lines


def flatten_narrative(el: _El) -> str:
    """A narrative block (``section/text``, an item, a table cell) as plain text: table rows as
    ``cell | cell``, list items, captions and paragraphs on their own lines, no markup."""
    out = _Lines()
    _walk(el, out)
    return out.text()


_RTF_DEST = re.compile(r"\\([a-z]{1,32})(-?\d{1,10})? ?|\\'([0-9a-fA-F]{2})|\\([^a-z])|([{}])|[\r\n]+|([^\\{}\r\n]+)")
_RTF_SKIP_DEST = frozenset(
    {
        "fonttbl",
        "colortbl",
        "stylesheet",
        "info",
        "pict",
        "header",
        "footer",
        "headerl",
        "headerr",
        "footerl",
        "footerr",
        "object",
        "listtable",
        "listoverridetable",
        "rsidtbl",
        "generator",
        "themedata",
        "datastore",
        "latentstyles",
        "xmlnstbl",
        "mmathPr",
    }
)
_RTF_CHARS = {
    "par": "\n",
    "line": "\n",
    "sect": "\n",
    "page": "\n",
    "row": "\n",
    "cell": " | ",
    "tab": "\t",
    "emdash": "\u2014",
    "endash": "\u2013",
    "bullet": "\u2022",
    "lquote": "\u2018",
    "rquote": "\u2019",
    "ldblquote": "\u201c",
    "rdblquote": "\u201d",
    "emspace": " ",
    "enspace": " ",
}


def rtf_to_text(rtf: str) -> str:
    """Best-effort plain text of an RTF document: control words and font/colour tables
    dropped, paragraphs kept, ``\\'hh`` and ``\\uN`` escapes decoded."""
    stack: list[tuple[bool, int]] = []
    skip = False
    uc = 1  # characters to skip after \uN
    pending_skip = 0
    out: list[str] = []
    for m in _RTF_DEST.finditer(rtf):
        word, arg, hexc, sym, brace, text = m.groups()
        if brace == "{":
            stack.append((skip, uc))
            continue
        if brace == "}":
            if stack:
                skip, uc = stack.pop()
            continue
        if sym is not None:
            if sym == "*":
                skip = True
            elif sym in "\\{}":
                if not skip:
                    out.append(sym)
            elif sym == "~" and not skip:
                out.append("\u00a0")
            elif sym in "-_" and not skip:
                out.append("-" if sym == "_" else "")
            continue
        if word is not None:
            if word in _RTF_SKIP_DEST:
                skip = True
            elif word == "uc" and arg:
                uc = int(arg)
            elif word == "u" and arg:
                if not skip:
                    out.append(chr(int(arg) % 0x10000))
                pending_skip = uc
            elif word in _RTF_CHARS and not skip:
                out.append(_RTF_CHARS[word])
            continue
        if hexc is not None:
            if pending_skip:
                pending_skip -= 1
            elif not skip:
                out.append(bytes([int(hexc, 16)]).decode("cp1252", errors="replace"))
            continue
        if text is not None and not skip:
            if pending_skip:
                text = text[pending_skip:]
                pending_skip = 0
            out.append(text)
    lines = (" ".join(line.split()) for line in "".join(out).replace("\x00", "").split("\n"))
    return "\n".join(line for line in lines if line)


# --- the parser --------------------------------------------------------------------------


@dataclass
class _Section:
    el: _El
    kind: str
    code: str | None
    title: str | None
    display: str | None


@dataclass
class _Coded:
    system: str | None = None
    code: str | None = None
    display: str | None = None


class _Parser:
    def __init__(self, root: _El, path: Path) -> None:
        self.root = root
        self.path = path
        self.file = str(path)
        ids: dict[str, _El] = {}
        for el in root.iter():
            i = el.get("ID") if isinstance(el.tag, str) else None
            if i and i not in ids:
                ids[i] = el
        self.ids = ids
        self.events: list[Event] = []
        self.doc_time: _Time | None = None
        self.visit_id: str | None = None

    # -- text and codes --

    def ref_text(self, el: _El | None) -> str | None:
        """The text of an ``originalText`` or ``text``: its ``reference`` resolved into the
        narrative, else its own content."""
        if el is None:
            return None
        ref = _kid(el, "reference")
        if ref is not None:
            target = (ref.get("value") or "").strip().lstrip("#")
            node = self.ids.get(target) if target else None
            if node is not None:
                text = _clean(flatten_narrative(node).replace("\n", " "))
                if text:
                    return text
        if el.get("representation") == "B64":
            return None
        return _clean("".join(t for t in _own_text(el)))

    def coded(self, el: _El | None, generic: frozenset[str] = frozenset()) -> _Coded:
        """A CD/CE element: its code unless nullFlavored or one of ``generic`` (placeholders
        such as SNOMED "Problem"), then the first usable translation; and a name: the
        displayName, the originalText, or a translation's name, "Unknown" only as a last resort."""
        if el is None:
            return _Coded()
        out = _Coded()
        code = _code_value(el.get("code")) if el.get("nullFlavor") is None else None
        placeholder = code is not None and code in generic
        if code is not None and not placeholder:
            out.code = code
            out.system = system_name(el.get("codeSystem"), el.get("codeSystemName"))
        translations = [t for t in _kids(el, "translation") if _present(t) is not None]
        if out.code is None:
            for t in translations:
                if _code_value(t.get("code")) and t.get("code") not in generic:
                    out.code = _code_value(t.get("code"))
                    out.system = system_name(t.get("codeSystem"), t.get("codeSystemName"))
                    break
        names = [
            None if placeholder else _clean(el.get("displayName")),
            self.ref_text(_kid(el, "originalText")),
            *(_clean(t.get("displayName")) for t in translations),
        ]
        given = [n for n in names if n]
        out.display = next((n for n in given if n.lower() not in _VAGUE_NAMES), given[0] if given else None)
        if out.code is None and placeholder and not out.display:
            out.display = _clean(el.get("displayName"))
        return out

    # -- times --

    def ivl(self, et: _El | None) -> tuple[_Time | None, datetime | None]:
        """``(start, end)`` of an effectiveTime: ``@value``, else ``low`` or ``center``; ``high``."""
        et = _present(et)
        if et is None:
            return None, None
        end: datetime | None = None
        if (et.get("value") or "").strip():
            return _ts(et), end  # an invalid @value is kept at its valid precision, not replaced
        low = _present(_kid(et, "low"))
        start = _ts(low) if low is not None and (low.get("value") or "").strip() else _ts(_kid(et, "center"))
        hi = _ts(_kid(et, "high"))
        end = hi[0] if hi else None
        return start, end

    def stmt_time(self, stmt: _El, parent: _Time | None) -> tuple[_Time | None, datetime | None]:
        """The statement's own time range (the first effectiveTime that is an interval or a
        point, not a frequency), falling back to its parent's start."""
        start: _Time | None = None
        end: datetime | None = None
        for et in _kids(stmt, "effectiveTime"):
            if _xsi_type(et) in ("", "IVL_TS", "TS"):
                start, end = self.ivl(et)
                if start or end:
                    break
        return (start or parent), end

    # -- events --

    def add(
        self,
        el: _El,
        kind: EventKind,
        time: _Time | None = None,
        end: datetime | None = None,
        *,
        coded: _Coded | None = None,
        text: str | None = None,
        **kw: Any,
    ) -> None:
        coded = coded or _Coded()
        text = text or coded.display or coded.code
        if not text:
            log.debug("C-CDA entry without code or text skipped: %s", element_path(el))
            return
        start, precision = time if time else (None, TimePrecision.MINUTE)
        if end is not None and start is not None and end < start:
            end = None
        kw.setdefault("visit_id", self.visit_id)
        self.events.append(
            Event(
                kind=kind,
                start=start,
                end=end,
                precision=precision,
                system=coded.system,
                code=coded.code,
                text=text,
                source=SourceLocator(file=self.file, path=element_path(el)),
                **kw,
            )
        )

    # -- document --

    def parse(self) -> PatientRecord:
        root = self.root
        name = local_name(root)
        patient_id = self.path.stem
        demo = Demographics()
        if name == "ClinicalDocument":
            patient_id = self.patient_id() or patient_id
            demo = self.demographics()
            self.doc_time = _ts(_kid(root, "effectiveTime"))
            enc = _find(root, "componentOf/encompassingEncounter")
            if _present(enc) is not None:
                self.visit_id = next((v for i in _kids(enc, "id") if (v := _ii(i))), None)
                if self.doc_time is None:
                    self.doc_time = self.ivl(_kid(enc, "effectiveTime"))[0]
            body = _find(root, "component/structuredBody")
            if body is not None:
                for comp in _kids(body, "component"):
                    for sec in _kids(comp, "section"):
                        self.section(sec)
            else:
                self.non_xml_body(_find(root, "component/nonXMLBody"))
        else:
            self.section(root)
        return PatientRecord(
            patient_id=patient_id,
            format="ccda",
            demographics=demo,
            events=tuple(self.events),
            sources=(self.file,),
        )

    def patient_id(self) -> str | None:
        ids = [
            i
            for role in _kids(_kid(self.root, "recordTarget"), "patientRole")
            for i in _kids(role, "id")
            if _present(i) is not None
        ]
        for i in ids:
            ext, root = _clean(i.get("extension")), (i.get("root") or "").strip()
            if ext and root != _SSN_OID:
                return ext
        for i in ids:
            root = _clean(i.get("root"))
            if root and root != _SSN_OID:
                return root
        return None

    def demographics(self) -> Demographics:
        patient = _find(self.root, "recordTarget/patientRole/patient")
        if patient is None:
            return Demographics()
        name = None
        n = _present(_kid(patient, "name"))
        if n is not None:
            parts = [t for g in _kids(n, "given") if (t := _clean(g.text))]
            parts += [t for f in _kids(n, "family") if (t := _clean(f.text))]
            name = " ".join(parts) or _clean("".join(n.itertext()))
        birth = _ts(_kid(patient, "birthTime"))
        gender = None
        g = _present(_kid(patient, "administrativeGenderCode"))
        if g is not None:
            gender = _GENDER.get((g.get("code") or "").upper()) or (
                (_clean(g.get("displayName")) or "").lower() or None
            )
        race = _present(_kid(patient, "raceCode"))
        eth = _present(_kid(patient, "ethnicGroupCode"))
        deceased = _ts(_kid(patient, "deceasedTime"))
        return Demographics(
            name=name,
            birth_date=birth[0].date() if birth else None,
            gender=gender,
            race=self.coded(race).display if race is not None else None,
            ethnicity=self.coded(eth).display if eth is not None else None,
            deceased=deceased[0] if deceased else None,
        )

    def non_xml_body(self, body: _El | None) -> None:
        """A document whose body is one attachment: a note if it is text."""
        text_el = _kid(body, "text")
        if text_el is None:
            return
        text = _decode_text(text_el)
        if text and body is not None:
            title_el = _kid(self.root, "title")
            title = _clean("".join(title_el.itertext())) if title_el is not None else None
            coded = self.coded(_kid(self.root, "code"))
            self.add(
                body,
                EventKind.NOTE,
                self.doc_time,
                coded=coded,
                text=text,
                title=title or coded.display,
                note_type=coded.display or title,
            )

    # -- sections --

    def section(self, sec: _El, depth: int = 0) -> None:
        if depth > 16 or sec.get("nullFlavor") is not None:
            return
        code_el = _present(_kid(sec, "code"))
        code = _clean(code_el.get("code")) if code_el is not None else None
        title_el = _kid(sec, "title")
        title = _clean("".join(title_el.itertext())) if title_el is not None else None
        display = _clean(code_el.get("displayName")) if code_el is not None else None
        s = _Section(sec, _SECTION_KIND.get(code or "", _GENERIC), code, title, display)
        n_before = len(self.events)
        has_note_activity = False
        if s.kind != _SKIP:
            for entry in _kids(sec, "entry"):
                stmt = next((c for c in entry if isinstance(c.tag, str) and local_name(c) in _STATEMENTS), None)
                if stmt is None or stmt.get("nullFlavor") is not None:
                    continue
                try:
                    self.statement(stmt, s, None, 0)
                    has_note_activity |= self.note_activities(stmt, s)
                except Exception as exc:  # a malformed entry must not lose the document
                    log.debug("C-CDA entry skipped (%s): %s", type(exc).__name__, element_path(entry))
        coded_events = len(self.events) > n_before
        if s.kind != _SKIP and not has_note_activity and (not coded_events or code in _NOTE_SECTIONS):
            self.section_note(s)
        for comp in _kids(sec, "component"):
            for sub in _kids(comp, "section"):
                self.section(sub, depth + 1)

    def section_note(self, s: _Section) -> None:
        text_el = _kid(s.el, "text")
        if text_el is None:
            return
        text = flatten_narrative(text_el)
        if not text:
            return
        code_el = _present(_kid(s.el, "code"))
        coded = _Coded()
        if s.code and code_el is not None:
            coded = _Coded(system_name(code_el.get("codeSystem"), code_el.get("codeSystemName")), s.code)
        title = s.title or s.display
        note_type = s.display or s.title
        self.add(
            s.el,
            EventKind.NOTE,
            self.doc_time,
            coded=coded,
            text=text,
            title=title,
            note_type=note_type.lower() if note_type and note_type.isupper() else note_type,
        )

    def note_activities(self, stmt: _El, s: _Section) -> bool:
        found = False
        for act in stmt.iter():
            if not isinstance(act.tag, str) or local_name(act) != "act" or _NOTE_ACTIVITY not in _templates(act):
                continue
            found = True
            try:
                self.note_activity(act, s)
            except Exception as exc:
                log.debug("C-CDA note activity skipped (%s): %s", type(exc).__name__, element_path(act))
        return found

    def note_activity(self, act: _El, s: _Section) -> None:
        code_el = _kid(act, "code")
        coded = self.coded(code_el)
        note_type = (
            next((d for t in _kids(code_el, "translation") if (d := _clean(t.get("displayName")))), None)
            or coded.display
            or s.display
        )
        text_el = _kid(act, "text")
        text = None
        if text_el is not None:
            ref = _kid(text_el, "reference")
            target = (ref.get("value") or "").strip().lstrip("#") if ref is not None else ""
            if target in self.ids:
                text = flatten_narrative(self.ids[target])
            if not text:
                text = _decode_text(text_el)
        if not text:
            log.debug("C-CDA note activity without text skipped: %s", element_path(act))
            return
        time, _ = self.stmt_time(act, None)
        if time is None:
            time = _ts(_find(act, "author/time")) or self.doc_time
        self.add(
            act,
            EventKind.NOTE,
            time,
            coded=coded,
            text=text,
            title=s.title or note_type,
            note_type=note_type,
            visit_id=self.entry_visit(act),
        )

    def entry_visit(self, stmt: _El) -> str | None:
        for er in _kids(stmt, "entryRelationship"):
            enc = _kid(er, "encounter")
            if enc is not None:
                v = next((v for i in _kids(enc, "id") if (v := _ii(i))), None)
                if v:
                    return v
        return self.visit_id

    # -- entries --

    def statement(self, stmt: _El, s: _Section, parent: _Time | None, depth: int) -> None:
        """Dispatch one clinical statement by section kind, element and templates."""
        if depth > 8 or stmt.get("nullFlavor") is not None:
            return
        name = local_name(stmt)
        tpl = _templates(stmt)
        if _NOTE_ACTIVITY in tpl:
            return  # read by note_activities
        mood = (stmt.get("moodCode") or "EVN").upper()
        kind = s.kind
        if name == "organizer":
            self.organizer(stmt, s, parent, depth)
            return
        if name == "act" and self.is_wrapper(stmt, s):
            time, _ = self.stmt_time(stmt, parent)
            for child in self.nested(stmt):
                self.statement(child, s, time, depth + 1)
            return
        if (
            mood in _PLANNED_MOODS
            and name != "substanceAdministration"
            and kind not in (_MEDICATION, _IMMUNIZATION_S, _PROBLEM, _ALLERGY)
        ):
            self.planned(stmt, parent)
            return
        if name == "observation":
            code = _kid(stmt, "code")
            if kind in (_RESULT, _VITAL) and s.code and code is not None and code.get("code") == s.code:
                log.debug("C-CDA placeholder result (coded as its section) skipped: %s", element_path(stmt))
                return
            if kind == _PROBLEM or _PROBLEM_OBS in tpl:
                self.problem(stmt, parent)
            elif kind == _ALLERGY or _ALLERGY_OBS in tpl:
                self.allergy(stmt, parent)
            elif kind == _VITAL or _VITAL_OBS in tpl:
                self.result(stmt, EventKind.VITAL, parent)
            elif kind == _RESULT or _RESULT_OBS in tpl:
                self.result(stmt, EventKind.LAB, parent)
            elif kind == _PROCEDURE:
                self.procedure(stmt, parent)
            else:
                self.result(stmt, EventKind.OBSERVATION, parent)
        elif name == "substanceAdministration":
            if kind == _IMMUNIZATION_S or _IMMUNIZATION in tpl:
                self.medication(stmt, EventKind.IMMUNIZATION, parent)
            elif kind == _PLAN and mood in _PLANNED_MOODS:
                self.planned(stmt, parent)
            else:
                self.medication(stmt, EventKind.MEDICATION, parent)
        elif name == "procedure" or (
            name == "act" and (kind == _PROCEDURE or _PROCEDURE_ACT in tpl or _PROCEDURE_CONTEXT in tpl)
        ):
            self.procedure(stmt, parent)
        elif name == "encounter":
            self.encounter(stmt, parent)
        else:  # act, supply
            self.other(stmt, parent)

    def is_wrapper(self, act: _El, s: _Section) -> bool:
        """An act that only groups statements (a concern, a diagnosis list, a med-list act)."""
        if not any(True for _ in self.nested(act)):
            return False
        if s.kind in (_PROBLEM, _ALLERGY, _MEDICATION, _IMMUNIZATION_S) or _templates(act) & _WRAPPER_ACTS:
            return True
        code = _present(_kid(act, "code"))
        if code is None or not _clean(code.get("code")):
            return True
        return code.get("code") == "CONC" or code.get("codeSystem") == "2.16.840.1.113883.6.1"

    def nested(self, stmt: _El) -> Iterator[_El]:
        """Clinical statements in ``entryRelationship`` and ``component``, leaving out the
        supporting ones (status, severity, reaction, ...) that belong to their parent."""
        for er in stmt:
            if not isinstance(er.tag, str) or local_name(er) not in ("entryRelationship", "component"):
                continue
            if er.get("typeCode") == "MFST":
                continue
            for c in er:
                if not isinstance(c.tag, str) or local_name(c) not in _STATEMENTS:
                    continue
                code = _kid(c, "code")
                if _templates(c) & _SUPPORTING or (code is not None and code.get("code") in _SUPPORTING_CODES):
                    continue
                yield c

    def organizer(self, org: _El, s: _Section, parent: _Time | None, depth: int) -> None:
        time, _ = self.stmt_time(org, parent)
        tpl = _templates(org)
        sub = s
        if s.kind in (_GENERIC, _PLAN):
            if _VITAL_ORG in tpl:
                sub = _Section(s.el, _VITAL, s.code, s.title, s.display)
            elif _RESULT_ORG in tpl:
                sub = _Section(s.el, _RESULT, s.code, s.title, s.display)
        relative = self.coded(_find(org, "subject/relatedSubject/code")).display
        for comp in _kids(org, "component"):
            for c in comp:
                if not isinstance(c.tag, str) or local_name(c) not in _STATEMENTS:
                    continue
                if relative and local_name(c) == "observation" and sub.kind == _GENERIC:
                    self.family_member(c, relative, time)
                elif sub.kind in (_RESULT, _VITAL) and local_name(c) not in ("observation", "organizer"):
                    # vendors interleave the ordering procedure with each result; not a result
                    log.debug("C-CDA non-result in a result organizer skipped: %s", element_path(c))
                else:
                    self.statement(c, sub, time, depth + 1)

    def family_member(self, obs: _El, relative: str, parent: _Time | None) -> None:
        value = _present(_kid(obs, "value"))
        coded = self.coded(value) if value is not None else self.coded(_kid(obs, "code"))
        name = coded.display or self.ref_text(_kid(obs, "text")) or coded.code
        if not name:
            return
        time, end = self.stmt_time(obs, parent)
        self.add(
            obs,
            EventKind.OBSERVATION,
            time,
            end,
            coded=coded,
            text=f"{relative}: {name}",
            status=Status.NEGATED if _negated(obs) else None,
        )

    def problem(self, obs: _El, parent: _Time | None) -> None:
        value = _present_or_text(_kid(obs, "value"))
        coded = self.coded(value, _GENERIC_PROBLEM_CODES) if value is not None else _Coded()
        if coded.code is None and coded.display is None:
            coded = self.coded(_kid(obs, "code"), _GENERIC_PROBLEM_CODES)
        text = coded.display or self.ref_text(_kid(obs, "text")) or coded.code
        time, end = self.stmt_time(obs, parent)
        status: Status | None = None
        if _negated(obs):
            status = Status.NEGATED
        else:
            status = self.clinical_status(obs)
            if status is None and end is not None:
                status = Status.RESOLVED
            if status is None:
                er = obs.getparent()
                concern = er.getparent() if er is not None else None
                if concern is not None and local_name(concern) == "act":
                    sc = _present(_kid(concern, "statusCode"))
                    if sc is not None and sc.get("code") == "active":
                        status = Status.ACTIVE
        self.add(
            obs, EventKind.CONDITION, time, end, coded=coded, text=text, status=status, visit_id=self.entry_visit(obs)
        )

    def clinical_status(self, stmt: _El) -> Status | None:
        for er in _kids(stmt, "entryRelationship"):
            for obs in _kids(er, "observation"):
                code = _present(_kid(obs, "code"))
                if not (_templates(obs) & _STATUS_OBS or (code is not None and code.get("code") == "33999-4")):
                    continue
                v = self.coded(_present(_kid(obs, "value")))
                if v.code in _CLINICAL_STATUS:
                    return _CLINICAL_STATUS[v.code]
                d = (v.display or "").lower()
                for word, st in (
                    ("resolved", Status.RESOLVED),
                    ("inactive", Status.INACTIVE),
                    ("no longer", Status.INACTIVE),
                    ("active", Status.ACTIVE),
                ):
                    if word in d:
                        return st
        return None

    def allergy(self, obs: _El, parent: _Time | None) -> None:
        allergen = _Coded()
        for p in _kids(obs, "participant"):
            pe = _find(p, "participantRole/playingEntity")
            if pe is None:
                continue
            allergen = self.coded(_kid(pe, "code"))
            if not allergen.display:
                name_el = _kid(pe, "name")
                allergen.display = _clean("".join(name_el.itertext())) if name_el is not None else None
            if allergen.code or allergen.display:
                break
        kind_coded = self.coded(_present_or_text(_kid(obs, "value")))
        coded = allergen if (allergen.code or allergen.display) else kind_coded
        name = coded.display or self.ref_text(_kid(obs, "text")) or coded.code
        reactions = []
        for er in _kids(obs, "entryRelationship"):
            for r in _kids(er, "observation"):
                if (er.get("typeCode") == "MFST" or _TPL + "9" in _templates(r)) and not _negated(r):
                    d = self.coded(_present_or_text(_kid(r, "value"))).display
                    if d:
                        reactions.append(d)
        if name and reactions:
            name = f"{name} (reaction: {', '.join(dict.fromkeys(reactions))})"
        time, end = self.stmt_time(obs, parent)
        status = Status.NEGATED if _negated(obs) else self.clinical_status(obs)
        if status is None and end is not None:
            status = Status.RESOLVED
        self.add(
            obs, EventKind.ALLERGY, time, end, coded=coded, text=name, status=status, visit_id=self.entry_visit(obs)
        )

    def medication(self, sa: _El, kind: EventKind, parent: _Time | None) -> None:
        product = _find(sa, "consumable/manufacturedProduct")
        material = _kid(product, "manufacturedMaterial")
        coded = self.coded(_kid(material, "code"))
        if not coded.display and material is not None:
            nm = _kid(material, "name")
            coded.display = _clean("".join(nm.itertext())) if nm is not None else None
        text = coded.display or self.ref_text(_kid(sa, "text")) or coded.code
        time, end = self.stmt_time(sa, parent)
        value: float | None = None
        unit: str | None = None
        dose = _present(_kid(sa, "doseQuantity"))
        if dose is not None:
            value = _float(dose.get("value"))
            unit = _unit(dose.get("unit")) if value is not None else None
        if _negated(sa):
            status: Status | None = Status.NEGATED
        else:
            sc = _present(_kid(sa, "statusCode"))
            status = _STATUS_CODE.get((sc.get("code") or "").lower()) if sc is not None else None
        self.add(
            sa,
            kind,
            time,
            end,
            coded=coded,
            text=text,
            value=value,
            unit=unit,
            status=status,
            visit_id=self.entry_visit(sa),
        )

    def result(self, obs: _El, kind: EventKind, parent: _Time | None) -> None:
        coded = self.coded(_kid(obs, "code"))
        value, unit, vcoded = self.value(obs)
        if coded.code == "ASSERTION" or (not coded.display and not coded.code):
            # an assertion: the value is the fact (smoking status in R1.1, findings)
            if vcoded is not None and (vcoded.code or vcoded.display):
                coded, value, unit = vcoded, None, None
            else:
                coded = _Coded(display=coded.display)
        name = coded.display or self.ref_text(_kid(obs, "text"))
        if not name and vcoded is not None and vcoded.display:
            name, value = vcoded.display, None  # e.g. a smoking status without a display name
        name = name or coded.code
        interp = _present(_kid(obs, "interpretationCode"))
        if name and interp is not None and (interp.get("code") or "").upper() not in ("N", ""):
            d = self.coded(interp).display or interp.get("code")
            if d and d.lower() != "normal":
                name = f"{name} ({d})"
        if name and _GOAL_OBS in _templates(obs):
            name = f"Goal: {name}"
        time, end = self.stmt_time(obs, parent)
        status = Status.NEGATED if _negated(obs) else None
        if value is None and time is None and (name is None or coded.code is None):
            log.debug("C-CDA observation without code, value or time skipped: %s", element_path(obs))
            return
        self.add(
            obs,
            kind,
            time,
            end,
            coded=coded,
            text=name,
            value=value,
            unit=unit,
            status=status,
            visit_id=self.entry_visit(obs),
        )

    def value(self, obs: _El) -> tuple[float | int | str | None, str | None, _Coded | None]:
        """An observation's value as ``(value, unit, coded)``: PQ and REAL as floats, INT as int,
        coded values as their display text, intervals and ratios as text."""
        for v in _kids(obs, "value"):
            t = _xsi_type(v)
            if t in ("CD", "CE", "CV", "CO", "CS"):
                c = self.coded(_present_or_text(v))
                if c.display or c.code:
                    return c.display or c.code, None, c
                continue
            if v.get("nullFlavor") is not None:
                continue
            if t in ("PQ", "REAL", "") and v.get("value") is not None:
                f = _float(v.get("value"))
                if f is not None:
                    return f, _unit(v.get("unit")), None
                s = _clean(v.get("value"))
                if s:
                    return s, _unit(v.get("unit")), None
            elif t == "INT":
                try:
                    return int((v.get("value") or "").strip()), None, None
                except ValueError:
                    s = _clean(v.get("value"))
                    if s:
                        return s, None, None
            elif t in ("IVL_PQ", "IVL_INT", "IVL_REAL"):
                lo, hi = _present(_kid(v, "low")), _present(_kid(v, "high"))
                lo_v = _clean(lo.get("value")) if lo is not None else None
                hi_v = _clean(hi.get("value")) if hi is not None else None
                edge = lo if lo is not None else hi
                unit = _unit(edge.get("unit")) if edge is not None else None
                if lo_v and hi_v:
                    return f"{lo_v}-{hi_v}", unit, None
                if lo_v and lo is not None:
                    return f">={lo_v}" if lo.get("inclusive", "true") != "false" else f">{lo_v}", unit, None
                if hi_v and hi is not None:
                    return f"<={hi_v}" if hi.get("inclusive", "true") != "false" else f"<{hi_v}", unit, None
            elif t in ("RTO", "RTO_PQ_PQ", "RTO_INT_INT", "RTO_QTY_QTY"):
                n, d = _present(_kid(v, "numerator")), _present(_kid(v, "denominator"))
                if n is not None and d is not None and n.get("value") and d.get("value"):
                    return f"{n.get('value')}/{d.get('value')}", _unit(n.get("unit")), None
            elif t == "BL":
                b = _clean(v.get("value"))
                if b:
                    return b, None, None
            elif t in ("TS", "IVL_TS"):
                low = _kid(v, "low")
                s = _clean(v.get("value")) or (_clean(low.get("value")) if low is not None else None)
                if s:
                    return s, None, None
            else:  # ST, ED, SC, unknown: text content
                s = self.ref_text(v) if _kid(v, "reference") is not None else _clean("".join(v.itertext()))
                if s:
                    return s, None, None
        return None, None, None

    def procedure(self, stmt: _El, parent: _Time | None) -> None:
        coded = self.coded(_kid(stmt, "code"))
        if local_name(stmt) == "observation" and not coded.code and not coded.display:
            coded = self.coded(_present_or_text(_kid(stmt, "value")))
        text = coded.display or self.ref_text(_kid(stmt, "text")) or coded.code
        time, end = self.stmt_time(stmt, parent)
        if _negated(stmt):
            status: Status | None = Status.NEGATED
        else:
            sc = _present(_kid(stmt, "statusCode"))
            status = _STATUS_CODE.get((sc.get("code") or "").lower()) if sc is not None else None
        self.add(
            stmt, EventKind.PROCEDURE, time, end, coded=coded, text=text, status=status, visit_id=self.entry_visit(stmt)
        )

    def encounter(self, enc: _El, parent: _Time | None) -> None:
        coded = self.coded(_kid(enc, "code"))
        text = coded.display or self.ref_text(_kid(enc, "text")) or coded.code
        diagnoses = []
        for child in self.nested(enc):
            for obs in [child, *child.iter()]:
                if (
                    isinstance(obs.tag, str)
                    and local_name(obs) == "observation"
                    and not (_templates(obs) & _STATUS_OBS)
                ):
                    d = self.coded(_present_or_text(_kid(obs, "value"))).display
                    if d:
                        diagnoses.append(d)
                        break
        if text and diagnoses:
            text = f"{text} (diagnosis: {'; '.join(dict.fromkeys(diagnoses))})"
        time, end = self.stmt_time(enc, parent)
        own = next((v for i in _kids(enc, "id") if (v := _ii(i))), None)
        self.add(
            enc,
            EventKind.ENCOUNTER,
            time,
            end,
            coded=coded,
            text=text,
            status=Status.NEGATED if _negated(enc) else None,
            visit_id=own or self.visit_id,
        )

    def planned(self, stmt: _El, parent: _Time | None) -> None:
        coded = self._statement_code(stmt)
        name = coded.display or self.ref_text(_kid(stmt, "text")) or coded.code
        time, end = self.stmt_time(stmt, parent)
        self.add(
            stmt,
            EventKind.OTHER,
            time,
            end,
            coded=coded,
            text=f"Planned: {name}" if name else None,
            status=Status.NEGATED if _negated(stmt) else None,
            visit_id=self.entry_visit(stmt),
        )

    def other(self, stmt: _El, parent: _Time | None) -> None:
        coded = self._statement_code(stmt)
        name = coded.display or self.ref_text(_kid(stmt, "text")) or coded.code
        time, end = self.stmt_time(stmt, parent)
        if not name and time is None:
            return
        self.add(
            stmt,
            EventKind.OTHER,
            time,
            end,
            coded=coded,
            text=name,
            status=Status.NEGATED if _negated(stmt) else None,
            visit_id=self.entry_visit(stmt),
        )

    def _statement_code(self, stmt: _El) -> _Coded:
        """What a statement is about: a drug or device for substance administrations and
        supplies, the value of a coded assertion, else its own code."""
        name = local_name(stmt)
        if name in ("substanceAdministration", "supply"):
            for path in (
                "consumable/manufacturedProduct/manufacturedMaterial/code",
                "product/manufacturedProduct/manufacturedMaterial/code",
                "participant/participantRole/playingDevice/code",
            ):
                c = self.coded(_find(stmt, path))
                if c.code or c.display:
                    return c
        coded = self.coded(_kid(stmt, "code"))
        if name == "observation" and (coded.code == "ASSERTION" or not (coded.code or coded.display)):
            v = self.coded(_present_or_text(_kid(stmt, "value")))
            if v.code or v.display:
                return v
        return coded


# --- module helpers ----------------------------------------------------------------------


def _ts(el: _El | None) -> _Time | None:
    el = _present(el)
    if el is None:
        return None
    v = el.get("value")
    return parse_hl7_ts(v) if v else None


def _own_text(el: _El) -> Iterator[str]:
    """An element's text, skipping ``reference`` children."""
    if el.text:
        yield el.text
    for c in el:
        if isinstance(c.tag, str) and local_name(c) != "reference":
            yield from c.itertext()
        if c.tail:
            yield c.tail


def _present_or_text(el: _El | None) -> _El | None:
    """A coded element even when nullFlavored, if it still has originalText or translations
    (``coded`` drops the nullFlavored code itself)."""
    if el is None:
        return None
    if el.get("nullFlavor") is None:
        return el
    if _kid(el, "originalText") is not None or _kid(el, "translation") is not None:
        return el
    return None


def _code_value(text: str | None) -> str | None:
    c = _clean(text)
    return None if c is None or c.upper() in _BAD_CODES else c


def _float(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        f = float(text.strip())
    except ValueError:
        return None
    return f if math.isfinite(f) else None


def _unit(text: str | None) -> str | None:
    u = _clean(text)
    return None if u in (None, "1") else u


def _decode_text(text_el: _El) -> str | None:
    """The inline content of an ED ``text``: base64 decoded, RTF stripped, else plain."""
    raw = "".join(_own_text(text_el))
    media = (text_el.get("mediaType") or "text/plain").lower()
    if (text_el.get("representation") or "").upper() == "B64":
        try:
            data = base64.b64decode("".join(raw.split()), validate=False)
        except (binascii.Error, ValueError):
            return None
        if media == "text/rtf":
            raw = data.decode("cp1252", errors="replace")
        elif media.startswith("text/"):
            raw = data.decode("utf-8", errors="replace")
        else:
            return None
    elif not media.startswith("text/"):
        return None
    if media == "text/rtf" or raw.lstrip().startswith("{\\rtf"):
        return rtf_to_text(raw) or None
    lines = (" ".join(line.split()) for line in raw.replace("\x00", "").splitlines())
    return "\n".join(line for line in lines if line) or None


def parse_ccda(root: _El, *, path: Path) -> PatientRecord:
    """Read a C-CDA ``ClinicalDocument`` or a bare ``section`` (with or without the
    ``urn:hl7-org:v3`` namespace) into a record. ``root`` is already safely parsed."""
    return _Parser(root, Path(path)).parse()


__all__ = ["flatten_narrative", "parse_ccda", "rtf_to_text"]
