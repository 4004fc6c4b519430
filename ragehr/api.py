"""The public Python API: a few nouns and verbs over the library, the same calls the CLI makes.

::

    import ragehr

    ragehr.index_records(["../shared/data/medalign/sample-ehr-clean.xml"], "indexes")
    idx = ragehr.open_index("indexes")
    patient = idx.patient("sample-ehr-clean")
    hits = patient.retrieve("most recent systolic blood pressure", k=5)
    ctx = patient.context("When was her last head CT?", budget=2048)
    answer = patient.ask("Has she ever been on a statin?", backend="extractive")
    answer.to_json() == json.loads(`ragehr ask ... --json`)   # same fields, same values

Everything here is re-exported by :mod:`ragehr` (lazily, so ``import ragehr`` stays light);
every other module of the package is internal and may change between versions.

Layer: above ``eval`` and below ``cli``/``serve``/``adapters``; it composes
:mod:`ragehr.index`, :mod:`ragehr.pipeline` and :mod:`ragehr.eval` and adds no logic of its
own beyond choosing defaults the way the CLI does (``ContextSpec.from_config``, the backend's
window, caches under ``<index_dir>/.cache``).
"""

from __future__ import annotations

import inspect as _inspect
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragehr.errors import ConfigError

if TYPE_CHECKING:
    from ragehr.config import RagehrConfig
    from ragehr.eval.experiment import ExperimentConfig
    from ragehr.index.build import Progress
    from ragehr.index.search import PatientIndex, RetrievedChunk
    from ragehr.llm.base import LLMBackend
    from ragehr.pipeline.ask import AskResult
    from ragehr.pipeline.spec import ContextSpec, PreparedContext
    from ragehr.types import BuildSummary, EventKind, IndexManifest

__all__ = [
    "Context",
    "EvalRun",
    "Indexes",
    "Patient",
    "PatientInfo",
    "Retrieval",
    "RunReport",
    "index_records",
    "load_run",
    "open_index",
    "run_eval",
]

PathLike = str | Path
DateLike = str | date | datetime


CONFIG_ENV = "RAGEHR_CONFIG"
"""A YAML config used when none is given (the CLI's ``--config`` reads it too)."""
INDEX_DIR_ENV = "RAGEHR_INDEX_DIR"
"""The index folder used when none is given (the CLI's ``--index-dir`` reads it too)."""


def _config(config: RagehrConfig | PathLike | None) -> RagehrConfig:
    from ragehr.config import RagehrConfig

    if isinstance(config, RagehrConfig):
        return config
    return RagehrConfig.from_file(config if config is not None else os.environ.get(CONFIG_ENV) or None)


def _index_dir(index_dir: PathLike | None) -> Path:
    return Path(index_dir if index_dir is not None else os.environ.get(INDEX_DIR_ENV) or "indexes")


# -- results ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PatientInfo:
    """One indexed patient, as ``ragehr patients --json`` prints it (no record text)."""

    patient_id: str
    n_events: int
    """Events in the index (after duplicates across sources were removed)."""
    n_chunks: int
    n_sources: int
    """Record files (or cohort slices) the index was built from."""
    first_time: str | None
    last_time: str | None
    built_at: str
    ragehr_version: str
    embedder: str
    """Which vectors the index has (``static``, ``minilm``, ...); indexes built before the
    config recorded it are MiniLM's."""
    embedder_id: str

    @classmethod
    def from_manifest(cls, m: IndexManifest) -> PatientInfo:
        return cls(
            patient_id=m.patient_id,
            n_events=m.counts.get("events", 0),
            n_chunks=m.counts.get("chunks", 0),
            n_sources=len(m.sources),
            first_time=m.first_time,
            last_time=m.last_time,
            built_at=m.built_at,
            ragehr_version=m.ragehr_version,
            embedder=str(m.config.get("embedder", "minilm")),
            embedder_id=m.embedder_id,
        )

    def to_json(self) -> dict[str, Any]:
        """The line ``ragehr patients --json`` prints for this patient."""
        return {
            "patient_id": self.patient_id,
            "n_events": self.n_events,
            "n_chunks": self.n_chunks,
            "n_sources": self.n_sources,
            "first_time": self.first_time,
            "last_time": self.last_time,
            "built_at": self.built_at,
            "ragehr_version": self.ragehr_version,
            "embedder": self.embedder,
            "embedder_id": self.embedder_id,
        }


