"""The ablation runner: ``ragehr eval CONFIG.yaml``.

For every dataset item and every condition of the grid (strategy x budget x retriever x
evidence order x backend), :func:`run_one` packs the context, generates (through the
generation cache), checks grounding and scores the answer into one row; :func:`run_experiment`
appends the rows to ``results/<run>/predictions.jsonl`` (:mod:`ragehr.eval.predictions`) and
then writes the reports (:mod:`ragehr.eval.report`, pure functions of the rows). A killed run
continues where it stopped: conditions already in ``predictions.jsonl`` are not run again, and
generations come back from the cache.

:func:`run_one` depends only on its arguments (an item, a condition, the opened index, the
backend, the experiment config), so a batch or distributed runner can call it anywhere.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from ragehr import __version__
from ragehr.errors import ConfigError, RagehrError
from ragehr.eval.datasets import EvalItem, generated_items, jsonl_items, medalign_items
from ragehr.eval.experiment import BackendSpec, ExperimentConfig
from ragehr.eval.predictions import PredictionsFile, read_rows
from ragehr.fsutil import RUN_FORMAT, atomic_write_text, check_plain_name, ragehr_made
from ragehr.index.build import NullProgress, Progress, build_indexes
from ragehr.index.search import PatientIndex, load_patient_index, search

log = logging.getLogger(__name__)

__all__ = [
    "Condition",
    "ConditionJob",
    "conditions",
    "gold_texts",
    "prepare",
    "run_condition",
    "run_experiment",
    "run_one",
]


@dataclass(frozen=True)
class Condition:
    dataset: str
    strategy: str
    budget: int | None
    """The context window; ``None`` for ``full`` (the backend's whole window)."""
    retriever: str | None
    backend: str
    order: str = "chronological"
    answer: str = "generated"
    """``generated``, ``computed`` or ``auto`` (:attr:`ExperimentConfig.answers`)."""

    @property
    def key(self) -> str:
        base = f"{self.dataset}|{self.strategy}|{self.budget or 'window'}|{self.retriever or '-'}|{self.backend}"
        base = base if self.order == "chronological" else f"{base}|{self.order}"
        return base if self.answer == "generated" else f"{base}|answer={self.answer}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "strategy": self.strategy,
            "budget": self.budget,
            "retriever": self.retriever,
            "backend": self.backend,
            "order": self.order,
            "answer_mode": self.answer,
        }


def conditions(cfg: ExperimentConfig) -> list[Condition]:
    """The grid. ``full`` runs once per backend at its whole window. Each setting comes from
    the most specific place that gives it: a strategy runs at the backend's ``budgets``, else
    its ``strategy_budgets``, else the experiment's; a backend runs its own ``strategies``
    (else all), and ``rag`` its own ``retrievers`` and ``orders`` (else the experiment's; the
    other strategies show their pieces in time order, as MedAlign's baselines do, unless
    ``order`` says otherwise)."""
    out = []
    for ds in cfg.datasets:
        for be in cfg.backends:
            for strategy in cfg.strategies:
                if be.strategies is not None and strategy not in be.strategies:
                    continue
                budgets: list[int | None] = (
                    [None]
                    if strategy == "full"
                    else list(be.budgets or cfg.strategy_budgets.get(strategy) or cfg.budgets)
                )
                retrievers: list[str | None] = list(be.retrievers or cfg.retrievers) if strategy == "rag" else [None]
                orders = list(be.orders or cfg.orders or (cfg.order,)) if strategy == "rag" else [cfg.order]
                for b in budgets:
                    for r in retrievers:
                        for o in orders:
                            for a in be.answers or cfg.answers:
                                out.append(Condition(ds.name, strategy, b, r, be.key, o, a))
    return out


def _dataset_files(ds: Any, base: Path) -> list[Path]:
    return [Path(r) if Path(r).is_absolute() or r.startswith("./") else base / r for r in ds.records]


