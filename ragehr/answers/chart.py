"""A computed series answer as a small chart: values over time, the cited points highlighted.

:func:`series_svg` is a pure function returning an SVG string (presentation attributes only,
no script, no style element, no external reference: it can be inlined in a page with a strict
Content-Security-Policy). :func:`write_plot` writes it to a file, as SVG or, for a ``.png``
name, drawn with matplotlib (the ``eval`` extra). Both the web page and ``ask --plot`` use
this module, so it lives below them and imports neither.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from html import escape
from pathlib import Path

from ragehr.ehr.render import format_value
from ragehr.errors import ConfigError
from ragehr.types import Event

__all__ = ["Series", "series_svg", "write_plot"]

Series = tuple[str, "str | None", Sequence[Event]]
"""(label, unit, numeric events oldest first): :meth:`ragehr.answers.Computed.series`."""

_W, _PANEL_H, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 480, 150, 56, 16, 26, 30
_LINE, _DOT, _CITED, _AXIS, _TEXT = "#7a8ca3", "#7a8ca3", "#c0392b", "#b8c2cc", "#333333"


def _fmt(x: float) -> str:
    return format_value(float(f"{x:.4g}"))


def _panel(label: str, unit: str | None, evs: Sequence[Event], cited: Collection[str], top: float) -> list[str]:
    ts = [e.start.timestamp() for e in evs if e.start is not None]
    vs = [float(e.value) for e in evs]  # type: ignore[arg-type]
    t0, t1 = min(ts), max(ts)
    v0, v1 = min(vs), max(vs)
    if v1 == v0:
        v0, v1 = v0 - 1, v1 + 1
    x0, x1 = _PAD_L, _W - _PAD_R
    y0, y1 = top + _PAD_T, top + _PANEL_H - _PAD_B

    def x(t: float) -> float:
        return x0 if t1 == t0 else x0 + (t - t0) / (t1 - t0) * (x1 - x0)

    def y(v: float) -> float:
        return y1 - (v - v0) / (v1 - v0) * (y1 - y0)

    title = escape(label + (f" ({unit})" if unit else ""))
    out = [
        f'<text x="{x0}" y="{top + 16:.0f}" font-size="12" font-family="sans-serif" fill="{_TEXT}">{title}</text>',
        f'<line x1="{x0}" y1="{y1:.1f}" x2="{x1}" y2="{y1:.1f}" stroke="{_AXIS}" stroke-width="1"/>',
        f'<line x1="{x0}" y1="{y0:.1f}" x2="{x0}" y2="{y1:.1f}" stroke="{_AXIS}" stroke-width="1"/>',
        f'<text x="{x0 - 4}" y="{y0 + 4:.1f}" font-size="10" font-family="sans-serif" text-anchor="end" '
        f'fill="{_TEXT}">{escape(_fmt(v1))}</text>',
        f'<text x="{x0 - 4}" y="{y1:.1f}" font-size="10" font-family="sans-serif" text-anchor="end" '
        f'fill="{_TEXT}">{escape(_fmt(v0))}</text>',
        f'<text x="{x0}" y="{y1 + 14:.1f}" font-size="10" font-family="sans-serif" fill="{_TEXT}">'
        f"{evs[0].start.date().isoformat()}</text>",  # type: ignore[union-attr]
        f'<text x="{x1}" y="{y1 + 14:.1f}" font-size="10" font-family="sans-serif" text-anchor="end" '
        f'fill="{_TEXT}">{evs[-1].start.date().isoformat()}</text>',  # type: ignore[union-attr]
    ]
    pts = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(ts, vs))
    out.append(f'<polyline points="{pts}" fill="none" stroke="{_LINE}" stroke-width="1.2"/>')
    later: list[str] = []
    for e, t, v in zip(evs, ts, vs):
        hit = e.event_id in cited
        tip = escape(f"{e.start.date().isoformat()}: {format_value(e.value)}" + (f" {e.unit}" if e.unit else ""))  # type: ignore[union-attr]
        cls = ' class="cited"' if hit else ""
        dot = (
            f'<circle cx="{x(t):.1f}" cy="{y(v):.1f}" r="{4.5 if hit else 2.5}" fill="{_CITED if hit else _DOT}"'
            f"{cls}><title>{tip}</title></circle>"
        )
        (later if hit else out).append(dot)
    return out + later


def series_svg(series: Sequence[Series], cited: Collection[str] = ()) -> str:
    """An SVG chart with one panel per series (label, unit, numeric events oldest first);
    events whose id is in ``cited`` are drawn larger and in red. Empty string when no series
    has two dated numeric values."""
    panels = [
        (label, unit, [e for e in evs if e.start is not None and isinstance(e.value, (int, float))])
        for label, unit, evs in series
    ]
    panels = [p for p in panels if len(p[2]) >= 2]
    if not panels:
        return ""
    h = _PANEL_H * len(panels)
    body: list[str] = []
    for i, (label, unit, evs) in enumerate(panels):
        body += _panel(label, unit, evs, set(cited), i * _PANEL_H)
    label = escape("; ".join(p[0] for p in panels))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{h}" viewBox="0 0 {_W} {h}" role="img" '
        f'aria-label="{label} over time">' + "".join(body) + "</svg>"
    )


def write_plot(path: str | Path, series: Sequence[Series], cited: Collection[str] = ()) -> Path:
    """Write the chart to ``path``: SVG for ``.svg``, PNG (matplotlib, the ``eval`` extra) for
    ``.png``. Raises :class:`ConfigError` for another suffix or when there is no series."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".svg", ".png"):
        raise ConfigError(f"--plot writes .svg or .png, not {path.name!r}")
    svg = series_svg(series, cited)
    if not svg:
        raise ConfigError("the answer has no series of two or more values to plot")
    if suffix == ".svg":
        path.write_text(svg + "\n", encoding="utf-8")
        return path
    from ragehr.extras import require

    matplotlib = require("matplotlib", needed_for="--plot FILE.png")
    matplotlib.use("Agg")
    plt = require("matplotlib.pyplot", needed_for="--plot FILE.png")
    panels = [(lb, u, [e for e in evs if e.start is not None]) for lb, u, evs in series if len(evs) >= 2]
    fig, axes = plt.subplots(len(panels), 1, figsize=(6, 2.2 * len(panels)), squeeze=False)
    for ax, (label, unit, evs) in zip(axes[:, 0], panels):
        xs = [e.start for e in evs]
        ys = [float(e.value) for e in evs]  # type: ignore[arg-type]
        ax.plot(xs, ys, color=_LINE, marker="o", markersize=3, linewidth=1)
        hit = [(e.start, float(e.value)) for e in evs if e.event_id in set(cited)]  # type: ignore[arg-type]
        if hit:
            ax.scatter([h[0] for h in hit], [h[1] for h in hit], color=_CITED, s=36, zorder=3)
        ax.set_title(label + (f" ({unit})" if unit else ""), fontsize=9)
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_answer(computed: object | None, path: str | Path) -> Path:
    """Write a computed answer's chart (``ask --plot`` and ``Patient.ask(plot=...)``): its
    series with the cited points highlighted. An answer without a series of values (not
    computed, or a single latest/first value) is a :class:`ConfigError` and nothing is written."""
    series = getattr(computed, "series", None)
    highlighted = getattr(computed, "highlighted", None)
    rows = series() if callable(series) and callable(highlighted) else []
    if not rows:
        raise ConfigError(
            "--plot: this answer has no series of values to plot (ask for a trend, a count or the values in a period)"
        )
    return write_plot(path, rows, highlighted())  # type: ignore[misc]
