"""Questions in clinicians' shorthand beside the same questions in the record's own words.

Reads the chronic records and questions of ``benchmarks/make_chronic.py`` (plus
``first_medication_date`` questions generated here, so brand names are asked too) and writes
a **shorthand set**: each question whose concept the record names once is rewritten with the
form ``benchmarks/shorthand_forms.tsv`` gives for that name (abbreviations, lab shorthand,
lay terms, brand names, each row from a published list, chosen before the first run and
none of them issue 21's examples). Questions whose concept has no row, whose row matches
two names of the record, or whose form is part of another name of the record, are left out
of both sets' paired figures (counted).

For the plain and the shorthand wording of the same questions, by question type:

- evidence recall of ``rag`` (hybrid) at 512 / 2k / 8k tokens (``bench_time.found``: the
  gold event's dated line with its value is in the packed text);
- recall@10 of BM25, dense and hybrid.

Also, with ``--timing``: the cost of reading a question's concepts
(:func:`ragehr.retrieval.concepts.resolve`: p50/p95 per question) and of a hybrid ``search``
with and without the vocabularies, interleaved question by question in this run (so load on
the machine hits both alike), and the one-time load of the vocabularies in a fresh process.

Usage::

    python benchmarks/make_chronic.py benchmarks/data/chronic --n 3
    python benchmarks/bench_vocab.py benchmarks/data/chronic/chronic_*.xml --embedder static \\
        --out benchmarks/results/vocab_static.json --expect
    python benchmarks/bench_vocab.py --combine benchmarks/results/vocab_static.json \\
        --baseline benchmarks/results/vocab_static_main.json --gap benchmarks/results/vocab_minilm.json --expect

``--baseline``: a run of this script against an older checkout (``PYTHONPATH=/path/to/main``):
no plain-set figure may be lower. ``--gap``: a run with the other embedder: the shorthand
rag@2k and hybrid recall@10 must be within 0.02.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import statistics
import subprocess
import sys
import time
import unicodedata
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_time import found, gold_lines

HERE = Path(__file__).resolve().parent
FORMS = HERE / "shorthand_forms.tsv"
BUDGETS = (512, 2048, 8192)
RETRIEVERS = ("bm25", "dense", "hybrid")
_KINDS = ("lab", "vital", "condition", "medication")


def read_forms(path: Path = FORMS) -> list[dict]:
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln and not ln.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    for r in rows:
        r["rx"] = re.compile(r["pattern"], re.I)
    return rows


def _clean(s: str) -> str:
    return "".join(ch for ch in s if unicodedata.category(ch) != "Cf").casefold()


def record_names(record) -> set[str]:
    from ragehr.eval.generated import display_name

    return {_clean(display_name(e)) for e in record.events if e.kind.value in _KINDS and display_name(e)}


def rewrite(question: str, names: set[str], forms: list[dict]) -> tuple[str, dict] | None:
    """The question with its concept's name replaced by its shorthand form, and the row used;
    None when no row applies or the row's pattern matches two of the record's names."""
    q = _clean(question)
    inside = [n for n in names if n and n in q]
    if not inside:
        return None
    name = max(inside, key=len)
    for row in forms:
        if row["rx"].search(name):
            if sum(1 for n in names if row["rx"].search(n)) != 1:
                return None
            form = re.compile(rf"(?<![a-z0-9]){re.escape(row['form'].casefold())}(?![a-z0-9])")
            if any(form.search(n) for n in names if n != name):
                return None  # the form is also another name of the record ("Lasix 40mg")
            i = q.index(name)
            plain = "".join(ch for ch in question if unicodedata.category(ch) != "Cf")
            return plain[:i] + row["form"] + plain[i + len(name) :], row
    return None


def questions(path: Path, record) -> list:
    from ragehr.eval.generated import generate_qa, read_jsonl

    qa = read_jsonl(path.with_suffix(".qa.jsonl"))
    return qa + generate_qa(record, qtypes=["first_medication_date"], per_type=12)


def run(args) -> tuple[list[dict], list[dict], dict]:
    from ragehr.config import IndexConfig
    from ragehr.embeddings import QueryLRU, load_embedder
    from ragehr.embeddings.static import default_models_dir
    from ragehr.index.build import build_indexes
    from ragehr.index.search import load_patient_index, search
    from ragehr.pipeline.context import build_context
    from ragehr.tokens import EstimateCounter

    work = args.work / f"idx-{args.embedder}"
    embedder = QueryLRU(load_embedder(args.embedder, models_dir=default_models_dir(work)))
    counter = EstimateCounter()
    forms = read_forms()
    rows: list[dict] = []
    meta = []
    timing: dict = {}
    for path in args.records:
        [s] = build_indexes(
            [path], work, IndexConfig(embedder=args.embedder), cache_dir=args.work / "cache", embedder=embedder
        )
        if s.status == "failed":
            raise SystemExit(f"index build failed: {s.message}")
        idx = load_patient_index(work, s.patient_id, embedder=embedder)
        record = idx.stored.record
        lines = gold_lines(record)
        names = record_names(record)
        qa = questions(path, record)
        n_rw = 0
        for q in qa:
            gold = tuple(g for g in q.evidence_event_ids if g in lines)
            if not gold:
                continue
            rw = rewrite(q.question, names, forms)
            n_rw += bool(rw)
            if args.timing_only:
                for which, text in (("plain", q.question), ("shorthand", rw[0] if rw else None)):
                    if rw:
                        rows.append(
                            {"record": path.name, "set": which, "paired": True, "qid": q.item_id, "question": text}
                        )
                continue
            sets = [("plain", q.question)] + ([("shorthand", rw[0])] if rw else [])
            for which, text in sets:
                row = {
                    "record": path.name,
                    "qtype": q.qtype,
                    "set": which,
                    "paired": bool(rw),
                    "qid": q.item_id,
                    "question": text,
                    "form": rw[1]["form"] if rw else None,
                    "n_gold": len(gold),
                }
                for retr in RETRIEVERS:
                    hits, plan = search(idx, text, k=10, retriever=retr)
                    ids = {e for h in hits for e in h.chunk.event_ids}
                    row[f"recall@10/{retr}"] = sum(1 for g in gold if g in ids) / len(gold)
                row["read_as"] = [m.describe() for m in getattr(plan, "concepts", ())][:4]
                for b in BUDGETS:
                    ctx = build_context(idx, text, strategy="rag", budget_tokens=b, counter=counter)
                    row[f"rag@{b}"] = found(ctx.packed.items, gold, lines)
                rows.append(row)
        meta.append({"record": str(path), "chunks": len(idx.stored.chunks), "questions": len(qa), "rewritten": n_rw})
        print(f"{path.name}: {len(idx.stored.chunks)} chunks, {len(qa)} questions, {n_rw} rewritten", file=sys.stderr)
        if args.timing:
            mine = [r for r in rows if r["record"] == path.name and r["paired"]]
            plain = {r["qid"]: r["question"] for r in mine if r["set"] == "plain"}
            pairs = [(plain[r["qid"]], r["question"]) for r in mine if r["set"] == "shorthand"]
            timing[path.name] = time_it(idx, pairs)
            print(f"{path.name}: {timing[path.name]}", file=sys.stderr)
    return rows, meta, timing


def time_it(idx, pairs: list[tuple[str, str]], repeat: int = 3) -> dict:
    """Per paired question (plain wording, shorthand): resolve() on the shorthand, and hybrid
    search of the plain wording without vocabularies (the query path before), the plain
    wording with them (their cost where nothing needs reading) and the shorthand with them
    (the same retrieval work as the plain wording plus the reading), interleaved question by
    question, in alternating order, so load on the machine hits all three alike."""
    from ragehr.index.search import search
    from ragehr.retrieval import concepts
    from ragehr.retrieval.intent import plan_question

    lex = idx.lexicon()
    plans = [plan_question(sh, idx.last_time).concept for _, sh in pairs]
    for c in plans:  # warm: vocabularies loaded, the record's drug names read
        concepts.resolve(c, lex)
    res_ms = []
    for _ in range(repeat):
        for c in plans:
            t0 = time.perf_counter()
            concepts.resolve(c, lex)
            res_ms.append((time.perf_counter() - t0) * 1000)
    saved = list(concepts.EXPANDERS)
    runs = {"plain_without": (0, []), "plain_with": (0, saved), "shorthand_with": (1, saved)}
    ms: dict[str, list[float]] = {k: [] for k in runs}
    try:
        for pair in pairs:  # warm every path
            for which, exps in runs.values():
                concepts.EXPANDERS[:] = exps
                search(idx, pair[which], k=10)
        for i in range(repeat):
            for pair in pairs:
                order = list(runs.items()) if i % 2 == 0 else list(runs.items())[::-1]
                for label, (which, exps) in order:
                    concepts.EXPANDERS[:] = exps
                    t0 = time.perf_counter()
                    search(idx, pair[which], k=10)
                    ms[label].append((time.perf_counter() - t0) * 1000)
    finally:
        concepts.EXPANDERS[:] = saved
    out = {
        "resolve_p50_ms": round(statistics.median(res_ms), 3),
        "resolve_p95_ms": round(statistics.quantiles(res_ms, n=20)[18], 3),
        "n_pairs": len(pairs),
    }
    for label, xs in ms.items():
        out[f"search_p50_ms_{label}"] = round(statistics.median(xs), 3)
    base = out["search_p50_ms_plain_without"]
    out["added_p50_ms_plain"] = round(out["search_p50_ms_plain_with"] - base, 3)
    out["added_p50_ms_shorthand"] = round(out["search_p50_ms_shorthand_with"] - base, 3)
    return out


def cold_load_s() -> float:
    """Seconds to load every vocabulary in a fresh process (once per process)."""
    code = (
        "import time; t=time.perf_counter(); from ragehr.retrieval.vocab import sources; s=sources(); "
        "print(time.perf_counter()-t); assert all(s.values()), s"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return round(float(out.stdout.strip()), 2)


def summarise(rows: list[dict]) -> dict[str, dict[str, dict]]:
    """set -> qtype -> metrics (paired questions only for plain-vs-shorthand; 'plain-all': every plain question)."""
    keys = [k for k in rows[0] if "@" in k]
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for r in rows:
        sets = [r["set"]] if r["paired"] else []
        if r["set"] == "plain":
            sets.append("plain-all")
        for s in sets:
            groups[(s, r["qtype"])].append(r)
            groups[(s, "ALL")].append(r)
    out: dict[str, dict[str, dict]] = defaultdict(dict)
    for (s, t), rs in sorted(groups.items()):
        out[s][t] = {"n": len(rs), **{k: round(statistics.fmean(r[k] for r in rs), 3) for k in keys}}
    return dict(out)


COLS = ["rag@512", "rag@2048", "rag@8192", "recall@10/bm25", "recall@10/dense", "recall@10/hybrid"]


def table(summary: dict) -> str:
    out = ["| set | type | n | " + " | ".join(COLS) + " |", "|---|---|---|" + "---|" * len(COLS)]
    for s in ("plain", "shorthand", "plain-all"):
        for t, v in summary.get(s, {}).items():
            out.append(f"| {s} | {t} | {v['n']} | " + " | ".join(f"{v[c]:.3f}" for c in COLS) + " |")
    return "\n".join(out)


def before_after(before: dict, after: dict) -> str:
    """before / **after** per cell, for the paired sets."""
    out = ["| set | question type | n | " + " | ".join(COLS) + " |", "|---|---|---|" + "---|" * len(COLS)]
    for s in ("shorthand", "plain"):
        for t, v in after.get(s, {}).items():
            b = before.get(s, {}).get(t)
            if b is None:
                continue
            out.append(f"| {s} | {t} | {v['n']} | " + " | ".join(f"{b[c]:.2f} / **{v[c]:.2f}**" for c in COLS) + " |")
    return "\n".join(out)


def check(summary: dict, baseline: dict | None, gap: dict | None) -> int:
    sh, pl = summary["shorthand"], summary["plain"]
    checks = [(f"shorthand rag@2048 overall {sh['ALL']['rag@2048']:.3f} >= 0.95", sh["ALL"]["rag@2048"] >= 0.95)]
    checks += [
        (f"shorthand rag@2048 {t} {v['rag@2048']:.3f} >= 0.90", v["rag@2048"] >= 0.90)
        for t, v in sh.items()
        if t != "ALL"
    ]
    checks.append(
        (
            f"shorthand BM25 recall@10 {sh['ALL']['recall@10/bm25']:.3f} >= plain {pl['ALL']['recall@10/bm25']:.3f} - 0.05",
            sh["ALL"]["recall@10/bm25"] >= pl["ALL"]["recall@10/bm25"] - 0.05,
        )
    )
    if baseline is not None:
        for t, v in baseline.get("plain-all", {}).items():
            mine = summary["plain-all"].get(t)
            if mine is None:
                continue
            low = [f"{c} {mine[c]:.3f} < {v[c]:.3f}" for c in COLS if mine[c] < v[c] - 1e-9]
            checks.append(
                (f"plain {t} no figure lower than baseline" + (": " + ", ".join(low) if low else ""), not low)
            )
    if gap is not None:
        for c in ("rag@2048", "recall@10/dense", "recall@10/hybrid"):
            a, b = sh["ALL"][c], gap["shorthand"]["ALL"][c]
            checks.append(
                (f"shorthand {c} gap between embedders |{a:.3f} - {b:.3f}| <= 0.02", abs(a - b) <= 0.02 + 1e-9)
            )
    for what, ok in checks:
        print(f"{'OK  ' if ok else 'FAIL'} {what}")
    return 0 if all(ok for _, ok in checks) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("records", type=Path, nargs="*")
    ap.add_argument("--combine", type=Path, nargs="+", help="report earlier --out files instead of running")
    ap.add_argument("--embedder", default="hashing", help="hashing, static or minilm")
    ap.add_argument("--work", type=Path, default=Path("benchmarks/data/vocab-work"))
    ap.add_argument("--out", type=Path)
    ap.add_argument(
        "--timing", action="store_true", help="also time concept reading and search with/without vocabularies"
    )
    ap.add_argument("--timing-only", action="store_true", help="only the timing (no recall figures)")
    ap.add_argument("--baseline", type=Path, help="a run against an older checkout: no plain figure may be lower")
    ap.add_argument("--gap", type=Path, help="a run with the other embedder: shorthand gap <= 0.02")
    ap.add_argument(
        "--same-questions",
        type=Path,
        help="with --combine: keep only the paired questions of this run",
    )
    ap.add_argument("--before", type=Path, help="print a before / **after** table against this run (same question set)")
    ap.add_argument("--expect", action="store_true", help="check issue 21's targets: OK/FAIL lines, exit 1 on a FAIL")
    args = ap.parse_args()
    if not args.records and not args.combine:
        ap.error("give record files, or --combine earlier results")
    if args.combine:
        runs = [json.loads(p.read_text()) for p in args.combine]
        rows = [r for run_ in runs for r in run_["questions"]]
        meta = [m for run_ in runs for m in run_["records"]]
        timing = {k: v for run_ in runs for k, v in run_.get("timing", {}).items()}
        args.embedder = runs[0]["embedder"]
        if args.same_questions:
            ref = json.loads(args.same_questions.read_text())["questions"]
            keys = {(r["record"], r["set"], r["question"]) for r in ref if r["paired"]}
            rows = [r for r in rows if r["set"] == "plain" or (r["record"], r["set"], r["question"]) in keys]
            for r in rows:
                r["paired"] = (r["record"], r["set"], r["question"]) in keys
    else:
        args.timing = args.timing or args.timing_only
        rows, meta, timing = run(args)
        if args.timing:
            timing["cold_load_s"] = cold_load_s()
        if args.timing_only:
            print(json.dumps(timing, indent=1))
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(
                    json.dumps({"embedder": args.embedder, "records": meta, "timing": timing}, indent=1)
                )
            return 0
    summary = summarise(rows)
    out = {"embedder": args.embedder, "records": meta, "summary": summary, "timing": timing, "questions": rows}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    print(f"embedder: {args.embedder}")
    print(table(summary))
    if timing:
        print(json.dumps(timing, indent=1))
    if args.before:
        print(before_after(json.loads(args.before.read_text())["summary"], summary))
    if not args.expect:
        return 0
    base = json.loads(args.baseline.read_text())["summary"] if args.baseline else None
    other = json.loads(args.gap.read_text())["summary"] if args.gap else None
    return check(summary, base, other)


if __name__ == "__main__":
    sys.exit(main())