def prepare(cfg: ExperimentConfig, progress: Progress | None = None) -> tuple[list[EvalItem], list[str]]:
    """Index every dataset's records (a no-op when unchanged) and build its items."""
    base = cfg.data_path()
    index_dir = Path(cfg.index_dir)
    items: list[EvalItem] = []
    problems: list[str] = []
    for ds in cfg.datasets:
        if ds.type == "medalign":
            ds_items, files, probs = medalign_items(ds, base)
            problems += probs
        else:
            files = _dataset_files(ds, base)
            ds_items = []
        summaries = build_indexes(files, index_dir, cfg.index, progress=progress) if files else []
        problems += [s.message or f"{s.index_path}: indexing failed" for s in summaries if s.status == "failed"]
        if ds.type == "generated":
            records = [
                load_patient_index(index_dir, s.patient_id, need_dense=False).stored.record
                for s in summaries
                if s.status != "failed"
            ]
            ds_items = generated_items(ds, records, cfg.seed)
        elif ds.type == "jsonl":
            ds_items = jsonl_items(ds, base)
        if ds.limit is not None and len(ds_items) > ds.limit:
            ds_items = _stratified_sample(ds_items, ds.limit, cfg.seed)
        items += ds_items
    return items, problems


def _stratified_sample(items: list[EvalItem], n: int, seed: int) -> list[EvalItem]:
    """``n`` items spread over categories (question types) and patients: round-robin over
    (category, patient) strata in a seeded order, so a limit keeps every question type."""
    rng = random.Random(seed)
    strata: dict[tuple[str, str], list[EvalItem]] = {}
    for it in sorted(items, key=lambda it: it.item_id):
        strata.setdefault((it.category or "", it.patient_id), []).append(it)
    for v in strata.values():
        rng.shuffle(v)
    by_cat: dict[str, list[list[EvalItem]]] = {}
    for (cat, _), v in sorted(strata.items()):
        by_cat.setdefault(cat, []).append(v)
    for vs in by_cat.values():
        rng.shuffle(vs)
    picked: list[EvalItem] = []
    while len(picked) < n and any(any(s) for ss in by_cat.values() for s in ss):
        for cat in sorted(by_cat):
            for s in by_cat[cat]:
                if s:
                    picked.append(s.pop())
                    break
            if len(picked) >= n:
                break
    return sorted(picked, key=lambda it: it.item_id)


def _recipe(spec: BackendSpec, cache_dir: Path) -> Any:
    """How to build a grid backend: the same path as the CLI's (``backend_from_config``),
    with the generation cache (never for ``fake``)."""
    from ragehr.config import LLMConfig
    from ragehr.pipeline.batch import BackendRecipe

    return BackendRecipe(
        LLMConfig(backend=spec.name.strip().lower(), settings=spec.settings),
        cache_dir=str(cache_dir),
        model_cache_dir=str(Path(cache_dir).parent / "models"),
    )


def _backend(spec: BackendSpec, cache_dir: Path):
    return _recipe(spec, cache_dir).build()


def gold_texts(index: PatientIndex, event_ids: tuple[str, ...]) -> list[str]:
    """The gold facts' own text as the index renders them: each structured event's line (as
    the chunker writes it); for a note, its text. Events not in the record are left out."""
    return [text for _, text in _gold_facts(index, event_ids)]


def _gold_facts(index: PatientIndex, event_ids: tuple[str, ...]) -> list[tuple[str, str]]:
    from ragehr.ehr.render import event_header
    from ragehr.types import EventKind

    cache = index.memo.setdefault("eval_event_lines", {})
    assert isinstance(cache, dict)
    if not cache:
        for e in index.stored.record.events:
            cache[e.event_id] = e.text if e.kind is EventKind.NOTE and e.text else event_header(e)
    return [(e, cache[e]) for e in event_ids if e in cache]


def series_rows_shown(index: PatientIndex, packed: Any) -> set[str]:
    """Event ids shown as rows of the per-concept series tables in ``packed``: the packer
    records, for each piece, the events whose line it kept (all of them for a whole piece; for a
    cut one, those whose row survived the cut)."""
    out: set[str] = set()
    for it in packed.items:
        try:
            chunk = index.chunk(it.chunk_id)
        except KeyError:  # not a chunk of the index: a visit document, a piece of the record's text
            continue
        if chunk.concept is not None:
            out.update(it.event_ids)
    return out


