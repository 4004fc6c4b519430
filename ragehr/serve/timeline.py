"""The patient's timeline as an inline SVG: one row per kind of event, the record's events
binned over time (darker = more events), and the packed evidence drawn over it, so one sees
at a glance whether an answer drew on the last week or on ten years.

Rendered on the server from the opened index (computed once per index), no JavaScript needed;
the page's script only toggles classes on the evidence marks (``#tl-ev-<marker>``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape

from ragehr.types import EventKind, EvidenceItem, PatientRecord

N_BINS = 120
WIDTH = 1000
LABEL_W = 124
RIGHT_PAD = 16
ROW_H = 20
AXIS_H = 22
_PLOT_W = WIDTH - LABEL_W - RIGHT_PAD
_KIND_COLOR = {
    EventKind.NOTE: "#5b6abf",
    EventKind.CONDITION: "#b4553f",
    EventKind.LAB: "#2f8f7d",
    EventKind.VITAL: "#3e86c2",
    EventKind.MEDICATION: "#a1652c",
    EventKind.PROCEDURE: "#7b4fa0",
    EventKind.IMMUNIZATION: "#4f8a3a",
    EventKind.ALLERGY: "#b8447d",
    EventKind.OBSERVATION: "#5f7a8c",
    EventKind.ENCOUNTER: "#6d6d6d",
    EventKind.OTHER: "#8a8a8a",
}


@dataclass(frozen=True)
class Timeline:
    """A record binned by kind and time."""

    kinds: tuple[EventKind, ...]
    start: float
    """First event (POSIX seconds)."""
    end: float
    """Last event (POSIX seconds); equal to ``start`` for a one-day record."""
    bins: dict[EventKind, tuple[int, ...]]
    counts: dict[EventKind, int]
    undated: int

    @property
    def span(self) -> float:
        return max(self.end - self.start, 86400.0)

    def x(self, t: float) -> float:
        frac = (t - self.start) / self.span
        return LABEL_W + min(max(frac, 0.0), 1.0) * _PLOT_W


def build_timeline(record: PatientRecord, n_bins: int = N_BINS) -> Timeline:
    """Bin ``record``'s dated events per kind into ``n_bins`` equal time slices."""
    dated = [e for e in record.events if e.start is not None]
    if not dated:
        now = _ts(datetime.now(UTC))
        return Timeline((), now, now, {}, {}, len(record.events))
    times = [_ts(e.start) for e in dated]
    ends = [_ts(e.end or e.start) for e in dated]
    t0, t1 = min(times), max(max(ends), max(times))
    span = max(t1 - t0, 86400.0)
    kinds = tuple(k for k in EventKind if any(e.kind is k for e in dated))
    bins = {k: [0] * n_bins for k in kinds}
    counts = dict.fromkeys(kinds, 0)
    for e, t in zip(dated, times):
        i = min(int((t - t0) / span * n_bins), n_bins - 1)
        bins[e.kind][i] += 1
        counts[e.kind] += 1
    return Timeline(
        kinds=kinds,
        start=t0,
        end=t1,
        bins={k: tuple(v) for k, v in bins.items()},
        counts=counts,
        undated=len(record.events) - len(dated),
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_T_MIN = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds()
_T_MAX = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH).total_seconds()


def _ts(d: datetime | None) -> float:
    """POSIX seconds of ``d`` (naive times are taken as UTC, as the axis labels are), for any
    year 1..9999: no platform ``timestamp()`` limits. Only dated things are placed on the axis:
    ``None`` is a caller's error."""
    if d is None:
        raise ValueError("an undated event has no place on the timeline")
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    return (d - _EPOCH).total_seconds()


def _dt(t: float) -> datetime:
    """The UTC time of POSIX seconds ``t``, clamped to the calendar (years 1..9999)."""
    return _EPOCH + timedelta(seconds=min(max(t, _T_MIN), _T_MAX))


def _ticks(t0: float, t1: float) -> list[tuple[float, str]]:
    """Axis ticks on calendar boundaries: years (every 1, 2 or 5 times a power of ten, at
    most about ten ticks, over any span of the calendar) or months (1, 3, 6)."""
    a, b = _dt(t0), _dt(t1)
    months = (b.year - a.year) * 12 + b.month - a.month
    if months >= 24:
        years = b.year - a.year
        step = next(m * 10**k for k in range(5) for m in (1, 2, 5) if years / (m * 10**k) <= 10)
        first = (a.year // step + 1) * step
        return [(_ts(datetime(y, 1, 1, tzinfo=UTC)), str(y)) for y in range(first, b.year + 1, step)]
    step = next(s for s in (1, 3, 6, 12) if months / s <= 10)
    out = []
    y, m = a.year, a.month
    while True:
        m += 1
        if m > 12:
            y, m = y + 1, 1
        if y > 9999:
            break
        t = _ts(datetime(y, m, 1, tzinfo=UTC))
        if t > t1:
            break
        if (m - 1) % step == 0:
            out.append((t, f"{y}-{m:02d}"))
    return out


def _day(t: float) -> str:
    d = _dt(t)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}"


def _duration(seconds: float) -> str:
    days = seconds / 86400
    if days < 1:
        return "one day"
    if days < 60:
        return f"{round(days)} days"
    if days < 730:
        return f"{round(days / 30.44)} months"
    return f"{days / 365.25:.1f} years"