@dataclass(frozen=True)
class Retrieval:
    """Ranked evidence for a question (``ragehr retrieve``): ``hits`` best first, and the
    time window the question was read with."""

    question: str
    patient_id: str
    hits: tuple[RetrievedChunk, ...]
    time_phrase: str | None = None
    """The time expression read from the question (``"last year"``), if any."""
    time_fallback: str | None = None
    """Set when nothing about the question fell in its time window and the nearest dated
    evidence was ranked instead (a sentence saying so)."""

    def __iter__(self) -> Iterator[RetrievedChunk]:
        return iter(self.hits)

    def __len__(self) -> int:
        return len(self.hits)

    def __getitem__(self, i: int) -> RetrievedChunk:
        return self.hits[i]

    def to_json(self) -> list[dict[str, Any]]:
        """What ``ragehr retrieve --json`` prints: one object per hit."""
        return [{**h.to_json(), "time_fallback": self.time_fallback} for h in self.hits]


@dataclass(frozen=True)
class Context:
    """The evidence a strategy packs for a question under a budget (``ragehr context``)."""

    question: str
    patient_id: str
    prepared: PreparedContext
    """The pipeline's own object: ``.context`` (strategy, packed items), ``.budget``,
    ``.window``, ``.counter`` (the backend's tokenizer)."""

    @property
    def items(self) -> tuple[Any, ...]:
        """The packed evidence, in prompt order (each with ``marker``, ``chunk_id``, ``text``, ...)."""
        return tuple(self.prepared.context.packed.items)

    @property
    def window(self) -> int:
        return self.prepared.window

    def block(self) -> str:
        """The evidence as the prompt shows it (what ``ragehr context`` prints)."""
        return self.prepared.context.packed.block()

    def to_json(self) -> dict[str, Any]:
        """What ``ragehr context --json`` prints."""
        from ragehr.pipeline.context import context_json

        return context_json(self.prepared.context, self.prepared.window)


@dataclass(frozen=True)
class EvalRun:
    """A finished (or resumed) ``ragehr eval`` run."""

    run_dir: Path
    metrics: dict[str, Any]
    """What the run wrote to ``metrics.json`` (with ``expected`` checks and ``problems``)."""

    @property
    def checks(self) -> list[dict[str, Any]]:
        """The config's ``expected:`` figures, each with ``ok`` and the measured ``value``."""
        return list(self.metrics.get("expected", []))

    @property
    def ok(self) -> bool:
        """Whether every expected figure held (``ragehr eval`` exits 1 otherwise)."""
        return all(c["ok"] for c in self.checks)

    @property
    def summary(self) -> str:
        """The run's ``summary.md``."""
        return (self.run_dir / "summary.md").read_text(encoding="utf-8")

    @property
    def manifest(self) -> dict[str, Any]:
        """The run's ``manifest.json``: config, versions, git commit, models, seed."""
        import json

        return json.loads((self.run_dir / "manifest.json").read_text(encoding="utf-8"))

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every prediction of the run (``predictions.jsonl``), one dict per (item, condition)."""
        from ragehr.eval.predictions import read_rows

        return read_rows(self.run_dir)

    def report(self, plots_dir: PathLike | None = None) -> RunReport:
        """The run's tables and plots recomputed from its predictions alone (bootstrap CIs with
        the config's seed), the plots written to ``plots_dir`` (default: a new temporary
        folder). Equal to what ``ragehr eval`` wrote, for a finished run."""
        import tempfile

        from ragehr.eval.experiment import ExperimentConfig
        from ragehr.eval.report import aggregate, make_plots, paired_differences, plot_by_evidence_age, summary_markdown

        cfg = ExperimentConfig.model_validate(self.manifest["config"])
        rows = self.rows
        summary = aggregate(rows, cfg.bootstrap_resamples, cfg.seed)
        diffs = paired_differences(rows, cfg.bootstrap_resamples, cfg.seed)
        out = Path(plots_dir) if plots_dir is not None else Path(tempfile.mkdtemp(prefix="ragehr-report-"))
        out.mkdir(parents=True, exist_ok=True)
        names = make_plots(summary, out)
        ref = 2048 if 2048 in cfg.budgets else cfg.budgets[0]
        age = plot_by_evidence_age(rows, out, ref)
        plots = [out / n for n in [*names, *([age] if age else [])]]
        return RunReport(summary, diffs, summary_markdown(cfg, summary, diffs, []), plots)

    def to_json(self) -> dict[str, Any]:
        return {"run_dir": str(self.run_dir), **self.metrics}


@dataclass(frozen=True)
class RunReport:
    """A run's tables and plots, recomputed from its predictions (:meth:`EvalRun.report`)."""

    summary: list[dict[str, Any]]
    """Per condition: n, errors, and each metric's mean with its bootstrap 95% CI."""
    paired_differences: list[dict[str, Any]]
    """Each arm against ``recent`` on the same items (paired bootstrap)."""
    markdown: str
    """The tables as ``summary.md`` shows them."""
    plots: list[Path]
    """The PNG files written."""


