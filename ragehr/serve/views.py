"""The page's HTML, rendered on the server. Everything that came from a record or a request
is escaped here; the only script is ``static/app.js`` (streaming, citation clicks)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from urllib.parse import quote

from ragehr import __version__
from ragehr.ehr.times import format_time
from ragehr.patterns import CITATION_MARKER, citation_numbers
from ragehr.pipeline.ask import AskResult
from ragehr.pipeline.grounding import unsupported_spans
from ragehr.types import EvidenceItem, IndexManifest

_KIND_ORDER = ("events", "chunks", "duplicates_removed")


def patient_url(patient_id: str) -> str:
    return "/patient?id=" + quote(patient_id, safe="")


def document(title: str, body: str, *, scripts: bool = True, styles: bool = True) -> str:
    script = '<script src="/static/app.js" defer></script>' if scripts else ""
    style = '<link rel="stylesheet" href="/static/app.css">' if styles else ""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f'<link rel="icon" href="data:,">{style}{script}</head>'
        f"<body>{body}</body></html>"
    )


def _header(inner: str = "") -> str:
    return (
        '<header class="top"><a class="brand" href="/">ragehr</a>'
        f'<span class="tagline">answers from the record, beside their evidence</span>{inner}</header>'
    )


def _day(iso: str | None) -> str:
    return iso[:10] if iso else "-"


def _kind_counts(m: IndexManifest) -> str:
    parts = [f"{escape(k)} {v:,}" for k, v in m.counts.items() if k not in _KIND_ORDER and v]
    return ", ".join(parts)


def patients_page(manifests: Sequence[IndexManifest], index_dir: str) -> str:
    if not manifests:
        body = (
            f'<p class="empty">No indexed patients in <code>{escape(index_dir)}</code>. Build one with '
            f"<code>ragehr index RECORD --index-dir {escape(index_dir)}</code>.</p>"
        )
    else:
        rows = "".join(
            f'<tr><td><a class="patient-link" href="{escape(patient_url(m.patient_id))}">{escape(m.patient_id)}</a></td>'
            f'<td class="span">{_day(m.first_time)} .. {_day(m.last_time)}</td>'
            f'<td class="num">{m.counts.get("events", 0):,}</td><td class="num">{m.counts.get("chunks", 0):,}</td>'
            f'<td class="kinds">{_kind_counts(m)}</td></tr>'
            for m in manifests
        )
        body = (
            f'<table class="patients" id="patients"><thead><tr><th>patient</th><th>time span</th>'
            f'<th class="num">events</th><th class="num">chunks</th><th>by kind</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
    return document(
        "ragehr: patients",
        _header() + f'<main class="narrow"><h1>Indexed patients</h1>{body}</main>' + _footer(),
        scripts=False,
    )


def _footer() -> str:
    return (
        f"<footer>ragehr {escape(__version__)}: answers are checked against their evidence, but verify "
        "them in the record before acting on them.</footer>"
    )


def _select(name: str, choices: Iterable[object], chosen: object, label: str) -> str:
    opts = "".join(
        f'<option value="{escape(str(c))}"{" selected" if str(c) == str(chosen) else ""}>{escape(str(c))}</option>'
        for c in choices
    )
    return f'<label>{escape(label)} <select name="{name}" id="{name}">{opts}</select></label>'


def patient_page(
    manifest: IndexManifest,
    patients: Sequence[str],
    timeline_svg: str,
    caption: str,
    *,
    strategies: Sequence[str],
    budgets: Sequence[int],
    backends: Sequence[str],
    chosen: dict[str, object],
    question: str = "",
    result: AskResult | None = None,
    error: str | None = None,
) -> str:
    pid = manifest.patient_id
    picker = (
        '<form class="picker" method="get" action="/patient">'
        + _select("id", patients, pid, "patient")
        + '<button type="submit">open</button></form>'
    )
    facts = (
        f'<p class="facts"><b>{escape(pid)}</b> &middot; {_day(manifest.first_time)} .. {_day(manifest.last_time)} '
        f"&middot; {manifest.counts.get('events', 0):,} events &middot; {manifest.counts.get('chunks', 0):,} chunks "
        f"&middot; {_kind_counts(manifest)}</p>"
    )
    budgets = list(budgets)
    if chosen.get("budget") not in budgets and chosen.get("budget") is not None:
        budgets = sorted({*budgets, int(str(chosen["budget"]))})
    form = (
        f'<form id="ask-form" class="ask" method="post" action="{escape(patient_url(pid))}">'
        f'<input type="hidden" name="patient_id" id="patient_id" value="{escape(pid)}">'
        f'<label for="question" class="qlabel">Question</label>'
        f'<textarea id="question" name="question" rows="2" maxlength="2000" required '
        f'placeholder="e.g. What was the most recent hemoglobin A1c?">{escape(question)}</textarea>'
        '<div class="choices">'
        + _select("strategy", strategies, chosen.get("strategy"), "strategy")
        + _select("budget", budgets, chosen.get("budget"), "budget (tokens)")
        + _select("backend", backends, chosen.get("backend"), "backend")
        + '<button type="submit" id="ask-button">Ask</button></div></form>'
    )
    answer = answer_html(result) if result else ""
    status = meta_html(result) if result else ""
    evidence = (
        evidence_html(result) if result else '<p class="hint">The evidence packed for the question appears here.</p>'
    )
    err = (
        f'<div class="error" id="error" role="alert">{escape(error)}</div>'
        if error
        else '<div class="error" id="error" role="alert" hidden></div>'
    )
    body = (
        _header(picker)
        + '<main class="wide">'
        + facts
        + f'<section class="tl-wrap"><h2>Timeline</h2><div id="timeline-box">{timeline_svg}</div>'
        f'<p class="caption" id="tl-caption">{escape(caption)}</p></section>'
        + '<div class="cols"><section class="left">'
        + form
        + err
        + f'<h2>Answer</h2><div id="answer" class="answer" aria-live="polite">{answer}</div>'
        f'<div id="meta" class="meta">{status}</div></section>'
        + f'<section class="right"><h2>Evidence</h2><div id="evidence">{evidence}</div></section></div>'
        + "</main>"
        + _footer()
    )
    return document(f"ragehr: {pid}", body)


def _cite_link(n: int, known: set[int]) -> str:
    if n in known:
        return f'<a class="cite" href="#ev-{n}" data-marker="{n}">[{n}]</a>'
    return f'<span class="cite unknown" title="cites [{n}], which is not in the evidence">[{n}]</span>'


def _computed_head(r: AskResult) -> str:
    """A computed answer is marked as such, with what was computed (or why it declined)."""
    by = getattr(r, "answered_by", "generated")
    reason = getattr(r, "answer_reason", None) or ""
    if by != "computed":
        return ""
    if reason.startswith("declined"):
        return f'<p class="computed-badge declined">Not computed from the record: {escape(reason)}</p>'
    return f'<p class="computed-badge">Computed from the record\'s structured events: {escape(reason)}</p>'


def _computed_chart(r: AskResult) -> str:
    """A series answer's chart (inline SVG, the cited points highlighted)."""
    comp = getattr(r, "computed", None)
    if comp is None:
        return ""
    from ragehr.answers.chart import series_svg

    svg = series_svg(comp.series(), comp.highlighted())
    return f'<figure class="answer-chart">{svg}</figure>' if svg else ""