def _evidence_age_days(item: EvalItem) -> float | None:
    """Days between the record's last event and the earliest gold evidence (how far back the
    evidence sits); ``None`` without dated evidence."""
    qa = item.qa
    if qa is None or not qa.evidence_dates or not qa.anchor_time:
        return None
    try:
        anchor = datetime.fromisoformat(qa.anchor_time).date()
        days = []
        for d in qa.evidence_dates:
            parts = [int(x) for x in d.split("-")] + [1, 1]
            days.append(date(parts[0], parts[1], parts[2]))
    except ValueError:
        return None
    return float((anchor - min(days)).days)


def score_prediction(
    item: EvalItem,
    answer: str,
    packed_text: str,
    gold: list[str],
    text_metrics: tuple[str, ...],
    shown: list[bool] | None = None,
) -> dict[str, Any]:
    """The per-item metrics of one answer (see :data:`ragehr.eval.metrics.REGISTRY`).
    ``shown``, parallel to ``gold``: facts packed as rows of a series table."""
    from ragehr.eval.metrics import REGISTRY, evidence_recall, is_abstention, score_answer

    out: dict[str, Any] = {}
    if item.evidence_event_ids:
        out["evidence_recall"] = evidence_recall(packed_text, gold, shown) if gold else 0.0
    if item.qa is not None:
        out.update(score_answer(answer, item.qa))
    else:
        out["abstained"] = float(is_abstention(answer))
    if item.reference:
        for name in text_metrics:
            batch = REGISTRY[name].batch
            assert batch is not None
            out[name] = batch([answer], [item.reference])[0]
    return out


def run_one(
    item: EvalItem,
    condition: Condition,
    index: PatientIndex,
    backend: Any,
    cfg: ExperimentConfig,
    judge_backend: Any = None,
) -> dict[str, Any]:
    """One item under one condition: pack, generate, check grounding, score. Returns the row
    written to ``predictions.jsonl`` (an ``error`` row when the context cannot be built, e.g.
    ``full`` on a record longer than the window: kept out of the means, counted in the
    summary)."""
    from ragehr.eval.metrics import mrr, ndcg_at_k, recall_at_k
    from ragehr.pipeline.ask import ask
    from ragehr.pipeline.spec import ContextSpec

    row: dict[str, Any] = {
        "item_id": item.item_id,
        "condition": condition.key,
        **condition.as_dict(),
        "patient_id": item.patient_id,
        "category": item.category,
    }
    if item.qa is not None:
        row["depth"] = item.qa.depth
        row["evidence_age_days"] = _evidence_age_days(item)
    t0 = time.perf_counter()
    try:
        spec = ContextSpec(
            strategy=condition.strategy,
            budget=condition.budget or backend.context_window,
            retriever=condition.retriever or "hybrid",
            order=condition.order,
            max_new_tokens=cfg.max_new_tokens,
            retrieval=cfg.retrieval,
            question_reserve=cfg.question_reserve,
            answer=condition.answer,
        )
        r = ask(index, item.question, backend, spec, seed=cfg.seed)
    except RagehrError as exc:
        row.update({"error": str(exc).split(";")[0][:200], "latency_s": round(time.perf_counter() - t0, 4)})
        return row
    packed = r.context.packed
    block = packed.block()
    row.update(
        {
            "model": r.generation.model,
            "answer": r.generation.text,
            "packed_chunk_ids": [p.chunk_id for p in packed.items],
            "n_pieces": len(packed.items),
            "budget_tokens": packed.budget_tokens,
            "used_tokens": packed.used_tokens,
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.generation.completion_tokens,
            "latency_s": round(time.perf_counter() - t0, 4),
            "generate_s": round(r.generation.seconds, 4),
            "cached": r.generation.cached,
            "grounded": r.grounding.ok,
            "unsupported": list(r.grounding.unsupported),
            "answered_by": r.answered_by,
            "answer_reason": r.answer_reason,
            "attempts": len(r.attempts),
        }
    )
    facts = _gold_facts(index, item.evidence_event_ids) if item.evidence_event_ids else []
    in_series = series_rows_shown(index, packed)
    gold, shown = [t for _, t in facts], [e in in_series for e, _ in facts]
    row.update(score_prediction(item, r.generation.text, block, gold, cfg.text_metrics, shown))
    if judge_backend is not None:
        from ragehr.eval.judge import judge

        row.update(judge(judge_backend, item.question, r.generation.text, block, item.reference))
    if condition.strategy == "rag" and item.evidence_event_ids and condition.order == (cfg.orders or (cfg.order,))[0]:
        hits, _ = search(index, item.question, config=cfg.retrieval, k=10, retriever=condition.retriever or "hybrid")
        ranked = [h.chunk.event_ids for h in hits]
        row["recall@10"] = recall_at_k(ranked, item.evidence_event_ids, 10)
        row["mrr"] = mrr(ranked, item.evidence_event_ids)
        row["ndcg@10"] = ndcg_at_k(ranked, item.evidence_event_ids, 10)
    return row