def load_run(run_dir: PathLike) -> EvalRun:
    """A results folder written by ``ragehr eval`` (or :func:`run_eval`), to read its metrics,
    predictions and manifest, or recompute its report."""
    import json

    d = Path(run_dir)
    try:
        metrics = json.loads((d / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError(f"{d}: not a finished ragehr run (no readable metrics.json)") from None
    return EvalRun(run_dir=d, metrics=metrics)


# -- opening indexes -------------------------------------------------------------------


class Indexes:
    """A folder of per-patient indexes (what ``ragehr index`` builds). Opened patient indexes
    and backends are kept, so asking many questions pays each load once.

    Not thread-safe for concurrent opening; ask from one thread, or one ``Indexes`` per thread."""

    def __init__(self, index_dir: PathLike | None = None, config: RagehrConfig | PathLike | None = None) -> None:
        from ragehr.index.store import check_index_dir

        self.index_dir = _index_dir(index_dir)
        self.config = _config(config)
        check_index_dir(self.index_dir)
        self._opened: dict[tuple[str, bool], PatientIndex] = {}
        self._backends: dict[tuple[Any, ...], LLMBackend] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Indexes({str(self.index_dir)!r})"

    def patients(self) -> list[PatientInfo]:
        """The indexed patients, as ``ragehr patients --json`` lists them."""
        from ragehr.index.store import list_manifests

        return [PatientInfo.from_manifest(m) for m in list_manifests(self.index_dir)]

    def patient_ids(self) -> list[str]:
        return [p.patient_id for p in self.patients()]

    def __iter__(self) -> Iterator[Patient]:
        return (Patient(self, pid) for pid in self.patient_ids())

    def __len__(self) -> int:
        return len(self.patients())

    def __contains__(self, patient_id: object) -> bool:
        return isinstance(patient_id, str) and patient_id in self.patient_ids()

    def patient(self, patient_id: str) -> Patient:
        """One patient's index (checked now; an unknown id raises
        :class:`~ragehr.errors.IndexNotFoundError` without listing the others)."""
        from ragehr.errors import RagehrError
        from ragehr.index.store import open_index as open_stored
        from ragehr.index.store import patient_dir, read_manifest

        try:
            m = read_manifest(patient_dir(self.index_dir, patient_id))
            known = m.patient_id == patient_id
        except RagehrError:
            known = False
        if not known:
            open_stored(self.index_dir, patient_id)  # raises the CLI's error for this id
        return Patient(self, patient_id)

    # The CLI opens each index once per process; here each (patient, dense?) is kept open.
    def _index(self, patient_id: str, need_dense: bool) -> PatientIndex:
        from ragehr.index.search import load_patient_index

        with self._lock:
            for key in ((patient_id, True), (patient_id, need_dense)):
                if key in self._opened:
                    return self._opened[key]
            idx = load_patient_index(self.index_dir, patient_id, need_dense=need_dense)
            self._opened[(patient_id, need_dense)] = idx
            return idx

    def backend(
        self,
        name: str | None = None,
        *,
        budget: int | None = None,
        model_path: PathLike | None = None,
        base_url: str | None = None,
        model: str | None = None,
        cache: bool = True,
    ) -> LLMBackend:
        """The backend ``ask``/``context`` use, built as the CLI builds it (the config's
        settings, generations cached under ``<index_dir>/.cache/generations`` unless
        ``cache=False``, converted weights under ``<index_dir>/.cache/models``)."""
        from ragehr.llm.registry import backend_from_config

        key = (name, budget, str(model_path) if model_path else None, base_url, model, cache)
        with self._lock:
            if key not in self._backends:
                self._backends[key] = backend_from_config(
                    self.config.llm,
                    name,
                    window=budget,
                    model_path=str(model_path) if model_path else None,
                    base_url=base_url,
                    model=model,
                    cache_dir=self.index_dir / ".cache" / "generations" if cache else None,
                    model_cache_dir=self.index_dir / ".cache" / "models",
                )
            return self._backends[key]


def open_index(index_dir: PathLike | None = None, config: RagehrConfig | PathLike | None = None) -> Indexes:
    """Open a folder of patient indexes (``--index-dir``; default ``$RAGEHR_INDEX_DIR`` or
    ``indexes``); ``config`` is a :class:`~ragehr.config.RagehrConfig` or a YAML path
    (``--config``; default ``$RAGEHR_CONFIG`` or the built-in defaults)."""
    return Indexes(index_dir, config)


# -- one patient -----------------------------------------------------------------------


def _when(value: DateLike | None, name: str, *, end: bool) -> datetime | None:
    """``since``/``until`` as the CLI reads them: a ``YYYY[-MM[-DD]]`` string (a period means
    its first or, for ``until``, last instant), a date, or a datetime taken as given."""
    from ragehr.retrieval.timefilter import parse_date_option

    if value is None or isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return parse_date_option(value.isoformat(), end=end)
    try:
        return parse_date_option(str(value), end=end)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _kind_list(kinds: str | Sequence[str | EventKind] | None) -> list[EventKind] | None:
    from ragehr.types import EventKind

    if not kinds:
        return None
    parts = kinds.split(",") if isinstance(kinds, str) else list(kinds)
    out = []
    for part in parts:
        if isinstance(part, EventKind):
            out.append(part)
            continue
        try:
            out.append(EventKind(str(part).strip().lower()))
        except ValueError:
            names = ", ".join(k.value for k in EventKind)
            raise ConfigError(f"unknown kind {str(part).strip()!r}; use any of: {names}") from None
    return out


_ASK_PARAMS: frozenset[str] | None = None


def _ask_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options passed through to :func:`ragehr.pipeline.ask.ask` (for example ``answer=``
    where the pipeline offers it); an option it does not take is a :class:`ConfigError`."""
    global _ASK_PARAMS
    if not options:
        return {}
    if _ASK_PARAMS is None:
        from ragehr.pipeline.ask import ask

        params = _inspect.signature(ask).parameters
        taken = {"index", "question", "backend", "spec", "on_token", "answer"}  # given by Patient.ask itself
        _ASK_PARAMS = frozenset(
            n for n, p in params.items() if n not in taken and p.kind is not _inspect.Parameter.VAR_KEYWORD
        )
    unknown = sorted(set(options) - _ASK_PARAMS)
    if unknown:
        raise ConfigError(f"unknown ask option(s): {', '.join(unknown)}")
    return {k: v for k, v in options.items() if v is not None}


@dataclass(frozen=True)
class Patient:
    """One indexed patient; ``retrieve``, ``context`` and ``ask`` take the CLI's options, with
    the same names and defaults (``None``: the config's value)."""

    indexes: Indexes = field(repr=False)
    patient_id: str

    def info(self) -> PatientInfo:
        from ragehr.index.store import patient_dir, read_manifest

        return PatientInfo.from_manifest(read_manifest(patient_dir(self.indexes.index_dir, self.patient_id)))

    def _spec(self, **overrides: Any) -> ContextSpec:
        from ragehr.pipeline.spec import ContextSpec

        return ContextSpec.from_config(self.indexes.config, **overrides)

    def retrieve(
        self,
        question: str,
        *,
        k: int | None = None,
        retriever: str | None = None,
        since: DateLike | None = None,
        until: DateLike | None = None,
        kinds: str | Sequence[str | EventKind] | None = None,
    ) -> Retrieval:
        """Rank the patient's evidence for ``question`` (no generation): ``ragehr retrieve``.
        ``since``/``until`` (``"2019"``, ``"2019-03"``, a date) bound the evidence's time and
        win over a time phrase in the question; ``kinds`` keeps only those event kinds
        (``"lab,vital"`` or a list)."""
        from ragehr.index.search import search

        cfg = self.indexes.config
        retriever = retriever or cfg.retrieval.retriever
        k = k or cfg.retrieval.k
        if retriever not in ("hybrid", "bm25", "dense"):
            raise ConfigError(f"retriever must be hybrid, bm25 or dense, not {retriever!r}")
        if k < 1:
            raise ConfigError(f"k must be at least 1, not {k}")
        if not question or not question.strip():
            raise ConfigError("the question is empty")
        since_dt, until_dt = _when(since, "since", end=False), _when(until, "until", end=True)
        if since_dt is not None and until_dt is not None and since_dt > until_dt:
            raise ConfigError(f"since {since} is after until {until}; nothing can match")
        kind_list = _kind_list(kinds)
        idx = self.indexes._index(self.patient_id, retriever != "bm25")
        hits, plan = search(
            idx,
            question,
            config=cfg.retrieval,
            k=k,
            retriever=retriever,
            since=since_dt,
            until=until_dt,
            kinds=kind_list,
        )
        return Retrieval(question, self.patient_id, tuple(hits), plan.phrase, plan.fallback)

    def context(
        self,
        question: str,
        *,
        strategy: str = "rag",
        budget: int | None = 2048,
        backend: str | None = None,
        retriever: str | None = None,
        order: str = "chronological",
    ) -> Context:
        """The evidence ``strategy`` packs for ``question`` in a window of ``budget`` tokens
        (prompt + answer; ``None``: the backend's whole window), counted with ``backend``'s
        own tokenizer, without generating: ``ragehr context``."""
        from ragehr.pipeline.spec import prepare_context

        spec = self._spec(strategy=strategy, budget=budget, retriever=retriever, order=order)
        be = self.indexes.backend(backend, budget=spec.budget)
        idx = self.indexes._index(self.patient_id, spec.needs_dense)
        return Context(question, self.patient_id, prepare_context(idx, question, spec, be))

    def ask(
        self,
        question: str,
        *,
        strategy: str = "rag",
        budget: int | None = 2048,
        backend: str | None = None,
        retriever: str | None = None,
        order: str = "chronological",
        max_new_tokens: int | None = None,
        model_path: PathLike | None = None,
        base_url: str | None = None,
        model: str | None = None,
        answer: str | None = None,
        plot: PathLike | None = None,
        cache: bool = True,
        on_token: Callable[[str], None] | None = None,
        **options: Any,
    ) -> AskResult:
        """Answer ``question`` from cited, dated evidence and check that every number and date
        of the answer is in the evidence it cites: ``ragehr ask``. ``backend``: ``extractive``
        (no model), ``transformers``, ``llamacpp``, ``openai`` or ``fake`` (default: the
        config's). ``answer``: ``auto`` (computed from the record's structured events where
        the question is one of their shapes, else generated), ``computed`` or ``generated``
        (default: the config's ``answer``); ``result.answered_by`` says which answered.
        ``plot``: write a computed series answer's chart there (``.svg``, or ``.png`` with the
        ``eval`` extra). ``on_token`` receives the answer as it is generated. Further
        ``options`` go to the pipeline's ``ask`` (e.g. ``retry=False``).
        ``result.to_json()`` is what ``ragehr ask --json`` prints."""
        from ragehr.pipeline.ask import ask as run_ask

        extra = _ask_options(options)
        spec = self._spec(
            strategy=strategy, budget=budget, retriever=retriever, order=order, max_new_tokens=max_new_tokens
        )
        be = self.indexes.backend(
            backend, budget=spec.budget, model_path=model_path, base_url=base_url, model=model, cache=cache
        )
        idx = self.indexes._index(self.patient_id, spec.needs_dense)
        result = run_ask(idx, question, be, spec, on_token=on_token, answer=answer, **extra)
        if plot is not None:
            from ragehr.answers.chart import plot_answer

            plot_answer(result.computed, plot)
        return result


# -- building and evaluating -----------------------------------------------------------


class _StderrProgress:
    """``progress=True``: a line on stderr when a stage starts and at every tenth of it."""

    def __init__(self) -> None:
        self._state: dict[str, list[int]] = {}

    def start(self, task: str, total: int) -> None:
        self._state[task] = [0, total, 0]
        print(f"ragehr: {task}: 0/{total}", file=sys.stderr, flush=True)

    def advance(self, task: str, n: int = 1) -> None:
        st = self._state.get(task)
        if st is None:
            return
        st[0] += n
        done, total, shown = st
        tenth = (10 * done // total) if total else 10
        if tenth > shown or done == total:
            st[2] = tenth
            print(f"ragehr: {task}: {done}/{total}", file=sys.stderr, flush=True)

    def log(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)


def _progress(progress: bool | Progress | None) -> Progress | None:
    if progress is True:
        return _StderrProgress()
    if progress is False or progress is None:
        return None
    return progress


def index_records(
    paths: PathLike | Sequence[PathLike],
    index_dir: PathLike | None = None,
    config: RagehrConfig | PathLike | None = None,
    *,
    progress: bool | Progress = True,
    force: bool = False,
    workers: int = 1,
    patients: Sequence[str] | None = None,
    cache_dir: PathLike | None = None,
) -> list[BuildSummary]:
    """Build (or update) one index per patient from record files, folders of them and cohort
    folders: ``ragehr index``. Returns one :class:`~ragehr.types.BuildSummary` per patient
    (``status`` ``built``, ``unchanged`` or ``failed`` with a ``message``; one bad file does
    not stop the others). ``progress``: ``True`` for lines on stderr, ``False`` for none, or
    an object with ``start(task, total)`` and ``advance(task, n)``."""
    from ragehr.index.build import build_indexes

    if isinstance(paths, (str, Path)):
        paths = [paths]
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, not {workers}")
    return build_indexes(
        [Path(p) for p in paths],
        _index_dir(index_dir),
        _config(config).index,
        force=force,
        workers=workers,
        cache_dir=cache_dir,
        progress=_progress(progress),
        patients=list(patients) if patients is not None else None,
    )


def run_eval(
    config_path: PathLike | ExperimentConfig,
    run: str | None = None,
    fresh: bool = False,
    *,
    progress: bool | Progress = False,
) -> EvalRun:
    """Run (or resume) an experiment config's grid into ``<results_dir>/<run>/``: ``ragehr
    eval``. ``run``: the results folder's name (default: the config's ``name``); ``fresh``:
    discard that run's earlier predictions first. Check :attr:`EvalRun.ok` for the config's
    expected figures."""
    from ragehr.eval.experiment import ExperimentConfig
    from ragehr.eval.runner import run_dir_for, run_experiment

    if isinstance(config_path, ExperimentConfig):
        cfg, text = config_path, None
    else:
        from ragehr.fsutil import read_user_bytes

        cfg = ExperimentConfig.from_file(config_path)
        text = read_user_bytes(config_path, 16 << 20).decode("utf-8")
    # the one ownership rule (ragehr.fsutil.ragehr_made): a run stays inside results_dir, and
    # only a folder holding ragehr's run manifest is written into or deleted
    run_dir = run_dir_for(cfg, run, fresh=fresh)
    metrics = run_experiment(cfg, run_dir, progress=_progress(progress), config_text=text)
    return EvalRun(run_dir=run_dir, metrics=metrics)
