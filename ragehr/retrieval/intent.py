"""What a question asks of time: its intent, its time window, and what it is about.

Intents (``QuestionPlan.intent``):

``point``
    A value at a date or in a closed period ("potassium on May 5, 2019", "A1c in March 2020"):
    evidence inside the window first; when nothing relevant falls inside, the nearest dated
    relevant evidence (said in ``fallback``).
``latest``
    "most recent / latest / last / current / newest X": the newest evidence about X first.
``first``
    "first / earliest / initial / when was X diagnosed / started": the oldest evidence about X.
``series``
    Counting and trends ("how many times", "highest", "trend of", "since <date>", "all"):
    the whole series, per-concept series chunks first.
``current``
    State at the record's end ("currently on", "active medications", "current problems"), or
    as of a date ("which medications was she taking on 2019-03-02"): the newest medication,
    problem and note evidence up to then first.
``none``
    Plain relevance (a time window, if any, is still a filter).

``concept`` is the question without its time phrase and intent words: what the evidence must
be about. ``event_anchor`` holds a window anchored on a clinical event ("since her stroke",
"after the surgery", "before starting metformin"), which retrieval resolves to the event's
first date in the record. Pure functions over strings and datetimes; no index, no I/O. The retrieval side
that acts on a plan is :func:`ragehr.index.search.search`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal

from ragehr.retrieval.timefilter import TimeWindow, parse_time_expression, strip_phrase

Intent = Literal["point", "latest", "first", "series", "current", "none"]
INTENTS: tuple[str, ...] = ("point", "latest", "first", "series", "current", "none")

_STATE_NOUNS = (
    r"(?:medications?|meds|medicines?|drugs?|prescriptions?|problems?|problem list|diagnos[ie]s|"
    r"conditions?|allerg(?:y|ies)|therap(?:y|ies)|regimen|treatments?|anticoagula\w*|insulin)"
)
_STATE_LIST = re.compile(r"\b" + _STATE_NOUNS + r"\b", re.I)
_CURRENT = re.compile(
    r"\b(?:currently|presently|at present|right now|as of now|these days|"
    r"still\s+(?:on|taking|active|has|have|prescribed)|"
    r"(?:is|are)\s+(?:she|he|they|the patient|patient)\s+(?:on|taking)\b|"
    r"(?:current|active|ongoing|present)\s+(?:\w+\s+){0,2}?"
    + _STATE_NOUNS
    + r"|"
    + _STATE_NOUNS
    + r"\s+(?:is|are)\s+(?:she|he|they|the patient)\s+(?:now\s+)?(?:on|taking))",
    re.I,
)
_SERIES = re.compile(
    r"\b(?:how many(?: times)?|how often|number of (?:times|measurements|readings|results|values)|"
    r"count of|highest|lowest|maximum|minimum|peak|max|min|trends?|trending|over time|"
    r"changed?|changes|changing|progress(?:ed|ion)?|history of|all (?:the |of (?:the|her|his) )?"
    r"(?:values|readings|results|measurements)|every|each time|average|"
    # "mean" asks for a series, except inside a measurement's own name (Mean Arterial
    # Pressure, MCV "Entitic mean volume", mean platelet/cell/corpuscular volume)
    r"mean(?!\s+(?:arterial|corpuscular|cell|platelet|blood\s+pressure|volume|hemoglobin|hgb|MAP)\b)|range of|"
    r"summari[sz]e|improv(?:ed|ing)|worsen(?:ed|ing)|increas(?:ed|ing)|decreas(?:ed|ing))\b",
    re.I,
)
_FIRST = re.compile(
    r"\b(?:first(?:\s+(?:time|recorded|documented|noted|measured))?|earliest|initial(?:ly)?|"
    r"originally|onset|baseline|"
    r"when\s+(?:was|were|did)\b(?:\s+\S+){0,8}?\s+(?:diagnosed|started|begun|began|begin|start|"
    r"prescribed|first|identified|detected|found|noted))",
    re.I,
)
_LATEST = re.compile(
    r"\b(?:most\s+recent(?:ly)?|latest|newest|last(?!\s+(?:\d+|one|two|three|four|five|six|seven|"
    r"eight|nine|ten|eleven|twelve|eighteen|twenty-four|a|an|few|several)\s)(?!\s+(?:hour|day|"
    r"week|month|year|mon|tue|wed|thu|fri|sat|sun)\w*\b)|recent(?:ly)?|current(?:ly)?|now|"
    r"up to date|today's)\b",
    re.I,
)
_FIRST_WORDS = re.compile(
    r"\b(?:first(?:\s+(?:time|recorded|documented|noted|measured))?|earliest|initial(?:ly)?|originally|"
    r"onset|baseline|diagnosed|started|begun|began|begin|start|prescribed|identified|detected|found)\b",
    re.I,
)
_CURRENT_WORDS = re.compile(
    r"\b(?:currently|presently|at present|right now|as of now|these days|still|active|ongoing|present|"
    r"current|taking)\b",
    re.I,
)
_GENERIC = re.compile(
    r"\b(?:what|which|when|how|was|were|is|are|the|a|an|patient'?s?|pt'?s?|her|his|their|value|values|"
    r"level|levels|result|results|reading|readings|measurement|measurements|measured|test|tests|"
    r"recorded|documented|noted|record|chart|date|time|times|did|does|do|has|have|had|she|he|"
    r"they|of|on|in|for|with|there|been|show|shows|tell|me|give|please|value\(s\))\b",
    re.I,
)


@dataclass(frozen=True)
class QuestionPlan:
    """How a question should be retrieved: intent, time window and the concept text.

    Compatible with the old ``TimeWindow`` return of ``search`` (``since``, ``until``,
    ``phrase``, ``recency``, ``is_filter``)."""

    intent: str
    window: TimeWindow
    concept: str
    """The question without the time phrase and intent words (falls back to the question)."""
    cue: str | None = None
    """The words that set the intent."""
    event_anchor: tuple[str, str] | None = None
    """("since" | "before", words) for a window anchored on a clinical event ("since her
    stroke", "after the surgery", "before starting metformin"): retrieval finds the event's
    first date in the record and sets the window from it."""
    state_list: bool = False
    """The question asks for a list of state (medications, problems, allergies): for
    ``current`` the latest note is read whole, since its list need not use the question's
    words."""
    fallback: str | None = None
    """Set by retrieval when nothing relevant fell inside the window and the nearest dated
    evidence was used instead: a short sentence saying so."""
    concepts: tuple = ()
    """Set by retrieval: how the concept text was read against the record
    (:class:`ragehr.retrieval.concepts.ConceptMatch`, own names and vocabularies)."""
    expansion: str = ""
    """Set by retrieval: the words a vocabulary added to the query (the heads of the record's
    names of concepts the question named by abbreviation, lay term or brand)."""

    @property
    def since(self) -> datetime | None:
        return self.window.since

    @property
    def until(self) -> datetime | None:
        return self.window.until

    @property
    def phrase(self) -> str | None:
        return self.window.phrase

    @property
    def recency(self) -> bool:
        return self.intent in ("latest", "current")

    @property
    def is_filter(self) -> bool:
        return self.window.is_filter

    def with_fallback(self, note: str) -> QuestionPlan:
        return replace(self, fallback=note)

    def to_json(self) -> dict:
        w = self.window
        return {
            "intent": self.intent,
            "cue": self.cue,
            "concept": self.concept,
            "time_phrase": w.phrase,
            "since": w.since.isoformat() if w.since else None,
            "until": w.until.isoformat() if w.until else None,
            "fallback": self.fallback,
            "concepts": [m.to_json() for m in self.concepts],
            "expansion": self.expansion or None,
        }


def _remove(text: str, span: tuple[int, int] | None) -> str:
    if span is None:
        return text
    return text[: span[0]] + " " + text[span[1] :]


_EVENT_ANCHOR = re.compile(
    r"\b(?P<dir>since|after|following|before|prior\s+to)\s+(?:(?:her|his|their|the|a|an|this|that|"
    r"starting|start(?:ing)?\s+of|beginning|initiation\s+of|being\s+(?:diagnosed\s+with|started\s+on))\s+)+"
    r"(?P<what>[A-Za-z][\w'-]*(?:\s+(?!and\b|or\b|was\b|is\b|were\b|did\b)[A-Za-z][\w'-]*){0,3})",
    re.I,
)


def event_anchor(question: str) -> tuple[str, str, tuple[int, int]] | None:
    """A window anchored on a clinical event: ("since" | "before", the event's words, span).
    Only phrases with a determiner or "starting" ("since her stroke", "after the surgery",
    "before starting metformin"), so "after meals" or "before 2019" are not anchors."""
    m = _EVENT_ANCHOR.search(question)
    if not m:
        return None
    direction = "before" if m["dir"].lower().startswith(("before", "prior")) else "since"
    what = re.sub(r"[?.!,;:]+$", "", m["what"]).strip()
    return (direction, what, m.span()) if what else None


def concept_text(question: str) -> str:
    """The content words of a question: intent words, question words and generic words
    ("value", "level", "patient's") removed; the question itself when nothing is left."""
    q = question
    for rx in (_CURRENT_WORDS, _SERIES, _FIRST_WORDS, _LATEST):
        q = rx.sub(" ", q)
    q = _GENERIC.sub(" ", q)
    q = re.sub(r"[?!.,;:]+(?=\s|$)", " ", q)
    out = " ".join(q.split())
    return out or " ".join(question.split())


def plan_question(
    question: str,
    anchor: datetime | None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    use_question_time: bool = True,
    day_first: bool = False,
) -> QuestionPlan:
    """Read a question's intent, time window and concept. Explicit ``since``/``until`` win
    over time read from the question (the question's time phrase is then left in the text).
    ``anchor`` is the record's last event (for relative time); ``day_first`` reads numeric
    dates as day/month/year (``retrieval.day_first`` in the configuration). Total: any string
    gives a plan, never an exception."""
    if since is not None or until is not None:
        window = TimeWindow(since=since, until=until)
    elif use_question_time:
        window = parse_time_expression(question, anchor, day_first=day_first)
    else:
        window = TimeWindow()
    rest = strip_phrase(question, window) if window.span else question
    anchored = None
    if use_question_time and not window.is_filter:
        found = event_anchor(rest)
        if found is not None:
            anchored = (found[0], found[1])
            rest = " ".join((rest[: found[2][0]] + " " + rest[found[2][1] :]).split())
    intent: str = "none"
    cue = None
    for name, rx in (("current", _CURRENT), ("series", _SERIES), ("first", _FIRST), ("latest", _LATEST)):
        m = rx.search(rest)
        if m:
            intent, cue = name, m.group(0)
            break
    if intent == "none" and window.since is not None and window.until is None and window.span is not None:
        intent, cue = "series", window.phrase  # "since <date>": everything from then on
    if intent == "none" and window.is_point:
        intent, cue = "point", window.phrase
    if intent == "latest" and window.is_point and cue and cue.lower() in ("current", "currently", "now"):
        intent = "point"
    state_list = bool(_STATE_LIST.search(rest))
    if intent == "point" and state_list and window.until is not None:
        # "Which medications was she taking on 2019-03-02?": the state as of that day, which
        # orders started before it hold; not only what is dated that day.
        intent, cue = "current", window.phrase
        window = replace(window, since=None)
    return QuestionPlan(
        intent=intent,
        window=window,
        concept=concept_text(rest),
        cue=cue,
        state_list=state_list,
        event_anchor=anchored,
    )
