"""Build MedAlign-style XML records of a requested size, with planted facts of known location.

MedAlign's real records average ~170 notes and ~13,000 structured events; the shared sample
records are small. This script recombines REAL shared records (Synthea FHIR and C-CDA events,
HL7 C-CDA and vendor note sections, Synthea DocumentReference notes, MedAlign's sample notes)
into one long synthetic patient timeline:

- ``visits`` visits spread over ``years`` years, each with one or more days;
- each day gets a mixture of pooled events (lab and vital panels keep their members together
  at one time; medications, conditions, procedures, immunizations, observations), reused with
  their original text, code, value and unit but a new time and visit;
- ``notes`` pooled notes re-dated into the visits;
- ``facts`` planted facts at depths spread evenly over the record (0.02 .. 0.98 of the rendered
  text): a one-off lab with a distinctive name and value, a one-off medication, a one-off
  procedure, and a sentence planted inside a note. Each fact's key terms and evidence occur
  exactly once in the record (checked after writing), so generated QA has known gold evidence.

The record is written with :func:`ragehr.ehr.medalign.write_medalign_xml` and parsed back, so a
fact's ``event_id`` and ``source_path`` are what ``ragehr`` computes when it reads the file.
``event_id`` hashes the file name as given to the parser (``record_file``); ``source_path``
(the element path) does not depend on it.

Usage::

    python benchmarks/make_record.py benchmarks/data/synthetic_small.xml --size small --seed 0

The output is derived from the shared data (see ../shared/data/README.md for licenses): write
it outside git (``benchmarks/data/`` is ignored).
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
import random
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ragehr.ehr import load_record
from ragehr.ehr.medalign import parse_medalign, write_medalign_xml
from ragehr.ehr.render import format_value, render_event, render_record
from ragehr.ehr.source import parse_xml
from ragehr.tokens import estimate_tokens
from ragehr.types import (
    Demographics,
    Event,
    EventKind,
    PatientRecord,
    SourceLocator,
    TimePrecision,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO.parent / "shared" / "data"

# ----------------------------------------------------------------------------------------
# Sizes


@dataclass(frozen=True)
class Counts:
    """What to build. ``events`` counts structured events (planted ones included), not notes
    and not the one ``encounter`` header per visit."""

    visits: int
    notes: int
    events: int
    years: float
    facts: int | None = None
    """Planted facts; ``None``: 20, 50, 100 for the presets, else events // 30 (4..100)."""

    def n_facts(self) -> int:
        if self.facts is not None:
            return self.facts
        return max(4, min(100, self.events // 30))


PRESETS: dict[str, Counts] = {
    # ~10k and ~100k estimated tokens: the short end of the query-path growth table (bench_query.py).
    "10k": Counts(visits=5, notes=6, events=260, years=3, facts=10),
    "100k": Counts(visits=20, notes=36, events=2_800, years=5, facts=20),
    # ~20k estimated tokens.
    "small": Counts(visits=10, notes=12, events=600, years=5, facts=20),
    # MedAlign's median record: 170 notes, 13,000 structured events (~430k estimated tokens).
    "median": Counts(visits=60, notes=170, events=13_000, years=8, facts=50),
    # ~1M estimated tokens (90,000 events at ~36 tokens an event would be ~3.3M).
    "large": Counts(visits=400, notes=1_200, events=22_500, years=15, facts=100),
}

# ----------------------------------------------------------------------------------------
# Planted facts


class PlantedFact(BaseModel):
    """One planted fact and where it is. Depth is the fraction of the rendered record
    (``ragehr.ehr.render.render_record``) that comes before the planted evidence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fact_id: str
    kind: Literal["lab", "medication", "procedure", "note"]
    question: str
    answer: str
    """The answer as text: ``87 nmol/L``, ``2016-03-14``, ``yes``, ``Portuguese``."""
    answer_type: Literal["number", "date", "yes_no", "text"]
    answer_value: float | int | str
    unit: str | None = None
    time: str
    """The planted event's time, ISO 8601."""
    date: str
    """The planted event's date, ISO 8601 (the answer of ``date`` facts)."""
    depth: float
    """Where the evidence sits in the rendered record, 0..1."""
    target_depth: float
    keys: tuple[str, ...]
    """Distinctive terms (lower case) that occur exactly once in the rendered record."""
    evidence: str
    """The exact text that supports the answer; occurs exactly once in the rendered record."""
    text: str
    """The planted event's text (for a note, the whole note body)."""
    event_id: str
    record_file: str
    """The file name ``event_id`` was computed for (as given to the parser)."""
    source_path: str
    """The element path of the planted event, as ``ragehr`` computes it."""
    visit_index: int
    """1-based position of the ``<visit>`` in the record."""
    day_index: int
    """1-based position of the ``<day>`` in its visit."""


@dataclass(frozen=True)
class _LabT:
    key: str
    loinc: str
    text: str
    unit: str
    low: float
    high: float
    decimals: int


@dataclass(frozen=True)
class _CodedT:
    key: str
    system: str
    code: str
    text: str
    question: str


@dataclass(frozen=True)
class _NoteT:
    keys: tuple[str, ...]
    sentence: str
    question: str
    answer: str
    """``yes`` for yes/no facts; otherwise the text answer, which the sentence contains."""


LAB_TEMPLATES: tuple[_LabT, ...] = (
    _LabT("lipoprotein (a)", "43583-4", "Lipoprotein (a) [Moles/volume] in Serum or Plasma", "nmol/L", 10, 250, 0),
    _LabT("ferritin", "2276-4", "Ferritin [Mass/volume] in Serum or Plasma", "ng/mL", 12, 400, 0),
    _LabT("zinc", "5763-8", "Zinc [Mass/volume] in Serum or Plasma", "ug/dL", 55, 150, 0),
    _LabT("vitamin b12", "2132-9", "Vitamin B12 [Mass/volume] in Serum or Plasma", "pg/mL", 180, 900, 0),
    _LabT(
        "hydroxyvitamin d3",
        "1989-3",
        "25-Hydroxyvitamin D3+25-Hydroxyvitamin D2 [Mass/volume] in Serum or Plasma",
        "ng/mL",
        8,
        80,
        0,
    ),
    _LabT("folate", "2284-8", "Folate [Mass/volume] in Serum or Plasma", "ng/mL", 3, 20, 1),
    _LabT("parathyrin", "2731-8", "Parathyrin.intact [Mass/volume] in Serum or Plasma", "pg/mL", 10, 120, 0),
    _LabT("c reactive protein", "1988-5", "C reactive protein [Mass/volume] in Serum or Plasma", "mg/L", 0.3, 60, 1),
    _LabT("erythrocyte sedimentation", "30341-2", "Erythrocyte sedimentation rate", "mm/h", 2, 90, 0),
    _LabT(
        "lactate dehydrogenase",
        "2532-0",
        "Lactate dehydrogenase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        120,
        480,
        0,
    ),
    _LabT(
        "creatine kinase", "2157-6", "Creatine kinase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 30, 900, 0
    ),
    _LabT("lipase", "3040-3", "Lipase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 10, 300, 0),
    _LabT("amylase", "1798-8", "Amylase [Enzymatic activity/volume] in Serum or Plasma", "U/L", 25, 250, 0),
    _LabT("carcinoembryonic", "2039-6", "Carcinoembryonic Ag [Mass/volume] in Serum or Plasma", "ng/mL", 0.5, 12, 1),
    _LabT(
        "natriuretic",
        "33762-6",
        "Natriuretic peptide.B prohormone N-Terminal [Mass/volume] in Serum or Plasma",
        "pg/mL",
        40,
        3500,
        0,
    ),
    _LabT("troponin", "10839-9", "Troponin I.cardiac [Mass/volume] in Serum or Plasma", "ng/mL", 0.01, 2.5, 2),
    _LabT("thyroxine", "3024-7", "Thyroxine (T4) free [Mass/volume] in Serum or Plasma", "ng/dL", 0.6, 2.2, 2),
    _LabT(
        "insulin-like growth factor",
        "2484-4",
        "Insulin-like growth factor-I [Mass/volume] in Serum or Plasma",
        "ng/mL",
        60,
        350,
        0,
    ),
    _LabT("cortisol", "2143-6", "Cortisol [Mass/volume] in Serum or Plasma", "ug/dL", 3, 25, 1),
    _LabT(
        "gamma glutamyl",
        "2324-2",
        "Gamma glutamyl transferase [Enzymatic activity/volume] in Serum or Plasma",
        "U/L",
        8,
        180,
        0,
    ),
    _LabT("urate", "3084-1", "Urate [Mass/volume] in Serum or Plasma", "mg/dL", 2.5, 10.5, 1),
    _LabT("apolipoprotein b", "1884-6", "Apolipoprotein B [Mass/volume] in Serum or Plasma", "mg/dL", 50, 160, 0),
    _LabT("immunoglobulin e", "19113-0", "Immunoglobulin E [Units/volume] in Serum or Plasma", "[IU]/mL", 5, 900, 0),
    _LabT("testosterone", "2986-8", "Testosterone [Mass/volume] in Serum or Plasma", "ng/dL", 15, 800, 0),
    _LabT("prostate specific", "2857-1", "Prostate specific Ag [Mass/volume] in Serum or Plasma", "ng/mL", 0.2, 9, 1),
    _LabT("ammonia", "16362-6", "Ammonia [Moles/volume] in Plasma", "umol/L", 10, 90, 0),
    _LabT("procalcitonin", "33959-8", "Procalcitonin [Mass/volume] in Serum or Plasma", "ng/mL", 0.02, 4, 2),
    _LabT("d-dimer", "48065-7", "Fibrin D-dimer FEU [Mass/volume] in Platelet poor plasma", "ng/mL{FEU}", 100, 2500, 0),
    _LabT("homocysteine", "13965-9", "Homocysteine [Moles/volume] in Serum or Plasma", "umol/L", 5, 30, 1),
    _LabT("ceruloplasmin", "2064-4", "Ceruloplasmin [Mass/volume] in Serum or Plasma", "mg/dL", 15, 50, 0),
)

_MED = "When was the patient started on {}?"
MED_TEMPLATES: tuple[_CodedT, ...] = tuple(
    _CodedT(key, "RxNorm", code, text, _MED.format(key))
    for key, code, text in (
        ("dupilumab", "1876376", "dupilumab 300 MG in 2 ML Prefilled Syringe"),
        ("adalimumab", "327361", "adalimumab 40 MG in 0.4 ML Auto-Injector"),
        ("ustekinumab", "847083", "ustekinumab 45 MG in 0.5 ML Prefilled Syringe"),
        ("secukinumab", "1599788", "secukinumab 150 MG/ML Auto-Injector"),
        ("omalizumab", "302379", "omalizumab 150 MG Injection"),
        ("apixaban", "1364430", "apixaban 5 MG Oral Tablet"),
        ("rivaroxaban", "1114195", "rivaroxaban 20 MG Oral Tablet"),
        ("dabigatran", "1037042", "dabigatran etexilate 150 MG Oral Capsule"),
        ("semaglutide", "1991302", "semaglutide 0.5 MG/DOSE Pen Injector"),
        ("empagliflozin", "1545653", "empagliflozin 10 MG Oral Tablet"),
        ("sacubitril", "1656339", "sacubitril 49 MG / valsartan 51 MG Oral Tablet"),
        ("colchicine", "2683", "colchicine 0.6 MG Oral Tablet"),
        ("febuxostat", "73689", "febuxostat 40 MG Oral Tablet"),
        ("tamsulosin", "77492", "tamsulosin hydrochloride 0.4 MG Oral Capsule"),
        ("finasteride", "25025", "finasteride 5 MG Oral Tablet"),
        ("sumatriptan", "37418", "sumatriptan 50 MG Oral Tablet"),
        ("topiramate", "38404", "topiramate 25 MG Oral Tablet"),
        ("lamotrigine", "28439", "lamotrigine 100 MG Oral Tablet"),
        ("levetiracetam", "114477", "levetiracetam 500 MG Oral Tablet"),
        ("bupropion", "42347", "bupropion hydrochloride 150 MG Extended Release Oral Tablet"),
        ("varenicline", "591622", "varenicline 1 MG Oral Tablet"),
        ("naltrexone", "7243", "naltrexone hydrochloride 50 MG Oral Tablet"),
        ("spironolactone", "9997", "spironolactone 25 MG Oral Tablet"),
        ("methotrexate", "6851", "methotrexate 2.5 MG Oral Tablet"),
        ("hydroxychloroquine", "5521", "hydroxychloroquine sulfate 200 MG Oral Tablet"),
        ("tofacitinib", "1357536", "tofacitinib 5 MG Oral Tablet"),
        ("ranolazine", "35829", "ranolazine 500 MG Extended Release Oral Tablet"),
        ("isotretinoin", "6064", "isotretinoin 40 MG Oral Capsule"),
        ("montelukast", "88249", "montelukast 10 MG Oral Tablet"),
        ("gabapentin", "25480", "gabapentin 300 MG Oral Capsule"),
    )
)

PROC_TEMPLATES: tuple[_CodedT, ...] = tuple(
    _CodedT(key, "CPT4", code, text, f"When did the patient have {what}?")
    for key, code, text, what in (
        ("meniscectomy", "29881", "Arthroscopic medial meniscectomy, left knee", "a meniscectomy"),
        ("carpal tunnel", "64721", "Carpal tunnel release, right wrist", "carpal tunnel release surgery"),
        ("cataract", "66984", "Cataract extraction with intraocular lens implant, left eye", "cataract surgery"),
        ("rotator cuff", "29827", "Arthroscopic rotator cuff repair, right shoulder", "a rotator cuff repair"),
        ("inguinal hernia", "49505", "Repair of inguinal hernia, right, reducible", "an inguinal hernia repair"),
        ("septoplasty", "30520", "Septoplasty", "a septoplasty"),
        ("thyroidectomy", "60240", "Total thyroidectomy", "a thyroidectomy"),
        ("laminectomy", "63047", "Lumbar laminectomy with foraminotomy, L4-L5", "a lumbar laminectomy"),
        ("bunionectomy", "28296", "Bunionectomy with first metatarsal osteotomy, left foot", "a bunionectomy"),
        (
            "endovenous",
            "36475",
            "Endovenous radiofrequency ablation of the great saphenous vein, right leg",
            "an endovenous vein ablation",
        ),
        ("pacemaker", "33208", "Insertion of permanent dual-chamber pacemaker", "a pacemaker implanted"),
        ("lithotripsy", "50590", "Extracorporeal shock wave lithotripsy, left kidney", "lithotripsy"),
        ("hysterectomy", "58571", "Laparoscopic total hysterectomy", "a hysterectomy"),
        ("vasectomy", "55250", "Vasectomy, bilateral", "a vasectomy"),
        ("trigger finger", "26055", "Trigger finger release, right ring finger", "trigger finger release surgery"),
        ("ganglion", "25111", "Excision of ganglion cyst, left wrist", "a ganglion cyst excised"),
        ("mohs", "17311", "Mohs micrographic surgery, nose", "Mohs surgery"),
        (
            "esophagogastroduodenoscopy",
            "43239",
            "Esophagogastroduodenoscopy with biopsy",
            "an upper endoscopy (esophagogastroduodenoscopy)",
        ),
        ("bone marrow", "38221", "Bone marrow biopsy, posterior iliac crest", "a bone marrow biopsy"),
        ("lumbar puncture", "62270", "Diagnostic lumbar puncture", "a lumbar puncture"),
        ("epidural", "64483", "Transforaminal epidural steroid injection, lumbar", "an epidural steroid injection"),
        ("hip arthroplasty", "27130", "Total hip arthroplasty, left hip", "a hip replacement (total hip arthroplasty)"),
        (
            "tympanostomy",
            "69436",
            "Tympanostomy with ventilating tube insertion, right ear",
            "a tympanostomy tube placed",
        ),
        ("cholecystectomy", "47562", "Laparoscopic cholecystectomy", "a cholecystectomy"),
        ("nasal endoscopy", "31231", "Diagnostic nasal endoscopy", "a nasal endoscopy"),
        ("cystourethroscopy", "52000", "Cystourethroscopy", "a cystourethroscopy"),
        ("breast biopsy", "19083", "Ultrasound-guided core needle breast biopsy, left breast", "a breast biopsy"),
        (
            "arthrocentesis",
            "20610",
            "Arthrocentesis with corticosteroid injection, right knee",
            "a knee arthrocentesis",
        ),
        ("hemorrhoid", "46221", "Rubber band ligation of internal hemorrhoids", "hemorrhoid banding"),
        ("tonsillectomy", "42826", "Tonsillectomy", "a tonsillectomy"),
    )
)

NOTE_TEMPLATES: tuple[_NoteT, ...] = (
    _NoteT(
        ("safe at home",),
        "Patient reports not feeling safe at home.",
        "Has the patient ever reported not feeling safe at home?",
        "yes",
    ),
    _NoteT(
        ("dog bite",),
        "Patient sustained a dog bite to the left forearm from a neighbor's dog.",
        "Has the patient ever been bitten by a dog?",
        "yes",
    ),
    _NoteT(
        ("asbestos",),
        "Patient reports occupational exposure to asbestos while working in a shipyard.",
        "Has the patient ever been exposed to asbestos?",
        "yes",
    ),
    _NoteT(
        ("sarcoidosis",),
        "Patient's sister was recently diagnosed with sarcoidosis.",
        "Does the patient have a family history of sarcoidosis?",
        "yes",
    ),
    _NoteT(
        ("fell from a ladder",),
        "Patient fell from a ladder while cleaning gutters last week.",
        "Has the patient ever fallen from a ladder?",
        "yes",
    ),
    _NoteT(
        ("marathon",),
        "Patient is training for a marathon this spring.",
        "Has the patient been training for a marathon?",
        "yes",
    ),
    _NoteT(("chickens",), "Patient keeps backyard chickens.", "Does the patient keep poultry at home?", "yes"),
    _NoteT(
        ("tick bite",),
        "Patient noticed a tick bite after hiking in Connecticut.",
        "Has the patient ever reported a tick bite?",
        "yes",
    ),
    _NoteT(
        ("firework",),
        "Patient reports hearing loss in the right ear since a firework accident.",
        "Has the patient ever been injured by fireworks?",
        "yes",
    ),
    _NoteT(
        ("adopted",),
        "Patient was adopted and does not know the biological family history.",
        "Was the patient adopted?",
        "yes",
    ),
    _NoteT(
        ("vaping",),
        "Patient reports vaping nicotine daily for the past two years.",
        "Has the patient ever reported vaping?",
        "yes",
    ),
    _NoteT(
        ("scuba",),
        "Patient reports a prior scuba diving injury to the left ear.",
        "Has the patient ever had a scuba diving injury?",
        "yes",
    ),
    _NoteT(
        ("oysters",),
        "Patient ate raw oysters the day before symptom onset.",
        "Did the patient eat raw oysters before becoming ill?",
        "yes",
    ),
    _NoteT(
        ("needle-stick",),
        "Patient reports a needle-stick injury at work.",
        "Has the patient ever had a needle-stick injury?",
        "yes",
    ),
    _NoteT(
        ("wildfire",),
        "Patient lost their home in a wildfire last year.",
        "Has the patient lost a home to a wildfire?",
        "yes",
    ),
    _NoteT(("platelet donor",), "Patient is a regular platelet donor.", "Does the patient donate platelets?", "yes"),
    _NoteT(
        ("sleepwalking",),
        "Bed partner reports episodes of sleepwalking.",
        "Has the patient been reported to sleepwalk?",
        "yes",
    ),
    _NoteT(
        ("motorcycle",),
        "Patient was in a motorcycle accident and fractured the right clavicle.",
        "Has the patient been in a motorcycle accident?",
        "yes",
    ),
    _NoteT(
        ("turmeric",),
        "Patient takes a turmeric supplement daily.",
        "What herbal supplement does the patient take daily?",
        "turmeric",
    ),
    _NoteT(
        ("parrot",), "Patient has a pet parrot at home.", "What kind of pet does the patient keep at home?", "parrot"
    ),
    _NoteT(
        ("portuguese",),
        "Patient prefers written instructions in Portuguese.",
        "In what language does the patient prefer written instructions?",
        "Portuguese",
    ),
    _NoteT(
        ("airline pilot",),
        "Patient works as a commercial airline pilot.",
        "What is the patient's occupation?",
        "commercial airline pilot",
    ),
    _NoteT(
        ("ecuador",),
        "Patient recently returned from a two-week trip to Ecuador.",
        "Which country did the patient recently travel to?",
        "Ecuador",
    ),
    _NoteT(("beekeeping",), "Patient's hobby is beekeeping.", "What is the patient's hobby?", "beekeeping"),
    _NoteT(
        ("cello",),
        "Patient plays the cello in a community orchestra.",
        "What musical instrument does the patient play?",
        "cello",
    ),
    _NoteT(
        ("health care proxy", "niece"),
        "Patient has designated a niece as health care proxy.",
        "Whom has the patient designated as health care proxy?",
        "niece",
    ),
    _NoteT(
        ("sesame",), "Patient reports hives after eating sesame.", "What food has caused the patient hives?", "sesame"
    ),
    _NoteT(
        ("kayak",),
        "Patient injured the right shoulder while kayaking.",
        "What activity was the patient doing when the right shoulder was injured?",
        "kayaking",
    ),
)

FACT_KINDS: tuple[str, ...] = ("lab", "medication", "procedure", "note")

# ----------------------------------------------------------------------------------------
# The pool of real events and notes

STRUCTURED_KINDS: tuple[EventKind, ...] = (
    EventKind.LAB,
    EventKind.VITAL,
    EventKind.OBSERVATION,
    EventKind.MEDICATION,
    EventKind.PROCEDURE,
    EventKind.CONDITION,
    EventKind.IMMUNIZATION,
    EventKind.ALLERGY,
)
# The share of each kind's bundles drawn for a day (MedAlign records are mostly measurements).
KIND_WEIGHTS: dict[EventKind, float] = {
    EventKind.LAB: 0.40,
    EventKind.VITAL: 0.18,
    EventKind.OBSERVATION: 0.08,
    EventKind.MEDICATION: 0.13,
    EventKind.PROCEDURE: 0.10,
    EventKind.CONDITION: 0.07,
    EventKind.IMMUNIZATION: 0.03,
    EventKind.ALLERGY: 0.01,
}
MAX_BUNDLE = 25
MIN_NOTE_CHARS = 80
MAX_DURATION = timedelta(days=3 * 365)


@dataclass(frozen=True)
class Pool:
    bundles: dict[EventKind, tuple[tuple[Event, ...], ...]]
    """Per kind, groups of events that share a source file, a time and a kind (panels)."""
    notes: tuple[Event, ...]
    files: tuple[str, ...]

    @property
    def n_events(self) -> int:
        return sum(len(b) for bs in self.bundles.values() for b in bs)


def source_files(shared_dir: Path) -> list[Path]:
    """The shared files the pool is drawn from, in a fixed order."""
    s = Path(shared_dir)
    out: list[Path] = []
    out += sorted((s / "synthea" / "fhir").glob("*.json"))
    out += sorted((s / "synthea" / "ccda").glob("*.xml"))
    out += sorted((s / "ccda" / "hl7-examples").glob("*.xml"))
    out += sorted((s / "ccda" / "hl7-examples" / "notes-section-fragments").glob("*.xml"))
    out += sorted((s / "ccda" / "vendor").glob("*.xml"))
    out += sorted((s / "medalign").glob("*.xml"))
    return out


@functools.lru_cache(maxsize=4)
def load_pool(shared_dir: str) -> Pool:
    files = source_files(Path(shared_dir))
    if not files:
        raise FileNotFoundError(f"no source records under {shared_dir}")
    bundles: dict[EventKind, list[tuple[Event, ...]]] = {k: [] for k in STRUCTURED_KINDS}
    notes: list[Event] = []
    seen_notes: dict[str, None] = {}
    for f in files:
        record = load_record(f)
        groups: dict[tuple[str, str], list[Event]] = {}
        for i, e in enumerate(record.events):
            if e.kind is EventKind.NOTE:
                text = e.text.strip()
                if len(text) >= MIN_NOTE_CHARS and text not in seen_notes:
                    seen_notes[text] = None
                    notes.append(e)
                continue
            if e.kind not in bundles or not (e.text or e.code):
                continue
            when = e.start.isoformat() if e.start else f"undated-{i}"
            groups.setdefault((e.kind.value, when), []).append(e)
        for (kind, _), evs in groups.items():
            for j in range(0, len(evs), MAX_BUNDLE):
                bundles[EventKind(kind)].append(tuple(evs[j : j + MAX_BUNDLE]))
    return Pool(
        bundles={k: tuple(v) for k, v in bundles.items() if v},
        notes=tuple(notes),
        files=tuple(str(f) for f in files),
    )


# ----------------------------------------------------------------------------------------
# Building


VISIT_TYPES: tuple[tuple[str, float, tuple[int, int], float], ...] = (
    # type, share, days (min, max), weight per day for events and notes
    ("Outpatient Visit", 0.55, (1, 1), 1.0),
    ("Office Visit", 0.15, (1, 1), 0.8),
    ("Emergency Room Visit", 0.12, (1, 1), 2.0),
    ("Inpatient Visit", 0.12, (2, 8), 2.5),
    ("Emergency Room and Inpatient Visit", 0.06, (2, 6), 2.5),
)


def _apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` (largest remainder; exact, deterministic)."""
    if not weights:
        return []
    s = sum(weights) or 1.0
    raw = [total * w / s for w in weights]
    out = [int(x) for x in raw]
    order = sorted(range(len(raw)), key=lambda i: (-(raw[i] - out[i]), i))
    for i in order[: total - sum(out)]:
        out[i] += 1
    return out


@dataclass
class _Day:
    day: date
    start_minute: int
    n_events: int = 0
    n_notes: int = 0


@dataclass
class _Visit:
    vtype: str
    days: list[_Day]


def _plan_visits(counts: Counts, n_base_events: int, rng: random.Random) -> tuple[list[_Visit], datetime]:
    end_year = 2023 - rng.randint(0, 3)
    end = datetime(end_year, rng.randint(1, 12), rng.randint(1, 28), tzinfo=UTC)
    total_days = max(int(counts.years * 365.25), counts.visits)
    start = end - timedelta(days=total_days)
    slot = total_days / counts.visits
    visits: list[_Visit] = []
    types = [t for t, *_ in VISIT_TYPES]
    shares = [s for _, s, *_ in VISIT_TYPES]
    spec = {t: (d, w) for t, _, d, w in VISIT_TYPES}
    for i in range(counts.visits):
        vtype = rng.choices(types, weights=shares)[0]
        (lo, hi), _ = spec[vtype]
        n_days = min(rng.randint(lo, hi), max(1, int(slot) - 1))
        room = max(0, int(slot) - n_days)
        offset = int(i * slot) + rng.randint(0, room)
        first = (start + timedelta(days=offset)).date()
        hour = rng.randint(0, 20) if "Emergency" in vtype else rng.randint(7, 15)
        days = [
            _Day(first + timedelta(days=d), (hour * 60 + rng.randint(0, 59)) if d == 0 else rng.randint(6 * 60, 9 * 60))
            for d in range(n_days)
        ]
        visits.append(_Visit(vtype, days))
    # Events and notes per day.
    day_list = [(v, d) for v in visits for d in v.days]
    weights = [spec[v.vtype][1] * rng.uniform(0.5, 1.5) for v, _ in day_list]
    for (_, d), n in zip(day_list, _apportion(n_base_events, weights)):
        d.n_events = n
    note_w = [spec[v.vtype][1] * rng.uniform(0.3, 1.7) for v, _ in day_list]
    for (_, d), n in zip(day_list, _apportion(counts.notes, note_w)):
        d.n_notes = n
    return visits, start


def _at(day: date, minute: int) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(minutes=minute)


_SRC = "make_record"


def _redate(e: Event, when: datetime, visit_id: str, path: str) -> Event:
    end = None
    if e.end is not None and e.start is not None and timedelta(0) <= e.end - e.start <= MAX_DURATION:
        end = when + (e.end - e.start)
        end = end.replace(second=0, microsecond=0)
        if end < when:
            end = when
    return e.model_copy(
        update={
            "start": when,
            "end": end,
            "precision": TimePrecision.MINUTE,
            "visit_id": visit_id,
            "source": SourceLocator(file=_SRC, path=path),
        }
    )


def _base_events(
    counts: Counts,
    n_base_events: int,
    pool: Pool,
    rng: random.Random,
    progress: Callable[[str], None] | None,
) -> list[Event]:
    visits, _ = _plan_visits(counts, n_base_events, rng)
    kinds = [k for k in STRUCTURED_KINDS if k in pool.bundles]
    kweights = [KIND_WEIGHTS[k] for k in kinds]
    note_order = list(range(len(pool.notes)))
    rng.shuffle(note_order)
    note_i = 0
    events: list[Event] = []
    step = max(1, len(visits) // 10) if len(visits) >= 100 else 0
    for vi, visit in enumerate(visits, start=1):
        vid = f"visit-{vi}"
        first = visit.days[0]
        events.append(
            Event(
                kind=EventKind.ENCOUNTER,
                start=_at(first.day, first.start_minute),
                text=visit.vtype,
                visit_id=vid,
                source=SourceLocator(file=_SRC, path=f"{vid}"),
            )
        )
        for d in visit.days:
            # Items of the day: event bundles and notes, each at one time.
            items: list[tuple[str, tuple[Event, ...]]] = []
            left = d.n_events
            while left > 0:
                kind = rng.choices(kinds, weights=kweights)[0]
                bundle = rng.choice(pool.bundles[kind])[:left]
                items.append(("events", bundle))
                left -= len(bundle)
            for _ in range(d.n_notes):
                if note_i == len(note_order):
                    rng.shuffle(note_order)
                    note_i = 0
                items.append(("note", (pool.notes[note_order[note_i]],)))
                note_i += 1
            rng.shuffle(items)
            lo = d.start_minute
            hi = max(lo, 23 * 60 + 50)
            minutes = sorted(rng.randint(lo, hi) for _ in items)
            # The visit header is at the first day's start: no event of the day comes before.
            for (_, evs), minute in zip(items, minutes):
                when = _at(d.day, minute)
                for e in evs:
                    events.append(_redate(e, when, vid, f"{vid}/{len(events)}"))
        if progress and step and vi % step == 0:
            progress(f"visits {vi}/{len(visits)}")
    return events


def _render_len(e: Event) -> int:
    n = len(render_event(e))
    return n + 3 if e.kind is EventKind.NOTE else n + 1


def _insert_sentence(text: str, sentence: str, rng: random.Random) -> str:
    lines = text.split("\n")
    at = rng.randint(1, len(lines))
    return "\n".join(lines[:at] + [sentence] + lines[at:])


def _lab_value(t: _LabT, rng: random.Random) -> float | int:
    x = rng.uniform(t.low, t.high)
    if t.decimals == 0:
        return max(1, round(x))
    v = round(x, t.decimals)
    if v == int(v):  # a float that renders as an integer would not round-trip as written
        v = round(v + 10**-t.decimals, t.decimals)
    return v


@dataclass
class _Plan:
    """A fact before the record is written: what was planted and how to find it again."""

    fact_id: str
    kind: str
    question: str
    answer: str | None  # None: the date of the planted event
    answer_type: str
    answer_value: float | int | str | None
    unit: str | None
    keys: tuple[str, ...]
    evidence: str
    target_depth: float
    code: str | None = None


def fact_kinds(n_facts: int, has_notes: bool, rng: random.Random) -> list[str]:
    """The kind of each fact, by depth: the four kinds in turn, in a seeded order."""
    kinds = list(FACT_KINDS if has_notes else FACT_KINDS[:3])
    rng.shuffle(kinds)
    return [kinds[i % len(kinds)] for i in range(n_facts)]


def _plant(events: list[Event], kinds: list[str], rng: random.Random) -> tuple[list[Event], list[_Plan]]:
    """Plant one fact of each of ``kinds`` into the base events, at evenly spread depths."""
    n_facts = len(kinds)
    base_text = "\n".join(render_event(e) for e in events).lower()
    avail: dict[str, list] = {
        "lab": [t for t in LAB_TEMPLATES if t.key not in base_text],
        "medication": [t for t in MED_TEMPLATES if t.key not in base_text],
        "procedure": [t for t in PROC_TEMPLATES if t.key not in base_text],
        "note": [t for t in NOTE_TEMPLATES if not any(k in base_text for k in t.keys)],
    }
    for v in avail.values():
        rng.shuffle(v)

    cum: list[int] = []
    total = 0
    for e in events:
        total += _render_len(e)
        cum.append(total)
    note_idx = [i for i, e in enumerate(events) if e.kind is EventKind.NOTE]
    note_mid = [cum[i] - _render_len(events[i]) / 2 for i in note_idx]
    used_notes: dict[int, int] = {}

    after: dict[int, list[Event]] = {}
    replaced: dict[int, Event] = {}
    plans: list[_Plan] = []
    answers_seen: list[str] = []
    for i in range(n_facts):
        depth = 0.5 if n_facts == 1 else 0.02 + 0.96 * i / (n_facts - 1)
        kind = kinds[i]
        if not avail[kind] or (kind == "note" and not note_idx):
            kind = next((k for k in FACT_KINDS if avail[k] and (k != "note" or note_idx)), "")
            if not kind:
                raise RuntimeError(f"ran out of fact templates after {i} facts")
        t = avail[kind].pop()
        target = depth * total
        fid = f"F{i + 1:03d}"
        if kind == "note":
            # The note nearest the target depth, least used first.
            j = min(range(len(note_idx)), key=lambda j: (used_notes.get(j, 0), abs(note_mid[j] - target)))
            used_notes[j] = used_notes.get(j, 0) + 1
            ei = note_idx[j]
            note = replaced.get(ei, events[ei])
            replaced[ei] = note.model_copy(update={"text": _insert_sentence(note.text, t.sentence, rng)})
            yes = t.answer == "yes"
            plans.append(
                _Plan(
                    fid,
                    "note",
                    t.question,
                    t.answer,
                    "yes_no" if yes else "text",
                    t.answer,
                    None,
                    t.keys,
                    t.sentence,
                    depth,
                )
            )
            continue
        ai = min(bisect.bisect_left(cum, target), len(events) - 1)
        anchor = events[ai]
        if anchor.kind is EventKind.ENCOUNTER and ai + 1 < len(events):
            ai, anchor = ai + 1, events[ai + 1]
        when = anchor.start
        assert when is not None
        loc = SourceLocator(file=_SRC, path=f"planted/{fid}")
        if kind == "lab":
            for _ in range(1000):
                value = _lab_value(t, rng)
                answer = f"{format_value(value)} {t.unit}"
                # Unique in the record: not in the base text, and neither inside nor holding
                # another planted answer ("80 U/L" is inside "180 U/L").
                a = answer.lower()
                if a not in base_text and not any(a in b or b in a for b in answers_seen):
                    break
            else:
                raise RuntimeError(f"no unique value found for {t.text}")
            answers_seen.append(a)
            ev = Event(
                kind=EventKind.LAB,
                start=when,
                system="LOINC",
                code=t.loinc,
                text=t.text,
                value=value,
                unit=t.unit,
                visit_id=anchor.visit_id,
                source=loc,
            )
            name = t.text.split(" [")[0]
            if name[1:2].islower():
                name = name[0].lower() + name[1:]
            plans.append(
                _Plan(
                    fid,
                    "lab",
                    f"What was the result of the patient's {name} test?",
                    answer,
                    "number",
                    value,
                    t.unit,
                    (t.key,),
                    f"{t.text}: {answer}",
                    depth,
                    t.loinc,
                )
            )
        else:
            ek = EventKind.MEDICATION if kind == "medication" else EventKind.PROCEDURE
            ev = Event(
                kind=ek, start=when, system=t.system, code=t.code, text=t.text, visit_id=anchor.visit_id, source=loc
            )
            plans.append(_Plan(fid, kind, t.question, None, "date", None, None, (t.key,), t.text, depth, t.code))
        after.setdefault(ai, []).append(ev)

    out: list[Event] = []
    for i, e in enumerate(events):
        out.append(replaced.get(i, e))
        out.extend(after.get(i, ()))
    return out, plans


_VISIT_STEP = re.compile(r"/visit(?:\[(\d+)\])?")
_DAY_STEP = re.compile(r"/day(?:\[(\d+)\])?")


def _index(pattern: re.Pattern[str], path: str) -> int:
    m = pattern.search(path)
    if not m:
        return 0
    return int(m.group(1) or 1)


def _locate(record: PatientRecord, plans: list[_Plan], record_file: str) -> list[PlantedFact]:
    """Find each planted fact in the parsed record and check that it is unique there."""
    rendered = render_record(record)
    low = rendered.lower()
    n = len(rendered)
    notes = [e for e in record.events if e.kind is EventKind.NOTE]
    by_code: dict[str | None, list[Event]] = {}
    for e in record.events:
        by_code.setdefault(e.code, []).append(e)
    facts: list[PlantedFact] = []
    for p in plans:
        problems = []
        for k in p.keys:
            if low.count(k) != 1:
                problems.append(f"key {k!r} occurs {low.count(k)} times")
        if rendered.count(p.evidence) != 1:
            problems.append(f"evidence occurs {rendered.count(p.evidence)} times")
        if p.answer is not None and p.answer_type in ("number", "text") and low.count(p.answer.lower()) != 1:
            problems.append(f"answer {p.answer!r} occurs {low.count(p.answer.lower())} times")
        if p.kind == "note":
            hits = [e for e in notes if p.evidence in e.text]
        else:
            hits = [e for e in by_code.get(p.code, ()) if p.evidence in render_event(e)]
        if len(hits) != 1:
            problems.append(f"{len(hits)} events hold the evidence")
        if problems:
            raise RuntimeError(f"planted fact {p.fact_id} is not unique: " + "; ".join(problems))
        ev = hits[0]
        assert ev.start is not None
        day = ev.start.date().isoformat()
        answer = p.answer if p.answer is not None else day
        value = p.answer_value if p.answer_value is not None else day
        facts.append(
            PlantedFact(
                fact_id=p.fact_id,
                kind=p.kind,  # type: ignore[arg-type]
                question=p.question,
                answer=answer,
                answer_type=p.answer_type,  # type: ignore[arg-type]
                answer_value=value,
                unit=p.unit,
                time=ev.start.isoformat(),
                date=day,
                depth=round(rendered.find(p.evidence) / n, 4),
                target_depth=round(p.target_depth, 4),
                keys=p.keys,
                evidence=p.evidence,
                text=ev.text,
                event_id=ev.event_id,
                record_file=record_file,
                source_path=ev.source.path,
                visit_index=_index(_VISIT_STEP, ev.source.path),
                day_index=_index(_DAY_STEP, ev.source.path),
            )
        )
    return facts


def _demographics(first: datetime, rng: random.Random) -> Demographics:
    age = rng.randint(30, 70)
    birth = date(first.year - age, rng.randint(1, 12), rng.randint(1, 28))
    return Demographics(
        birth_date=birth,
        gender=rng.choice(["female", "male"]),
        race=rng.choice(["White", "Black or African American", "Asian", "Other Race"]),
        ethnicity=rng.choice(["Not Hispanic or Latino", "Hispanic or Latino"]),
    )


def resolve_counts(size_or_counts: str | Counts) -> Counts:
    if isinstance(size_or_counts, Counts):
        return size_or_counts
    try:
        return PRESETS[size_or_counts]
    except KeyError:
        raise ValueError(f"unknown size {size_or_counts!r}; one of {', '.join(PRESETS)}") from None


def build_xml(
    size_or_counts: str | Counts,
    seed: int = 0,
    shared_dir: str | Path = DEFAULT_SHARED,
    *,
    record_file: str | Path = "synthetic.xml",
    progress: Callable[[str], None] | None = None,
) -> tuple[str, PatientRecord, list[PlantedFact]]:
    """Build the XML text, the record ``ragehr`` parses from it when it is read as
    ``record_file``, and the planted facts located in that record."""
    counts = resolve_counts(size_or_counts)
    if counts.visits < 1 or counts.notes < 0 or counts.events < 1 or counts.years <= 0:
        raise ValueError(f"bad counts {counts}")
    rng = random.Random(seed)
    if progress:
        progress("loading the pool of shared records")
    pool = load_pool(str(Path(shared_dir).resolve()))
    if not pool.notes and counts.notes:
        raise RuntimeError("the pool has no notes")
    kinds = fact_kinds(counts.n_facts(), counts.notes > 0, rng)
    # Structured planted facts count toward ``events``; planted note sentences add no notes.
    n_base = max(1, counts.events - sum(1 for k in kinds if k != "note"))
    events = _base_events(counts, n_base, pool, rng, progress)
    if progress:
        progress("planting facts")
    events, plans = _plant(events, kinds, rng)
    first = next(e.start for e in events if e.start is not None)
    record = PatientRecord(
        patient_id="synthetic",
        format="medalign-xml",
        demographics=_demographics(first, rng),
        events=tuple(events),
        sources=(_SRC,),
    )
    if progress:
        progress("writing XML")
    xml = write_medalign_xml(record)
    if progress:
        progress("parsing it back")
    path = Path(record_file)
    parsed = parse_medalign(parse_xml(path, xml.encode("utf-8")), path=path)
    if progress:
        progress("locating and checking the planted facts")
    facts = _locate(parsed, plans, str(path))
    return xml, parsed, facts


def build_record(
    size_or_counts: str | Counts,
    seed: int = 0,
    shared_dir: str | Path = DEFAULT_SHARED,
    *,
    out_path: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[PatientRecord, list[PlantedFact]]:
    """Build a record and its planted facts. With ``out_path``, write the XML there; the
    returned record (and each fact's ``event_id``) is then exactly what
    ``ragehr.ehr.load_record(out_path)`` gives. Without it, they are computed for a file
    named ``synthetic.xml``."""
    xml, record, facts = build_xml(
        size_or_counts,
        seed,
        shared_dir,
        record_file=out_path if out_path is not None else "synthetic.xml",
        progress=progress,
    )
    if out_path is not None:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        Path(out_path).write_text(xml, encoding="utf-8")
    return record, facts


def write_facts(facts: Sequence[PlantedFact], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for fact in facts:
            f.write(json.dumps(fact.model_dump(mode="json"), ensure_ascii=False) + "\n")


def record_stats(record: PatientRecord) -> dict[str, object]:
    notes = sum(1 for e in record.events if e.kind is EventKind.NOTE)
    headers = sum(1 for e in record.events if e.kind is EventKind.ENCOUNTER and e.code is None and e.system is None)
    return {
        "tokens": estimate_tokens(render_record(record)),
        "notes": notes,
        "structured_events": len(record.events) - notes - headers,
        "visits": headers,
        "counts": record.counts(),
        "first": record.first_time.date().isoformat() if record.first_time else None,
        "last": record.last_time.date().isoformat() if record.last_time else None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Build a MedAlign-style XML record of a requested size from the shared "
        "records, with planted facts (written as JSON lines).",
    )
    ap.add_argument("out", type=Path, help="output XML file (keep it outside git, e.g. benchmarks/data/)")
    ap.add_argument("--size", choices=sorted(PRESETS), default="small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared data folder (default: %(default)s)")
    ap.add_argument("--visits", type=int, help="override the preset's visit count")
    ap.add_argument("--notes", type=int, help="override the preset's note count")
    ap.add_argument("--events", type=int, help="override the preset's structured event count")
    ap.add_argument("--years", type=float, help="override the preset's time span")
    ap.add_argument("--facts", type=int, help="override the preset's number of planted facts")
    ap.add_argument("--facts-out", type=Path, help="planted facts, JSON lines (default: OUT with .facts.jsonl)")
    ap.add_argument("--quiet", action="store_true", help="no progress messages")
    args = ap.parse_args(argv)

    base = PRESETS[args.size]
    counts = Counts(
        visits=args.visits if args.visits is not None else base.visits,
        notes=args.notes if args.notes is not None else base.notes,
        events=args.events if args.events is not None else base.events,
        years=args.years if args.years is not None else base.years,
        facts=args.facts if args.facts is not None else base.facts,
    )
    t0 = time.perf_counter()

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    try:
        record, facts = build_record(counts, args.seed, args.shared, out_path=args.out, progress=progress)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"make_record: {exc}", file=sys.stderr)
        return 2
    facts_out = args.facts_out or args.out.with_suffix(".facts.jsonl")
    write_facts(facts, facts_out)
    st = record_stats(record)
    dt = time.perf_counter() - t0
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB, patient {record.patient_id}) and "
        f"{facts_out} ({len(facts)} facts) in {dt:.1f}s\n"
        f"  estimated tokens: {st['tokens']:,}  notes: {st['notes']}  structured events: "
        f"{st['structured_events']:,}  visits: {st['visits']}  span: {st['first']} .. {st['last']}\n"
        f"  by kind: {st['counts']}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
