"""The ablation runner: ``ragehr eval CONFIG.yaml``.

For every dataset item and every condition of the grid (strategy x budget x retriever x
backend), it packs the context, generates (through the generation cache), checks grounding and
scores the answer, appending one line to ``results/<run>/predictions.jsonl``. A killed run
continues where it stopped: conditions already in ``predictions.jsonl`` are not run again, and
generations come back from the cache. Then it aggregates (:mod:`ragehr.eval.report`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragehr.errors import ConfigError, RagehrError
from ragehr.eval.datasets import EvalItem, generated_items, jsonl_items, medalign_items
from ragehr.eval.experiment import BackendSpec, ExperimentConfig
from ragehr.index.build import NullProgress, Progress, build_indexes
from ragehr.index.search import PatientIndex, load_patient_index, search

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Condition:
    dataset: str
    strategy: str
    budget: int | None
    """The context window; ``None`` for ``full`` (the backend's whole window)."""
    retriever: str | None
    backend: str

    @property
    def key(self) -> str:
        return f"{self.dataset}|{self.strategy}|{self.budget or 'window'}|{self.retriever or '-'}|{self.backend}"

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "strategy": self.strategy, "budget": self.budget,
                "retriever": self.retriever, "backend": self.backend}


def conditions(cfg: ExperimentConfig) -> list[Condition]:
    out = []
    for ds in cfg.datasets:
        for be in cfg.backends:
            for strategy in cfg.strategies:
                budgets: list[int | None] = [None] if strategy == "full" else list(be.budgets or cfg.budgets)
                retrievers: list[str | None] = list(be.retrievers or cfg.retrievers) if strategy == "rag" else [None]
                for b in budgets:
                    for r in retrievers:
                        out.append(Condition(ds.name, strategy, b, r, be.key))
    return out


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
            files = [base / r for r in ds.records]
            ds_items = []
        summaries = build_indexes(files, index_dir, cfg.index, progress=progress) if files else []
        failed = [s.message for s in summaries if s.status == "failed"]
        if failed:
            problems += failed
        if ds.type == "generated":
            records = [load_patient_index(index_dir, s.patient_id, need_dense=False).stored.record
                       for s in summaries if s.status != "failed"]
            ds_items = generated_items(ds, records, cfg.seed)
        elif ds.type == "jsonl":
            ds_items = jsonl_items(ds, base)
        if ds.limit is not None and len(ds_items) > ds.limit:
            import random

            rng = random.Random(cfg.seed)
            ds_items = sorted(rng.sample(ds_items, ds.limit), key=lambda it: it.item_id)
        items += ds_items
    return items, problems


def _read_done(path: Path) -> set[tuple[str, str]]:
    done: set[tuple[str, str]] = set()
    if not path.is_file():
        return done
    good_lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            obj = json.loads(line)
            done.add((obj["item_id"], obj["condition"]))
            good_lines.append(line)
        except (ValueError, KeyError):
            continue  # a line cut by a kill: dropped and redone
    if len(good_lines) != len(path.read_text(encoding="utf-8").splitlines()):
        path.write_text("".join(line + "\n" for line in good_lines), encoding="utf-8")
    return done


def _recipe(spec: BackendSpec, cache_dir: Path) -> Any:
    """How to build a grid backend: the same path as the CLI's (``backend_from_config``),
    with the generation cache (never for ``fake``)."""
    from ragehr.config import LLMConfig
    from ragehr.pipeline.batch import BackendRecipe

    return BackendRecipe(LLMConfig(backend=spec.name.strip().lower(), settings=spec.settings), cache_dir=str(cache_dir))


def _backend(spec: BackendSpec, cache_dir: Path):
    return _recipe(spec, cache_dir).build()


def score_prediction(item: EvalItem, answer: str, packed_event_ids: set[str], text_metrics: tuple[str, ...]) -> dict[str, Any]:
    from ragehr.eval.metrics import chrf_pp, evidence_recall, rouge_l, score_answer

    out: dict[str, Any] = {}
    if item.evidence_event_ids:
        out["evidence_recall"] = evidence_recall(packed_event_ids, item.evidence_event_ids)
    if item.qa is not None:
        out.update(score_answer(answer, item.qa))
    if item.reference:
        if "rouge_l" in text_metrics:
            out["rouge_l"] = rouge_l(answer, item.reference)
        if "chrf" in text_metrics:
            out["chrf"] = chrf_pp(answer, item.reference)
    return out