def answer_html(r: AskResult) -> str:
    """The answer's text, escaped, with ``[n]`` citations linked to their evidence and the
    unsupported numbers and dates marked."""
    text = r.generation.text.strip()
    known = {it.marker for it in r.context.packed.items}
    marks = [(a, b, "u") for a, b in unsupported_spans(text, r.grounding)]
    marks += [(m.start(), m.end(), "c") for m in CITATION_MARKER.finditer(text)]
    marks.sort()
    out, pos = [], 0
    for a, b, what in marks:
        if a < pos:
            continue
        out.append(escape(text[pos:a]))
        piece = text[a:b]
        if what == "u":
            out.append(
                f'<mark class="unsupported" title="not found in the cited evidence: do not rely on it">'
                f"{escape(piece)}</mark>"
            )
        else:
            nums = citation_numbers(piece)
            out.append(", ".join(_cite_link(n, known) for n in nums))
        pos = b
    out.append(escape(text[pos:]))
    html = f'<div class="answer-text">{"".join(out)}</div>'
    html = _computed_head(r) + html + _computed_chart(r)
    g = r.grounding
    if g.unsupported:
        html += (
            '<p class="warn unsupported-note"><b>UNSUPPORTED:</b> '
            + ", ".join(f'<mark class="unsupported">{escape(u)}</mark>' for u in g.unsupported)
            + " (not found in the cited evidence; do not rely on them)</p>"
        )
    if g.unknown_citations:
        html += (
            '<p class="warn">The answer cites '
            + ", ".join(f"[{n}]" for n in g.unknown_citations)
            + ", which are not in the evidence.</p>"
        )
    if not g.cited and r.context.packed.items:
        html += '<p class="warn">The answer cites no evidence.</p>'
    return html


