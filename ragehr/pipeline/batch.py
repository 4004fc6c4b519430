"""Batch mode: many questions about many patients in one process (``ragehr ask|context
--questions Q.jsonl --out A.jsonl``).

Each input line is a JSON object: ``question``, ``patient_id``, an optional ``id`` (default
``line-N``) and optional per-line overrides of ``strategy``, ``budget``, ``retriever``,
``order``, ``max_new_tokens`` and ``answer`` (``auto`` | ``computed`` | ``generated``: a
computed answer is made on the calling thread; a question the computed path declines goes to
the generator as in ``ask``; with a concurrent backend, generations run in the pool without
the Self-Route retry). Each question gives one JSON line in the output: what
``ragehr ask --json`` (or ``context --json``) prints, plus ``id`` and ``line``; a question that
fails gives ``{"id", "line", "patient_id", "error", "exit_code"}`` instead.

- Models load once: one backend, and one embedder per embedder spec per process
  (:func:`shared_embedder`, :func:`shared_backend`), also in Ray workers.
- Indexes open once per patient and stay in a bounded LRU cache (:class:`IndexCache`);
  questions are taken patient by patient so each index is opened once.
- Resumable: ids already answered in the output are skipped. A line cut by a kill and the
  lines of failed questions are dropped from the output and redone.
- A bad input line (not JSON, a missing field, an unknown strategy, a duplicate id) is
  reported with its line number and skipped; the others still run.
- Backends that take concurrent requests (``LLMBackend.concurrency > 1``, the ``openai``
  backend) get that many generations in flight from a thread pool; contexts are prepared on
  the calling thread (indexes and embedders are not shared between threads).

The work itself can be handed to a ``mapper`` (e.g. :func:`ragehr.distributed.ray_map`) that runs
:func:`answer_group` on each patient's questions elsewhere; the output is written here.
This module never prints: it reports through callbacks.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from ragehr.config import LLMConfig, stable_hash
from ragehr.errors import ConfigError, RagehrError
from ragehr.fsutil import (
    MAX_JSONL_LINE_BYTES,
    MAX_TEXT_FILE_BYTES,
    FileTooLargeError,
    NotRegularFileError,
    atomic_write_text,
    iter_bounded_lines,
    open_regular,
    output_problem,
    read_user_bytes,
)
from ragehr.index.search import PatientIndex, load_patient_index
from ragehr.llm.base import LLMBackend
from ragehr.pipeline.ask import try_computed
from ragehr.pipeline.spec import ContextSpec, prepare_context

__all__ = [
    "OVERRIDES",
    "BackendRecipe",
    "BatchQuestion",
    "BatchSummary",
    "IndexCache",
    "LineError",
    "answer_group",
    "check_out_path",
    "iter_answers",
    "read_done",
    "read_questions",
    "read_questions_from_lines",
    "run_batch",
    "shared_backend",
    "shared_embedder",
    "worker_indexes",
]

log = logging.getLogger(__name__)

Mode = Literal["ask", "context"]
OVERRIDES: dict[str, tuple[type, ...]] = {
    "strategy": (str,),
    "budget": (int,),
    "retriever": (str,),
    "order": (str,),
    "max_new_tokens": (int,),
    "answer": (str,),
}
"""Per-line overrides of the command's :class:`ContextSpec`, with their JSON types."""
_FIELDS = {"question", "patient_id", "id"} | set(OVERRIDES)


# -- per-process model caches (one load per process, also per Ray worker) -------------------

_lock = threading.Lock()
_EMBEDDERS: dict[str, Any] = {}
_BACKENDS: dict[str, LLMBackend] = {}


def shared_embedder(spec: str, index_dir: str | Path | None = None) -> Any:
    """The embedder named ``spec``, loaded once per process (``static`` from the models
    folder of ``index_dir``, see :func:`ragehr.embeddings.static.default_models_dir`)."""
    from ragehr.embeddings.static import default_models_dir

    models_dir = default_models_dir(index_dir)
    key = f"{spec}\0{models_dir}"
    with _lock:
        emb = _EMBEDDERS.get(key)
        if emb is None:
            from ragehr.embeddings import QueryLRU, load_embedder

            emb = _EMBEDDERS[key] = QueryLRU(load_embedder(spec, models_dir=models_dir))
        return emb


