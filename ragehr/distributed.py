"""Distributing cohort work over Ray: the one module that imports ``ray``.

``ragehr index --ray``, ``ragehr ask --questions ... --ray`` and ``ragehr eval --ray`` hand
their per-patient (index, batch) or per-condition (eval) work to Ray tasks:

- :class:`RayCluster` connects to ``ADDRESS`` (``auto``, ``ray://host:10001``, ``host:6379``)
  or, given ``local`` / nothing, starts a private local Ray (no dashboard, a small object
  store) and shuts it down afterwards.
- :func:`ray_map` runs a module-level function on each payload as one Ray task and yields
  ``(position, result)`` as each finishes; a task that raised (or whose worker died) yields
  the exception instead, so one patient's failure never ends the run.
- :func:`build_indexes_ray` parses unknown files in one wave of tasks (records stay in Ray's
  object store), groups them by patient, and builds each patient's index in a second wave,
  with the same :func:`ragehr.index.build.build_indexes` the single-process run uses.

Workers load models once per process (:func:`ragehr.pipeline.batch.shared_embedder` and
``shared_backend``): a Ray worker process runs many tasks. Every worker reads and writes
indexes at the given path, so on several machines that path must be a shared filesystem
(NFS, Lustre, a mounted bucket) at the same mount point everywhere.

Without Ray installed, :func:`require_ray` raises a :class:`~ragehr.errors.ConfigError`
naming the extra to install.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from ragehr.errors import ConfigError, RagehrError, show_id

__all__ = ["LOCAL", "RayCluster", "build_indexes_ray", "is_address", "ray_map", "require_ray"]

log = logging.getLogger(__name__)

LOCAL = "local"
"""The address meaning: start a private Ray on this machine."""
OBJECT_STORE_BYTES = 200 * 1024 * 1024
"""The local Ray's object store: parsed records pass through it (and spill to disk past it)."""
_ADDRESS = re.compile(r"^(auto|local|ray://\S+|[A-Za-z0-9_.\-\[\]:]+:\d+)$")


def is_address(value: str) -> bool:
    """Whether ``value`` reads as a Ray address (``auto``, ``local``, ``ray://...``,
    ``host:port``) rather than a path or another argument."""
    return bool(_ADDRESS.match(value))


def require_ray() -> Any:
    """The ``ray`` module, or a one-line :class:`ConfigError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "--ray needs Ray, which is not installed: pip install 'ragehr[ray]' "
            "(or leave out --ray to run in this process)"
        ) from None
    return ray


class RayCluster:
    """A connection to Ray for the length of a ``with`` block.

    ``address``: ``None`` or ``local`` starts a private local Ray with ``num_cpus`` CPUs
    (default: all) that is shut down on exit; anything else connects to that cluster (which
    is left running). When Ray is already initialised in this process it is reused."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None) -> None:
        if address is not None and not is_address(address):
            raise ConfigError(f"--ray: {address!r} is not a Ray address (auto, local, ray://HOST:PORT, HOST:PORT)")
        self.address = address or LOCAL
        self.num_cpus = num_cpus
        self._started = False

    def __enter__(self) -> RayCluster:
        ray = require_ray()
        if ray.is_initialized():
            return self
        here = str(Path(__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in [here, os.environ.get("PYTHONPATH", "")] if p)
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            # workers import ragehr from the same place as the driver
            "runtime_env": {"env_vars": {"PYTHONPATH": path}},
        }
        if self.address == LOCAL:
            kwargs.update(
                address="local",
                num_cpus=self.num_cpus or os.cpu_count() or 1,
                object_store_memory=OBJECT_STORE_BYTES,
            )
        else:
            kwargs["address"] = self.address
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"--ray {self.address}: cannot start or reach Ray ({str(exc).splitlines()[0][:200]})"
            ) from None
        self._started = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._started:
            require_ray().shutdown()
            self._started = False


def _cause(exc: BaseException) -> BaseException:
    """The exception a task raised, unwrapped from Ray's ``RayTaskError``."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def describe_failure(exc: BaseException) -> str:
    """One line for a failed task: a ragehr error's own message (which never holds note
    text), otherwise only the exception's type."""
    exc = _cause(exc)
    if isinstance(exc, RagehrError):
        return str(exc)
    return f"{type(exc).__name__} in a Ray worker; rerun without --ray (or with --debug) to see it"