def meta_html(r: AskResult) -> str:
    p = r.context.packed
    total = sum(r.timings.values())
    phrase = f" &middot; time in the question: {escape(repr(r.context.time_phrase))}" if r.context.time_phrase else ""
    read = [m.describe() for m in getattr(r.context, "concepts", ()) if m.via not in ("name", "code")]
    if read:
        phrase += " &middot; read as: " + escape("; ".join(read[:6]))
    return (
        f"{escape(r.generation.backend)}/{escape(r.generation.model)} &middot; {escape(r.context.strategy)}"
        f" &middot; {p.used_tokens:,}/{p.budget_tokens:,} evidence tokens &middot; {r.prompt_tokens:,} prompt tokens"
        f"{' &middot; cached' if r.generation.cached else ''} &middot; {total * 1000:.0f} ms{phrase}"
    )


def _short_source(source: str) -> str:
    """A source locator with the file's folder left out (the full locator is the tooltip)."""
    file, sep, where = source.partition("#")
    return file.replace("\\", "/").rsplit("/", 1)[-1] + sep + where


def evidence_html(
    r: AskResult | None = None, items: Sequence[EvidenceItem] | None = None, cited: Iterable[int] = ()
) -> str:
    """The packed evidence, cited pieces first-class: date, kind, text, source locator."""
    if r is not None:
        items = r.context.packed.items
        cited = r.grounding.cited
    items = items or ()
    cited = set(cited)
    if not items:
        return '<p class="hint">No evidence was packed for this question.</p>'
    lis = []
    for it in items:
        cls = "evidence cited" if it.marker in cited else "evidence"
        tag = '<span class="tag">cited</span>' if it.marker in cited else ""
        lis.append(
            f'<li id="ev-{it.marker}" class="{cls}" data-marker="{it.marker}">'
            f'<div class="ev-head"><a class="marker" href="#tl-ev-{it.marker}" data-marker="{it.marker}">[{it.marker}]</a>'
            f' <span class="date">{escape(format_time(it.start))}</span> <span class="kind">{escape(it.kind.value)}</span>'
            f' {tag}<span class="tokens">{it.n_tokens} tok</span></div>'
            f'<pre class="ev-text">{escape(it.text)}</pre>'
            f'<div class="source" title="{escape(it.source)}">{escape(_short_source(it.source))}</div></li>'
        )
    n_cited = len(cited & {it.marker for it in items})
    head = f'<p class="ev-count">{len(items)} pieces packed, {n_cited} cited.</p>'
    if r is not None and r.context.time_fallback:
        head += f'<p class="warn time-fallback">{escape(r.context.time_fallback)}</p>'
    return head + '<ol class="evidence-list">' + "".join(lis) + "</ol>"


def login_page(error: str | None = None, next_url: str = "/") -> str:
    err = f'<p class="error">{escape(error)}</p>' if error else ""
    body = (
        "<main><h1>ragehr</h1><p>This server needs its access token.</p>"
        f'{err}<form method="post" action="/login"><input type="hidden" name="next" value="{escape(next_url)}">'
        '<label>token <input type="password" name="token" autocomplete="current-password" autofocus></label> '
        '<button type="submit">Sign in</button></form></main>'
    )
    # no stylesheet: every other path, /static included, needs the token
    return document("ragehr: sign in", body, scripts=False, styles=False)


def error_page(message: str, status: int) -> str:
    body = (
        _header() + f'<main class="narrow"><h1>{status}</h1><div class="error" role="alert">{escape(message)}</div>'
        '<p><a href="/">All patients</a></p></main>'
    )
    return document("ragehr: error", body, scripts=False)