@dataclass(frozen=True)
class BackendRecipe:
    """How to build the answering backend, as plain data that can travel to another process
    (the arguments of :func:`ragehr.llm.registry.backend_from_config`)."""

    llm: LLMConfig = field(default_factory=LLMConfig)
    name: str | None = None
    window: int | None = None
    model_path: str | None = None
    base_url: str | None = None
    model: str | None = None
    cache_dir: str | None = None
    model_cache_dir: str | None = None
    """Where ``transformers`` keeps converted weights (the index dir's ``.cache/models``)."""

    def key(self) -> str:
        return stable_hash({**self.__dict__, "llm": self.llm.model_dump(mode="json")})

    def build(self) -> LLMBackend:
        from ragehr.llm.registry import backend_from_config

        return backend_from_config(
            self.llm,
            self.name,
            window=self.window,
            model_path=self.model_path,
            base_url=self.base_url,
            model=self.model,
            cache_dir=self.cache_dir,
            model_cache_dir=self.model_cache_dir,
        )


def shared_backend(recipe: BackendRecipe) -> LLMBackend:
    """The backend ``recipe`` describes, built once per process (a local model loads once
    per worker, not once per task)."""
    key = recipe.key()
    with _lock:
        be = _BACKENDS.get(key)
        if be is None:
            be = _BACKENDS[key] = recipe.build()
        return be


class IndexCache:
    """Opened patient indexes, at most ``size`` of them, least recently used dropped first.
    Every index shares the process's embedder (:func:`shared_embedder`)."""

    def __init__(self, index_dir: str | Path, size: int = 8) -> None:
        if size < 1:
            raise ConfigError(f"the index cache holds at least 1 index, not {size}")
        self.index_dir = Path(index_dir)
        self.size = size
        self.opened = 0
        self._cache: OrderedDict[str, PatientIndex] = OrderedDict()

    def get(self, patient_id: str, need_dense: bool) -> PatientIndex:
        idx = self._cache.get(patient_id)
        if idx is not None and (idx.dense is not None or not need_dense):
            self._cache.move_to_end(patient_id)
            return idx
        embedder = None
        if need_dense:
            from ragehr.index import store

            try:
                m = store.read_manifest(store.patient_dir(self.index_dir, patient_id))
                embedder = shared_embedder(m.config.get("embedder", "minilm"), self.index_dir)
            except RagehrError:
                embedder = None  # load_patient_index raises the precise error
        idx = load_patient_index(self.index_dir, patient_id, need_dense=need_dense, embedder=embedder)
        self.opened += 1
        self._cache[patient_id] = idx
        self._cache.move_to_end(patient_id)
        while len(self._cache) > self.size:
            self._cache.popitem(last=False)
        return idx

    def __len__(self) -> int:
        return len(self._cache)


# -- input ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchQuestion:
    line: int
    id: str
    question: str
    patient_id: str
    spec: ContextSpec


@dataclass(frozen=True)
class LineError:
    """One question (or input line) that gave no answer."""

    line: int
    id: str | None
    patient_id: str | None
    message: str
    exit_code: int = 1

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "line": self.line,
            "patient_id": self.patient_id,
            "error": self.message,
            "exit_code": self.exit_code,
        }

    def __str__(self) -> str:
        who = f" ({self.id})" if self.id else ""
        return f"line {self.line}{who}: {self.message}"


def _parse_line(n: int, text: str, base: ContextSpec) -> BatchQuestion:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise ConfigError("not a JSON object")
    unknown = sorted(set(obj) - _FIELDS)
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(unknown)} (valid: {', '.join(sorted(_FIELDS))})")
    q, pid = obj.get("question"), obj.get("patient_id")
    if not isinstance(q, str) or not q.strip():
        raise ConfigError("`question` must be a non-empty string")
    if not isinstance(pid, str) or not pid.strip():
        raise ConfigError("`patient_id` must be a non-empty string")
    qid = obj.get("id", f"line-{n}")
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or str(qid) == "":
        raise ConfigError("`id` must be a non-empty string or an integer")
    changes: dict[str, Any] = {}
    for name, types in OVERRIDES.items():
        if name not in obj:
            continue
        v = obj[name]
        if v is None and name == "budget":
            changes[name] = None  # the backend's whole window
            continue
        if isinstance(v, bool) or not isinstance(v, types):
            raise ConfigError(f"`{name}` must be {'an integer' if types == (int,) else 'a string'}")
        changes[name] = v
    spec = replace(base, **changes) if changes else base
    return BatchQuestion(line=n, id=str(qid), question=q, patient_id=pid, spec=spec)