def _enter(cwd: str) -> None:
    """Work from the driver's folder, so relative paths (and the event ids hashed from the
    file names as given) are the same as in a single-process run. On another node the folder
    may not exist: then paths must be absolute ones on the shared filesystem."""
    try:
        os.chdir(cwd)
    except OSError:
        pass


def _call(cwd: str, fn: Callable[[Any], Any], payload: Any) -> Any:
    _enter(cwd)
    return fn(payload)


def ray_map(fn: Callable[[Any], Any], payloads: Sequence[Any], *, num_cpus: float = 1) -> Iterator[tuple[int, Any]]:
    """Run ``fn(payload)`` for each payload as a Ray task (Ray must be initialised, see
    :class:`RayCluster`); yield ``(position, result)`` in the order tasks finish, with the
    task's exception as the result of one that failed. Tasks are not retried."""
    ray = require_ray()
    if not payloads:
        return
    remote = ray.remote(num_cpus=num_cpus, max_retries=0)(_call)
    cwd = os.getcwd()
    refs = {remote.remote(cwd, fn, p): i for i, p in enumerate(payloads)}
    while refs:
        ready, _ = ray.wait(list(refs), num_returns=1)
        for ref in ready:
            i = refs.pop(ref)
            try:
                yield i, ray.get(ref)
            except Exception as exc:
                yield i, _cause(exc)


# -- indexing ---------------------------------------------------------------------------------


def _parse_task(cwd: str, path: str) -> tuple[str | None, Any]:
    """(patient id, record), or (None, the problem) for a file that cannot be parsed."""
    from ragehr.ehr import load_record

    _enter(cwd)
    try:
        rec = load_record(path)
    except RagehrError as exc:
        return None, str(exc)
    return rec.patient_id, rec


def _build_task(
    cwd: str,
    files: list[str],
    slices: list[Any],
    index_dir: str,
    config: Any,
    force: bool,
    cache_dir: str | None,
    merge_conflicting: bool,
    parsed_files: list[str],
    *records: Any,
) -> list[Any]:
    from ragehr.index.build import build_indexes
    from ragehr.pipeline.batch import shared_embedder

    _enter(cwd)
    root = str(Path(cache_dir) if cache_dir else Path(index_dir) / ".cache" / "embeddings")
    cache = _EMBEDDING_CACHES.get(root)
    if cache is None:
        from ragehr.embeddings.cache import EmbeddingCache

        cache = _EMBEDDING_CACHES[root] = EmbeddingCache(Path(root))
    return build_indexes(
        files,
        index_dir,
        config,
        force=force,
        cache_dir=cache_dir,
        embedder=shared_embedder(config.embedder, index_dir),
        parsed=dict(zip(map(Path, parsed_files), records)),
        slices=slices,
        embedding_cache=cache,
        merge_conflicting=merge_conflicting,
    )


_EMBEDDING_CACHES: dict[str, Any] = {}
"""One opened embedding cache per folder per worker process: its shards are read once, not
once per patient (vectors other workers store meanwhile are not seen, only re-computed)."""