def evidence_caption(tl: Timeline, items: Sequence[EvidenceItem]) -> str:
    """One line (plain text) saying when the evidence is from, against the record's span."""
    times = [_ts(it.start) for it in items if it.start is not None]
    record = f"the record runs {_day(tl.start)} .. {_day(tl.end)} ({_duration(tl.end - tl.start)})"
    if not items:
        return f"No evidence packed; {record}."
    undated = len(items) - len(times)
    tail = f", {undated} undated" if undated else ""
    if not times:
        return f"{len(items)} evidence pieces, all undated; {record}."
    lo, hi = min(times), max(times)
    return f"{len(items)} evidence pieces from {_day(lo)} to {_day(hi)} ({_duration(hi - lo)}){tail}; {record}."


def render_svg(tl: Timeline, items: Sequence[EvidenceItem] = (), cited: Iterable[int] = ()) -> str:
    """The timeline as an ``<svg>`` element; ``items`` (packed evidence) are drawn as marks on
    their kind's row and on an ``evidence`` row, the cited ones emphasised."""
    cited = set(cited)
    kinds = list(tl.kinds)
    for it in items:
        if it.start is not None and it.kind not in kinds:
            kinds.append(it.kind)
    rows = {k: i for i, k in enumerate(kinds)}
    n_rows = len(kinds) + (1 if items else 0)
    height = AXIS_H + n_rows * ROW_H + 6
    out = [
        f'<svg class="timeline" id="timeline" viewBox="0 0 {WIDTH} {height}" width="100%" '
        f'role="img" aria-label="Timeline of the record by kind of event" xmlns="http://www.w3.org/2000/svg">'
    ]
    if not kinds:
        out.append(f'<text x="{LABEL_W}" y="{AXIS_H + 14}" class="tl-empty">No dated events.</text></svg>')
        return "".join(out)
    bottom = AXIS_H + n_rows * ROW_H
    # axis
    out.append('<g class="tl-axis">')
    for t, label in _ticks(tl.start, tl.end):
        x = tl.x(t)
        out.append(
            f'<line x1="{x:.1f}" y1="{AXIS_H - 4}" x2="{x:.1f}" y2="{bottom}" stroke="#dde1e6" stroke-width="1"/>'
            f'<text x="{x:.1f}" y="{AXIS_H - 8}" text-anchor="middle" font-size="11" fill="#55606e">{label}</text>'
        )
    out.append("</g>")
    # event density per kind
    bin_w = _PLOT_W / N_BINS if tl.bins else 0
    peak = max((c for v in tl.bins.values() for c in v), default=1) or 1
    for k in kinds:
        y = AXIS_H + rows[k] * ROW_H
        n = tl.counts.get(k, 0)
        color = _KIND_COLOR.get(k, "#888")
        out.append(
            f'<g class="tl-row" data-kind="{k.value}"><text x="{LABEL_W - 8}" y="{y + 14}" text-anchor="end" '
            f'font-size="12" fill="#27313c">{k.value} <tspan fill="#7a8694" font-size="10">{n}</tspan></text>'
            f'<rect x="{LABEL_W}" y="{y + 3}" width="{_PLOT_W}" height="{ROW_H - 6}" fill="#f4f6f8"/>'
        )
        for i, c in enumerate(tl.bins.get(k, ())):
            if not c:
                continue
            opacity = 0.25 + 0.75 * math.log1p(c) / math.log1p(peak)
            x = LABEL_W + i * bin_w
            t_bin = tl.start + i * tl.span / N_BINS
            out.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{bin_w + 0.3:.1f}" height="{ROW_H - 6}" fill="{color}" '
                f'fill-opacity="{opacity:.2f}"><title>{k.value}: {c} event{"s" if c != 1 else ""} from '
                f"{_day(t_bin)}</title></rect>"
            )
        out.append("</g>")
    # packed evidence
    if items:
        y_ev = AXIS_H + len(kinds) * ROW_H  # the row below the kinds' rows
        dated = [it for it in items if it.start is not None]
        out.append(
            f'<g class="tl-evidence"><text x="{LABEL_W - 8}" y="{y_ev + 14}" text-anchor="end" font-size="12" '
            f'font-weight="bold" fill="#b3261e">evidence</text>'
        )
        if dated:
            lo = min(tl.x(_ts(it.start)) for it in dated)
            hi = max(tl.x(_ts(it.end or it.start)) for it in dated)
            out.append(
                f'<rect class="tl-span" x="{lo - 2:.1f}" y="{y_ev + 4}" width="{hi - lo + 4:.1f}" height="{ROW_H - 8}" '
                f'fill="#b3261e" fill-opacity="0.12" stroke="#b3261e" stroke-opacity="0.4"/>'
            )
        for it in dated:
            x0 = tl.x(_ts(it.start))
            x1 = tl.x(_ts(it.end or it.start))
            y_k = AXIS_H + rows[it.kind] * ROW_H
            cls = "ev cited" if it.marker in cited else "ev"
            title = escape(f"[{it.marker}] {_day(_ts(it.start))} {it.kind.value}")
            out.append(
                f'<a href="#ev-{it.marker}" class="{cls}" id="tl-ev-{it.marker}" data-marker="{it.marker}">'
                f"<title>{title}</title>"
                f'<line class="ev-guide" x1="{x0:.1f}" y1="{AXIS_H}" x2="{x0:.1f}" y2="{bottom}" stroke="#b3261e" '
                f'stroke-opacity="0.18" stroke-width="1"/>'
                f'<rect class="ev-mark" x="{x0 - 2:.1f}" y="{y_k + 1}" width="{max(x1 - x0, 0) + 4:.1f}" '
                f'height="{ROW_H - 2}" rx="2" fill="none" stroke="#b3261e" stroke-width="1.5"/>'
                f'<circle class="ev-dot" cx="{x0:.1f}" cy="{y_ev + ROW_H / 2:.1f}" r="4" fill="#b3261e"/>'
                f"</a>"
            )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)