def read_questions(path: str | Path, base: ContextSpec) -> tuple[list[BatchQuestion], list[LineError]]:
    """The questions of a JSON-lines file, and one :class:`LineError` per bad line (blank
    lines are skipped). A missing, unreadable or non-regular file (a FIFO, a device) or one
    over :data:`~ragehr.fsutil.MAX_TEXT_FILE_BYTES` is a :class:`ConfigError`, raised before
    any read; a line over :data:`~ragehr.fsutil.MAX_JSONL_LINE_BYTES` is a bad line (never
    read whole)."""
    p = Path(path)
    lines: list[str] = []
    too_long: list[LineError] = []
    try:
        with os.fdopen(open_regular(p, max_bytes=MAX_TEXT_FILE_BYTES), "rb") as fh:
            for n, _start, raw, size in iter_bounded_lines(fh, MAX_JSONL_LINE_BYTES):
                if raw is None:
                    lines.append("")
                    too_long.append(
                        LineError(
                            n,
                            None,
                            None,
                            f"line is {size} bytes, over the {MAX_JSONL_LINE_BYTES}-byte limit; skipped",
                            2,
                        )
                    )
                    continue
                lines.append(raw.decode("utf-8").rstrip("\r\n"))
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such questions file") from None
    except (NotRegularFileError, FileTooLargeError) as exc:
        raise ConfigError(f"{p}: questions file {exc.strerror}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the questions file ({type(exc).__name__})") from None
    good, bad = read_questions_from_lines(lines, base)
    return good, sorted([*bad, *too_long], key=lambda e: e.line)


def read_questions_from_lines(lines: Sequence[str], base: ContextSpec) -> tuple[list[BatchQuestion], list[LineError]]:
    """:func:`read_questions` on lines already read (numbered from 1)."""
    good: list[BatchQuestion] = []
    bad: list[LineError] = []
    seen: dict[str, int] = {}
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            q = _parse_line(n, text, base)
        except ConfigError as exc:
            bad.append(LineError(n, None, None, str(exc), exc.exit_code))
            continue
        if q.id in seen:
            bad.append(LineError(n, q.id, q.patient_id, f"duplicate id (first on line {seen[q.id]})", 2))
            continue
        seen[q.id] = n
        good.append(q)
    return good, bad


def _is_answer_line(obj: Any, mode: Mode) -> bool:
    """Whether ``obj`` is a line ragehr's batch ``mode`` writes: an answer (``ask``) or a
    context (``context``) for one question, or the error line of one."""
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not isinstance(obj.get("line"), int):
        return False
    if "error" in obj:
        return isinstance(obj.get("error"), str) and isinstance(obj.get("exit_code"), int)
    if not isinstance(obj.get("question"), str) or not isinstance(obj.get("chunks"), list):
        return False
    return ("answer" in obj) == (mode == "ask")


def check_out_path(out: str | Path, inputs: Sequence[str | Path] = ()) -> None:
    """Refuse an ``--out`` that is one of the ``inputs`` (the same file by path, link or hard
    link), a folder, or a special file (a FIFO, a device)."""
    problem = output_problem(out, [(src, "the input file") for src in inputs], "--out")
    if problem is not None:
        raise ConfigError(problem)


def read_done(out: str | Path, mode: Mode = "ask") -> set[str]:
    """Ids already answered in ``out``, an earlier run's output of this ``mode``. Refuses
    (:class:`ConfigError`, the file untouched) an ``out`` that holds any line that is not
    ragehr's: an existing file of the user's is never rewritten. When every line is ragehr's,
    the file is replaced (a new file, then renamed) by its complete answers, so a line cut by
    a kill and the lines of failed questions are redone."""
    p = Path(out)
    if not os.path.lexists(p):
        return set()
    try:
        raw = read_user_bytes(p).decode("utf-8")
    except (NotRegularFileError, FileTooLargeError) as exc:
        raise ConfigError(f"{p}: --out {exc.strerror}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: --out exists and cannot be read ({type(exc).__name__}); it is left as it is") from None
    kept: list[str] = []
    done: set[str] = set()
    lines = raw.split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            obj = None
        if i == len(lines):
            # no newline after it: the line a kill cut short, if it starts as ragehr's lines do
            if obj is None and line.startswith('{"id": '):
                continue
        if not _is_answer_line(obj, mode):
            raise ConfigError(
                f"{p}: --out exists and line {i} is not a ragehr `{mode}` answer line; ragehr never rewrites "
                "a file it did not write: give a new file name"
            )
        if "error" not in obj:
            done.add(obj["id"])
            kept.append(line)
    text = "".join(line + "\n" for line in kept)
    if text != raw:
        atomic_write_text(p, text)
    return done


# -- the work -------------------------------------------------------------------------------


def _error(q: BatchQuestion, exc: BaseException) -> LineError:
    if isinstance(exc, RagehrError):
        return LineError(q.line, q.id, q.patient_id, str(exc), exc.exit_code)
    # a bug: name it without echoing data that may hold patient text
    log.debug("question %s failed", q.id, exc_info=exc)
    return LineError(q.line, q.id, q.patient_id, f"internal error ({type(exc).__name__})", 1)