def build_indexes_ray(
    paths: Sequence[str | Path],
    index_dir: str | Path,
    config: Any = None,
    *,
    force: bool = False,
    cache_dir: str | Path | None = None,
    progress: Any = None,
    patients: Collection[str] | None = None,
    merge_conflicting: bool = False,
) -> list[Any]:
    """:func:`ragehr.index.build.build_indexes` spread over Ray (initialised by the caller):
    the same summaries, one per patient and one per failed file. Record files are parsed in
    one wave of tasks, cohort folders (FHIR Bulk, OMOP) are scanned here once, and each
    patient's index is built by one task. A patient whose task fails gets a ``failed``
    summary; the others are built."""
    ray = require_ray()
    from ragehr.config import IndexConfig
    from ragehr.ehr.cohort import alias_map, inside_any, select, split_cohorts
    from ragehr.index import store
    from ragehr.index.build import NullProgress, expand_paths
    from ragehr.types import BuildSummary

    config = config or IndexConfig()
    progress = progress or NullProgress()
    index_dir = Path(index_dir)
    store.check_index_dir(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    cohorts, plain = split_cohorts(paths)
    files, missing = expand_paths(plain) if plain else ([], [])
    files = [f for f in files if not inside_any(f, cohorts)]
    summaries: list[Any] = [
        BuildSummary(patient_id="", index_path=str(p), status="failed", message=f"{p}: {why}") for p, why in missing
    ]
    slices: list[Any] = []
    for c in cohorts:  # the first pass keeps positions only; patients are read by the tasks
        progress.start("scanning", c.n_files())
        scan = c.scan(on_file=lambda _f: progress.advance("scanning"))
        summaries.extend(
            BuildSummary(patient_id="", index_path=str(c.folder), status="failed", message=m) for m in scan.problems
        )
        slices.extend(scan.slices)
    slices = select(slices, patients)  # over every cohort at once, as build_indexes does
    # Which patient is each file? Known sha256s answer without parsing (as build_indexes does).
    manifests = store.list_manifests(index_dir)
    by_sha = {s.sha256: m.patient_id for m in manifests for s in m.sources}
    patient_of: dict[Path, str] = {}
    record_ref: dict[Path, Any] = {}
    to_parse = []
    for f in files:
        pid = None if force else by_sha.get(store.sha256_file(f))
        if pid is None:
            to_parse.append(f)
        else:
            patient_of[f] = pid
    parse = ray.remote(num_cpus=1, max_retries=0, num_returns=2)(_parse_task)
    if files:
        progress.start("files", len(to_parse))
    pending = {}
    for f in to_parse:
        pid_ref, rec_ref = parse.remote(cwd, str(f))
        pending[pid_ref] = (f, rec_ref)
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            f, rec_ref = pending.pop(ref)
            progress.advance("files")
            try:
                pid = ray.get(ref)
                problem = ray.get(rec_ref) if pid is None else None
            except Exception as exc:
                pid, problem = None, describe_failure(exc)
            if pid is None:
                summaries.append(BuildSummary(patient_id="", index_path=str(f), status="failed", message=problem))
            else:
                patient_of[f] = pid
                record_ref[f] = rec_ref
    groups: dict[str, tuple[list[Path], list[Any]]] = {}
    for f in files:
        if f in patient_of:
            groups.setdefault(patient_of[f], ([], []))[0].append(f)
    for sl in slices:
        groups.setdefault(sl.patient_id, ([], []))[1].append(sl)
    if patients is not None:  # as build_indexes: a cohort patient also by its alias
        alias = alias_map(slices)
        keep = {alias.get(p, p) for p in patients}
        groups = {pid: g for pid, g in groups.items() if pid in keep}
        summaries.extend(
            BuildSummary(
                patient_id=p,
                index_path="",
                status="failed",
                exit_code=2,
                message=f"patient {show_id(p)}: not found in the given sources",
            )
            for p in sorted(set(patients))
            if alias.get(p, p) not in groups
        )
    build = ray.remote(num_cpus=1, max_retries=0)(_build_task)
    progress.start("patients", len(groups))
    jobs = {}
    for pid, (group, group_slices) in groups.items():
        parsed = [f for f in group if f in record_ref]
        ref = build.remote(
            cwd,
            [str(f) for f in group],
            group_slices,
            str(index_dir),
            config,
            force,
            None if cache_dir is None else str(cache_dir),
            merge_conflicting,
            [str(f) for f in parsed],
            *[record_ref[f] for f in parsed],
        )
        jobs[ref] = pid
    by_patient: dict[str, list[Any]] = {}
    while jobs:
        ready, _ = ray.wait(list(jobs), num_returns=1)
        for ref in ready:
            pid = jobs.pop(ref)
            progress.advance("patients")
            try:
                by_patient[pid] = ray.get(ref)
            except Exception as exc:
                by_patient[pid] = [
                    BuildSummary(
                        patient_id=pid,
                        index_path=str(store.patient_dir(index_dir, pid)),
                        status="failed",
                        message=f"patient {pid}: {describe_failure(exc)}",
                    )
                ]
    for pid in groups:  # the single-process order: patients as their sources came
        summaries.extend(by_patient[pid])
    return summaries
