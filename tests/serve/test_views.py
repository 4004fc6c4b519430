"""The timeline and the answer's markup, checked against independent counts."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from ragehr.index.store import open_index
from ragehr.pipeline.grounding import check_grounding, find_dates, unsupported_spans
from ragehr.serve.timeline import LABEL_W, N_BINS, WIDTH, build_timeline, evidence_caption, render_svg
from ragehr.types import EventKind, EvidenceItem


def _item(marker, kind, start, text="x", end=None):
    return EvidenceItem(
        marker=marker, chunk_id=f"c{marker}", kind=kind, start=start, end=end, text=text, source="f.xml#/a", n_tokens=3
    )


def test_timeline_counts_every_dated_event_once(serve_index_dir):
    record = open_index(serve_index_dir, "sample").record
    tl = build_timeline(record)
    dated = [e for e in record.events if e.start is not None]
    want = {k: sum(1 for e in dated if e.kind is k) for k in EventKind}
    assert tl.counts == {k: n for k, n in want.items() if n}
    assert all(sum(tl.bins[k]) == tl.counts[k] and len(tl.bins[k]) == N_BINS for k in tl.kinds)
    assert tl.undated == len(record.events) - len(dated)
    assert datetime.fromtimestamp(tl.start, UTC) == min(e.start for e in dated)
    # the first and last events land in the first and last bins
    first = min(dated, key=lambda e: e.start)
    assert tl.bins[first.kind][0] >= 1
    last = max(dated, key=lambda e: e.start)
    assert tl.bins[last.kind][-1] >= 1


def test_evidence_marks_sit_at_their_dates(serve_index_dir):
    tl = build_timeline(open_index(serve_index_dir, "sample").record)
    t0 = datetime.fromtimestamp(tl.start, UTC)
    t1 = datetime.fromtimestamp(tl.end, UTC)
    mid = t0 + (t1 - t0) / 2
    items = [
        _item(1, EventKind.LAB, t0),
        _item(2, EventKind.NOTE, mid),
        _item(3, EventKind.VITAL, t1),
        _item(4, EventKind.LAB, None),
    ]
    svg = render_svg(tl, items, cited=[2])
    xs = {
        int(m): float(x)
        for m, x in re.findall(
            r'id="tl-ev-(\d)" data-marker="\d"><title>[^<]*</title><line class="ev-guide" x1="([\d.]+)"', svg
        )
    }
    plot_w = WIDTH - LABEL_W - 16
    assert xs[1] == LABEL_W and abs(xs[3] - (LABEL_W + plot_w)) < 0.1
    assert abs(xs[2] - (LABEL_W + plot_w / 2)) < 0.2
    assert 4 not in xs  # undated evidence has no place on a timeline
    assert 'class="ev cited" id="tl-ev-2"' in svg and 'class="ev" id="tl-ev-1"' in svg
    cap = evidence_caption(tl, items)
    assert cap.startswith(f"4 evidence pieces from {t0:%Y-%m-%d} to {t1:%Y-%m-%d}") and "1 undated" in cap


def test_a_record_of_one_day_and_none():
    from ragehr.types import PatientRecord

    empty = build_timeline(PatientRecord(patient_id="p", format="merged"))
    assert "No dated events." in render_svg(empty)


_answers = st.lists(
    st.sampled_from(
        [
            "BP 130",
            " on 2022-05-15",
            " [1]",
            " [7]",
            " 98.20",
            " 1,000",
            " 10/08/2018",
            " Oct 8, 2018",
            " 999",
            " 2031-02-03",
            " [1, 7]",
            " text",
            " -5",
            " 8480-6",
        ]
    ),
    max_size=10,
).map("".join)


@settings(max_examples=150, deadline=None)
@given(answer=_answers)
def test_unsupported_spans_are_exactly_the_unsupported_figures(answer):
    """Every marked span is an unsupported figure, and every unsupported figure is marked."""
    ev = [
        _item(1, EventKind.VITAL, datetime(2022, 5, 15, tzinfo=UTC), "2022-05-15 | vital | BP 130 | 98.2 | 8480-6"),
        _item(7, EventKind.NOTE, datetime(2018, 10, 8, tzinfo=UTC), "Seen on 10/08/2018. Fee 1000. -5"),
    ]
    g = check_grounding(answer, ev)
    spans = unsupported_spans(answer, g)
    marked = [answer[a:b] for a, b in spans]
    assert all(not re.search(r"\[\d", m) for m in marked)  # never a citation marker
    norm = set()
    for m in marked:
        ds = find_dates(m)
        norm.add(
            m
            if ds
            else m.replace(",", "").lstrip("+").rstrip("0").rstrip(".")
            if "." in m
            else m.replace(",", "").lstrip("+")
        )
    assert norm == set(g.unsupported), (answer, marked, g.unsupported)


def test_evidence_header_says_when_the_date_asked_has_no_evidence(serve_index_dir):
    from ragehr.index.search import load_patient_index
    from ragehr.llm.fake import FakeBackend
    from ragehr.pipeline.ask import ask
    from ragehr.serve.views import evidence_html

    idx = load_patient_index(serve_index_dir, "sample")
    r = ask(idx, "What was the NIHSS on March 3, 2020?", FakeBackend(answer="ok"), strategy="rag", budget=2048)
    assert r.context.time_fallback and "nearest dated evidence" in r.context.time_fallback
    assert 'class="warn time-fallback"' in evidence_html(r)
    r = ask(idx, "What was the NIHSS on October 8, 2018?", FakeBackend(answer="ok"), strategy="rag", budget=2048)
    assert r.context.time_fallback is None and "time-fallback" not in evidence_html(r)


def test_the_page_says_how_a_shorthand_question_was_read(serve_index_dir):
    from ragehr.index.search import load_patient_index
    from ragehr.llm.fake import FakeBackend
    from ragehr.pipeline.ask import ask
    from ragehr.serve.views import meta_html

    idx = load_patient_index(serve_index_dir, "sample")
    r = ask(idx, "latest HR?", FakeBackend(answer="ok"), strategy="rag", budget=2048)
    assert "read as: &quot;HR&quot; -&gt; Heart rate (LOINC 8867-4)" in meta_html(r)
    r = ask(idx, "latest heart rate?", FakeBackend(answer="ok"), strategy="rag", budget=2048)
    assert "read as" not in meta_html(r)  # the record's own words: nothing to say