def _context_row(q: BatchQuestion, prep: Any) -> dict[str, Any]:
    from ragehr.pipeline.context import context_json

    return {
        "id": q.id,
        "line": q.line,
        "question": q.question,
        "patient_id": q.patient_id,
        **context_json(prep.context, prep.window),
    }


def _answer(
    q: BatchQuestion,
    prep: Any,
    backend: LLMBackend,
    seed: int,
    t_ctx: float,
    declined: str | None = None,
    index: Any = None,
) -> dict[str, Any]:
    from dataclasses import replace as _replace

    from ragehr.pipeline.ask import answer_prepared

    r = answer_prepared(prep, q.question, q.patient_id, backend, seed=seed, context_seconds=t_ctx, index=index)
    if declined is not None:
        r = _replace(r, answer_reason=f"computed path declined: {declined}; {r.answer_reason}")
    return {"id": q.id, "line": q.line, **r.to_json()}


Result = tuple[BatchQuestion, "dict[str, Any] | LineError"]


def iter_answers(
    questions: Iterable[BatchQuestion],
    indexes: IndexCache,
    backend: LLMBackend,
    mode: Mode = "ask",
    *,
    seed: int = 0,
    concurrency: int | None = None,
) -> Iterator[Result]:
    """Answer (``ask``) or select context for (``context``) each question, yielding
    ``(question, row or LineError)`` as each finishes (not necessarily in order). Never
    raises for one question's failure. ``concurrency`` (default: the backend's) bounds the
    generations in flight."""
    n = max(1, concurrency or getattr(backend, "concurrency", 1)) if mode == "ask" else 1
    pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="ragehr-gen") if n > 1 else None
    pending: dict[Future, BatchQuestion] = {}

    def drain(block: bool) -> Iterator[Result]:
        if not pending:
            return
        done, _ = wait(list(pending), timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for fut in done:
            q = pending.pop(fut)
            exc = fut.exception()
            yield (q, _error(q, exc)) if exc is not None else (q, fut.result())

    try:
        for q in questions:
            t0 = time.perf_counter()
            declined = None
            try:
                idx = indexes.get(q.patient_id, q.spec.needs_dense)
                if mode == "ask" and q.spec.answer != "generated":
                    # the computed answer (fast, reads the index) here; the generator, when the
                    # computed path declines, in the pool as for `generated`
                    done, prep, declined, _ = try_computed(idx, q.question, q.spec, backend, q.spec.answer)
                    if done is not None:
                        yield q, {"id": q.id, "line": q.line, **done.to_json()}
                        continue
                else:
                    prep = prepare_context(idx, q.question, q.spec, backend)
            except Exception as exc:
                yield q, _error(q, exc)
                continue
            t_ctx = time.perf_counter() - t0
            if mode == "context":
                yield q, _context_row(q, prep)
                continue
            if pool is None:
                try:
                    # on this thread, ``auto`` gets the Self-Route retry as in ``ask``
                    retry_on = idx if q.spec.answer == "auto" else None
                    yield q, _answer(q, prep, backend, seed, t_ctx, declined, retry_on)
                except Exception as exc:
                    yield q, _error(q, exc)
                continue
            pending[pool.submit(_answer, q, prep, backend, seed, t_ctx, declined)] = q
            yield from drain(block=len(pending) >= 2 * n)
        while pending:
            yield from drain(block=True)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass(frozen=True)
class GroupJob:
    """One unit of distributed batch work: some questions, and how to answer them."""

    questions: tuple[BatchQuestion, ...]
    index_dir: str
    recipe: BackendRecipe
    mode: Mode
    seed: int = 0
    cache_size: int = 8


_WORKER_INDEXES: dict[str, IndexCache] = {}


def worker_indexes(index_dir: str | Path, size: int = 8) -> IndexCache:
    """This process's index cache for ``index_dir`` (kept across the tasks a worker runs)."""
    key = str(index_dir)
    with _lock:
        cache = _WORKER_INDEXES.get(key)
        if cache is None:
            cache = _WORKER_INDEXES[key] = IndexCache(index_dir, size)
        return cache


def answer_group(job: GroupJob) -> list[Result]:
    """Run ``job`` in this process with its per-process backend, embedder and index cache
    (the function a Ray task runs)."""
    try:
        backend = shared_backend(job.recipe)
    except Exception as exc:
        return [(q, _error(q, exc)) for q in job.questions]
    cache = worker_indexes(job.index_dir, job.cache_size)
    return list(iter_answers(job.questions, cache, backend, job.mode, seed=job.seed))


class Mapper(Protocol):
    """Runs ``fn`` on each payload somewhere else; yields ``(position, result)`` as each
    finishes, with an exception as the result of a payload that failed."""

    def __call__(self, fn: Callable[[Any], Any], payloads: Sequence[Any]) -> Iterator[tuple[int, Any]]: ...


class Progress(Protocol):
    def start(self, task: str, total: int) -> None: ...

    def advance(self, task: str, n: int = 1) -> None: ...


@dataclass
class BatchSummary:
    total: int
    """Well-formed questions in the file."""
    bad_lines: int
    skipped: int
    """Already answered in the output by an earlier run."""
    answered: int
    failures: list[LineError]
    seconds: float
    indexes_opened: int | None = None

    @property
    def exit_code(self) -> int:
        """0 when nothing failed; the failures' exit code when they share one, else 1."""
        codes = {f.exit_code for f in self.failures}
        if not codes:
            return 0
        return codes.pop() if len(codes) == 1 else 1

    def line(self) -> str:
        rate = self.answered / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.answered} answered, {len(self.failures)} failed, {self.skipped} already done "
            f"(of {self.total} questions; {self.bad_lines} bad line(s)) in {self.seconds:.1f}s ({rate:.2f}/s)"
        )