def predict(
    cfg: ExperimentConfig, c: Condition, it: EvalItem, idx: PatientIndex, be: Any, judge_backend: Any = None
) -> dict[str, Any]:
    """One prediction row: ``it`` answered under condition ``c`` and scored. A user-caused
    failure (e.g. ``full`` on a record longer than the window) is a row with ``error``."""
    from ragehr.eval.metrics import mrr, ndcg_at_k, recall_at_k
    from ragehr.pipeline.ask import ask
    from ragehr.pipeline.spec import ContextSpec

    row: dict[str, Any] = {"item_id": it.item_id, "condition": c.key, **c.as_dict(),
                           "patient_id": it.patient_id, "category": it.category}
    t0 = time.perf_counter()
    try:
        spec = ContextSpec(strategy=c.strategy, budget=c.budget or be.context_window,
                           retriever=c.retriever or "hybrid", order=cfg.order,
                           max_new_tokens=cfg.max_new_tokens, retrieval=cfg.retrieval)
        r = ask(idx, it.question, be, spec, seed=cfg.seed)
    except RagehrError as exc:
        # reported as an error, kept out of the means (summary.md shows the count next to n)
        row.update({"error": str(exc).split(";")[0][:200], "latency_s": time.perf_counter() - t0})
        return row
    packed = r.context.packed
    packed_events = {e for p in packed.items for e in p.event_ids}
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
        }
    )
    row.update(score_prediction(it, r.generation.text, packed_events, cfg.text_metrics))
    if judge_backend is not None:
        from ragehr.eval.judge import judge

        row.update(judge(judge_backend, it.question, r.generation.text, packed.block(), it.reference))
    if c.strategy == "rag" and it.evidence_event_ids:
        hits, _ = search(idx, it.question, config=cfg.retrieval, k=10, retriever=c.retriever or "hybrid")
        ranked = [h.chunk.event_ids for h in hits]
        row["recall@10"] = recall_at_k(ranked, it.evidence_event_ids, 10)
        row["mrr"] = mrr(ranked, it.evidence_event_ids)
        row["ndcg@10"] = ndcg_at_k(ranked, it.evidence_event_ids, 10)
    return row


def _need_dense(cfg: ExperimentConfig) -> bool:
    return any(r != "bm25" for r in cfg.retrievers) and "rag" in cfg.strategies


def _predict_all(
    cfg: ExperimentConfig, todo: list[tuple[Condition, EvalItem]], open_index: Any, backend_of: Any, judge_backend: Any
) -> Iterator[dict[str, Any]]:
    """Rows for ``todo`` in order; conditions whose backend takes concurrent requests
    (``concurrency > 1``, a served model) have that many items in flight (indexes are opened
    on this thread)."""
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
                yield predict(cfg, c_, it, open_index(it.patient_id), be, judge_backend)
        else:
            with ThreadPoolExecutor(max_workers=n, thread_name_prefix="ragehr-eval") as pool:
                futures = [pool.submit(predict, cfg, c_, it, open_index(it.patient_id), be, judge_backend) for c_, it in run]
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
    return list(_predict_all(
        cfg, todo, lambda pid: cache.get(pid, _need_dense(cfg)),
        lambda key: shared_backend(_recipe(specs[key], cache_dir)), judge_backend,
    ))


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
    run_dir.mkdir(parents=True, exist_ok=True)
    items, problems = prepare(cfg, progress)
    if not items:
        raise ConfigError(f"experiment {cfg.name}: no items ({'; '.join(problems) or 'datasets are empty'})")
    preds_path = run_dir / "predictions.jsonl"
    done = _read_done(preds_path)
    conds = conditions(cfg)
    by_ds: dict[str, list[EvalItem]] = {}
    for it in items:
        by_ds.setdefault(it.dataset, []).append(it)
    todo = [(c, it) for c in conds for it in by_ds.get(c.dataset, []) if (it.item_id, c.key) not in done]
    cache_dir = Path(cfg.index_dir) / ".cache" / "generations"
    backends = {b.key: _backend(b, cache_dir) for b in cfg.backends}
    progress.start("eval", len(todo))
    t_start = time.perf_counter()
    with open(preds_path, "a", encoding="utf-8") as out:

        def write(row: dict[str, Any]) -> None:
            out.write(json.dumps(row, default=str) + "\n")
            out.flush()
            progress.advance("eval")

        if mapper is None:
            judge_backend = _backend(cfg.judge, cache_dir) if cfg.judge else None
            indexes: dict[str, PatientIndex] = {}
            need_dense = _need_dense(cfg)

            def open_index(pid: str) -> PatientIndex:
                if pid not in indexes:
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
                    msg = str(result).splitlines()[0][:200] if isinstance(result, RagehrError) else type(result).__name__
                    problems.append(f"condition {jobs[i].condition.key} failed in a worker ({msg}); rerun to retry it")
                    continue
                for row in result:
                    write(row)
    elapsed = time.perf_counter() - t_start
    return write_reports(cfg, run_dir, items, problems, run_seconds=elapsed, config_text=config_text,
                         backends={k: getattr(b, "model", k) for k, b in backends.items()})


def iter_predictions(run_dir: Path) -> Iterator[dict[str, Any]]:
    p = run_dir / "predictions.jsonl"
    for line in p.read_text(encoding="utf-8").splitlines():
        if line.strip():
            yield json.loads(line)