def _need_dense(cfg: ExperimentConfig) -> bool:
    return any(r != "bm25" for r in cfg.retrievers) and "rag" in cfg.strategies


def _predict_all(
    cfg: ExperimentConfig, todo: list[tuple[Condition, EvalItem]], open_index: Any, backend_of: Any, judge_backend: Any
) -> Iterator[dict[str, Any]]:
    """Rows for ``todo`` in order; consecutive items of one condition whose backend takes
    concurrent requests (``concurrency > 1``, a served model) have that many in flight
    (indexes are opened on this thread)."""
    from concurrent.futures import ThreadPoolExecutor

    i = 0
    while i < len(todo):
        c = todo[i][0]
        be = backend_of(c.backend)
        n = max(1, getattr(be, "concurrency", 1))
        j = i
        while j < len(todo) and todo[j][0] == c:
            j += 1
        run = todo[i:j]
        if n == 1:
            for c_, it in run:
                yield run_one(it, c_, open_index(it.patient_id), be, cfg, judge_backend)
        else:
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix="ragehr-eval") as pool:
                futures = [
                    pool.submit(run_one, it, c_, open_index(it.patient_id), be, cfg, judge_backend) for c_, it in run
                ]
                for f in futures:
                    yield f.result()
        i = j


@dataclass(frozen=True)
class ConditionJob:
    """One grid condition's items: the unit of work ``ragehr eval --ray`` sends to a worker."""

    cfg: ExperimentConfig
    condition: Condition
    items: tuple[EvalItem, ...]


def run_condition(job: ConditionJob) -> list[dict[str, Any]]:
    """Rows of one condition, computed in this process with its per-process backends and
    index cache (models load once per worker)."""
    from ragehr.pipeline.batch import shared_backend, worker_indexes

    cfg = job.cfg
    cache_dir = Path(cfg.index_dir) / ".cache" / "generations"
    specs = {b.key: b for b in cfg.backends}
    cache = worker_indexes(cfg.index_dir)
    judge_backend = shared_backend(_recipe(cfg.judge, cache_dir)) if cfg.judge else None
    todo = [(job.condition, it) for it in job.items]
    return list(
        _predict_all(
            cfg,
            todo,
            lambda pid: cache.get(pid, _need_dense(cfg)),
            lambda key: shared_backend(_recipe(specs[key], cache_dir)),
            judge_backend,
        )
    )


def run_dir_for(cfg: ExperimentConfig, run: str | None = None, *, fresh: bool = False) -> Path:
    """The results folder of a run, ``results_dir/<run or cfg.name>``, made ready to write.

    ``run`` must be a plain folder name (no separator, ``..``, absolute path or NUL), so a run
    never leaves ``results_dir``. An existing folder is used only when it is ragehr's (it holds
    a run manifest, :func:`ragehr.fsutil.ragehr_made`) or empty; ``fresh`` deletes it first,
    and only when it is ragehr's. Anything else is refused with a :class:`ConfigError` and left
    exactly as it is."""
    name = cfg.name if run is None else run
    problem = check_plain_name(name, "--run" if run is not None else "the experiment name")
    if problem:
        raise ConfigError(f"{problem}: a run is a folder inside results_dir ({cfg.results_dir})")
    run_dir = Path(cfg.results_dir) / name
    if not os.path.lexists(run_dir):
        return run_dir
    ours = ragehr_made(run_dir, "run")
    if not ours:
        empty = run_dir.is_dir() and not run_dir.is_symlink() and not any(run_dir.iterdir())
        if not empty:
            what = (
                "a link"
                if run_dir.is_symlink()
                else "not a folder"
                if not run_dir.is_dir()
                else ("an empty folder" if empty else "a folder without ragehr's run manifest.json")
            )
            raise ConfigError(
                f"{run_dir}: exists and is not a ragehr run folder ({what}); ragehr will neither write into "
                "nor delete it: give another --run, or move it away yourself"
            )
        return run_dir
    if fresh:
        shutil.rmtree(run_dir)
    return run_dir