def _by_patient(questions: Sequence[BatchQuestion]) -> list[list[BatchQuestion]]:
    groups: dict[str, list[BatchQuestion]] = {}
    for q in questions:
        groups.setdefault(q.patient_id, []).append(q)
    return list(groups.values())


def run_batch(
    questions_path: str | Path,
    out_path: str | Path,
    *,
    index_dir: str | Path,
    base_spec: ContextSpec,
    recipe: BackendRecipe,
    mode: Mode = "ask",
    seed: int = 0,
    cache_size: int = 8,
    concurrency: int | None = None,
    mapper: Mapper | None = None,
    progress: Progress | None = None,
    on_error: Callable[[LineError], None] | None = None,
) -> BatchSummary:
    """Answer every question of ``questions_path`` into ``out_path`` (appending; resuming a
    killed run). With ``mapper`` each patient's questions run as one job there (e.g. a Ray
    task); else here. Bad lines and failed questions go to ``on_error`` and the summary."""
    t0 = time.perf_counter()
    out = Path(out_path)
    check_out_path(out, [questions_path])
    good, bad = read_questions(questions_path, base_spec)
    failures: list[LineError] = []

    def fail(e: LineError) -> None:
        failures.append(e)
        if on_error is not None:
            on_error(e)

    done = read_done(out, mode)
    for e in bad:
        fail(e)
    todo = [q for q in good if q.id not in done]
    if recipe.window is not None and todo:
        # a backend that sizes its window up front (local) must fit the largest line's budget
        budgets = [q.spec.budget for q in todo]
        recipe = replace(recipe, window=None if None in budgets else max(b for b in budgets if b is not None))
    groups = _by_patient(todo)
    if progress is not None:
        progress.start("questions", len(todo))
    answered = 0
    indexes_opened = None
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "a", encoding="utf-8") as fh:

        def write(q: BatchQuestion, result: dict[str, Any] | LineError) -> None:
            nonlocal answered
            if isinstance(result, LineError):
                fail(result)
                row = result.to_json()
            else:
                answered += 1
                row = result
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            fh.flush()
            if progress is not None:
                progress.advance("questions")

        if mapper is None:
            if todo:
                backend = recipe.build()
                cache = IndexCache(index_dir, cache_size)
                ordered = [q for g in groups for q in g]
                for q, result in iter_answers(ordered, cache, backend, mode, seed=seed, concurrency=concurrency):
                    write(q, result)
                indexes_opened = cache.opened
        else:
            if todo:
                recipe.build()  # a bad backend option is one error here, not one per question there
            jobs = [GroupJob(tuple(g), str(index_dir), recipe, mode, seed, cache_size) for g in groups]
            for i, result in mapper(answer_group, jobs):
                if isinstance(result, BaseException):
                    msg = (
                        f"worker failed ({str(result).splitlines()[0][:200] if str(result) else type(result).__name__})"
                    )
                    for q in jobs[i].questions:
                        write(q, LineError(q.line, q.id, q.patient_id, msg, 1))
                    continue
                for q, r in result:
                    write(q, r)
    return BatchSummary(
        total=len(good),
        bad_lines=len(bad),
        skipped=len(good) - len(todo),
        answered=answered,
        failures=failures,
        seconds=time.perf_counter() - t0,
        indexes_opened=indexes_opened,
    )