def _mark_run(cfg: ExperimentConfig, run_dir: Path) -> None:
    """Say that ``run_dir`` is ragehr's from its first file on (the full manifest replaces
    this one when the reports are written), so a killed run can still be resumed or freshened."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(run_dir / "manifest.json"):
        doc = {
            "format": RUN_FORMAT,
            "name": cfg.name,
            "ragehr_version": __version__,
            "status": "running",
            "created": datetime.now().astimezone().isoformat(timespec="seconds"),
        }
        atomic_write_text(run_dir / "manifest.json", json.dumps(doc, indent=1) + "\n")


def run_experiment(
    cfg: ExperimentConfig,
    run_dir: Path,
    *,
    progress: Progress | None = None,
    config_text: str | None = None,
    mapper: Any = None,
) -> dict[str, Any]:
    """Run (or resume) the grid into ``run_dir``; returns the aggregated metrics. With
    ``mapper`` (e.g. :func:`ragehr.distributed.ray_map`) each condition runs as one task there
    (:func:`run_condition`); rows are written here as tasks finish. A condition whose task
    fails is reported in ``problems`` and left for the next run."""
    from ragehr.eval.report import write_reports

    progress = progress or NullProgress()
    items, problems = prepare(cfg, progress)
    if not items:
        raise ConfigError(f"experiment {cfg.name}: no items ({'; '.join(problems) or 'datasets are empty'})")
    _mark_run(cfg, run_dir)
    preds = PredictionsFile(run_dir)
    done = preds.done()
    conds = conditions(cfg)
    # patient by patient (one patient's index stays hot, scale records are large), and within a
    # patient condition by condition (so a served backend gets its items concurrently)
    rank = {c.key: i for i, c in enumerate(conds)}
    todo = [(c, it) for it in items for c in conds if c.dataset == it.dataset and (it.item_id, c.key) not in done]
    todo.sort(key=lambda ci: (ci[1].patient_id, rank[ci[0].key]))
    cache_dir = Path(cfg.index_dir) / ".cache" / "generations"
    backends = {b.key: _backend(b, cache_dir) for b in cfg.backends}
    progress.start("eval", len(todo))
    t_start = time.perf_counter()
    with preds:

        def write(row: dict[str, Any]) -> None:
            preds.append(row)
            progress.advance("eval")

        if mapper is None:
            judge_backend = _backend(cfg.judge, cache_dir) if cfg.judge else None
            indexes: dict[str, PatientIndex] = {}
            need_dense = _need_dense(cfg)

            def open_index(pid: str) -> PatientIndex:
                if pid not in indexes:
                    indexes.clear()  # one open index at a time: scale records are large
                    indexes[pid] = load_patient_index(cfg.index_dir, pid, need_dense=need_dense)
                return indexes[pid]

            for row in _predict_all(cfg, todo, open_index, backends.__getitem__, judge_backend):
                write(row)
        else:
            grouped: dict[str, list[tuple[Condition, EvalItem]]] = {}
            for c, it in todo:
                grouped.setdefault(c.key, []).append((c, it))
            jobs = [ConditionJob(cfg, g[0][0], tuple(it for _, it in g)) for g in grouped.values()]
            for i, result in mapper(run_condition, jobs):
                if isinstance(result, BaseException):
                    msg = (
                        str(result).splitlines()[0][:200] if isinstance(result, RagehrError) else type(result).__name__
                    )
                    problems.append(f"condition {jobs[i].condition.key} failed in a worker ({msg}); rerun to retry it")
                    continue
                for row in result:
                    write(row)
    elapsed = time.perf_counter() - t_start
    return write_reports(
        cfg,
        run_dir,
        read_rows(run_dir),
        items,
        problems,
        run_seconds=elapsed,
        config_text=config_text,
        backends={k: getattr(b, "model", k) for k, b in backends.items()},
    )
