"""Building per-patient indexes from record files.

parse -> merge the files of each patient (exact duplicate events removed) -> chunk -> BM25 ->
embed (through the embedding cache) -> dense -> write to a temporary folder -> swap it in.

Re-indexing unchanged files with the same config is a no-op decided from sha256s alone, with
no parsing (after checking the index's own files against its manifest: sizes and mtimes, then
sha256s where they differ). An index is written and swapped in under its patient's lock
(:func:`store.patient_lock`), and only into a folder that is absent or a ragehr index
(:func:`store.check_replaceable`): anything else is a failed summary, never touched. Files
that carry a patient id already indexed are merged into that patient's
index together with its earlier sources that are still on disk. One bad file is reported and
skipped; the others are indexed.

Cohort folders (a FHIR Bulk Data export, OMOP CDM tables; :mod:`ragehr.ehr.cohort`) are split
into one slice per patient by a first pass that keeps only positions; each slice's content
fingerprint stands in for a file's sha256, so a re-run rebuilds only the patients whose data
changed, and patients are parsed one at a time (``workers`` at a time with ``workers > 1``).

Sources grouped under one bare id (a MedAlign file, a FHIR Bundle, a bulk or OMOP patient with
the same id) are one patient only when they agree on who that is: sources that disagree on sex
or birth date (:func:`demographic_conflict`) are a failed summary naming both, and nothing of
that patient is built, unless the caller merges explicitly (``merge_conflicting``,
``ragehr index --merge-conflicting``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from ragehr import __version__
from ragehr.chunking import chunk_record
from ragehr.config import IndexConfig
from ragehr.ehr import load_record
from ragehr.ehr.cohort import SLICE_MARK, PatientSlice, alias_map, ambiguous_aliases, inside_any, select, split_cohorts
from ragehr.errors import InputError, NotAnIndexError, RagehrError, show_id
from ragehr.fsutil import regular_file_problem
from ragehr.index import store
from ragehr.tokens import EstimateCounter
from ragehr.types import BuildSummary, Demographics, IndexManifest, PatientRecord, SourceFile

log = logging.getLogger(__name__)

RECORD_SUFFIXES = {".xml", ".json", ".ndjson", ".jsonl", ".ccd", ".ccda", ".cda", ".fhir"}

KEEP_PARSED_EVENTS = 50_000
"""How many parsed events the first pass keeps for building (three MedAlign-median
records). Files must all be parsed before any patient is built (a patient's files are known
only once every file's patient id is), so beyond this the records are dropped after the pass
and parsed again when their patient is built: a cohort's peak memory is this much plus one
patient's build, whatever the cohort's size (``benchmarks/bench_memory.py``)."""


class Progress(Protocol):
    """What the builder reports; the CLI draws bars, tests pass nothing."""

    def start(self, task: str, total: int) -> None: ...

    def advance(self, task: str, n: int = 1) -> None: ...


class NullProgress:
    def start(self, task: str, total: int) -> None:
        pass

    def advance(self, task: str, n: int = 1) -> None:
        pass


def expand_paths(paths: Iterable[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Files named directly, and record files found under folders (by suffix, recursively,
    hidden files skipped). Returns (files, [(path, problem)] for paths that do not exist)."""
    files: list[Path] = []
    missing: list[tuple[Path, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in RECORD_SUFFIXES
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not found:
                missing.append((p, "folder holds no record files (.xml, .json, .ndjson)"))
            files.extend(found)
        elif (problem := regular_file_problem(p)) is None:
            files.append(p)
        else:
            missing.append((p, problem))  # a FIFO or device is refused before any read
    seen: set[Path] = set()
    unique = []
    for f in files:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique, missing


def merge_records(records: Sequence[PatientRecord]) -> tuple[PatientRecord, int]:
    """One record from several of the same patient; exact duplicate events (same content,
    whatever the file) kept once. Returns (record, number of duplicates removed)."""
    if len(records) == 1 and len({e.content_key() for e in records[0].events}) == len(records[0].events):
        return records[0], 0
    seen: set[tuple] = set()
    events = []
    removed = 0
    for r in records:
        for e in r.events:
            key = e.content_key()
            if key in seen:
                removed += 1
                continue
            seen.add(key)
            events.append(e)
    demo: dict[str, object] = {}
    for r in records:
        for k, v in r.demographics.model_dump().items():
            if v is not None and demo.get(k) is None:
                demo[k] = v
    formats = {r.format for r in records}
    merged = PatientRecord(
        patient_id=records[0].patient_id,
        format=formats.pop() if len(formats) == 1 else "merged",
        demographics=Demographics(**demo),
        events=tuple(events),
        sources=tuple(s for r in records for s in r.sources),
        warnings=tuple(w for r in records for w in r.warnings),
    )
    return merged, removed


_SEX = {"f": "female", "female": "female", "woman": "female", "m": "male", "male": "male", "man": "male"}


def _sex(g: str | None) -> str | None:
    if not g or not g.strip():
        return None
    g = g.strip().lower()
    return _SEX.get(g, g)


def _same_birth(a, b) -> bool:
    """Equal dates; a year-only birth date (stored as 1 January, as OMOP's ``year_of_birth``
    alone gives) agrees with any date of that year."""
    if a == b:
        return True
    return a.year == b.year and ((a.month, a.day) == (1, 1) or (b.month, b.day) == (1, 1))


def demographic_conflict(records: Sequence[PatientRecord]) -> str | None:
    """Why these records, grouped under one patient id, cannot be one person: the first two
    sources that disagree on sex or birth date (one line, no other patient data), else ``None``.
    A source that does not state a field agrees with any value of it."""
    seen: dict[str, tuple[object, str]] = {}
    for r in records:
        src = r.sources[0] if r.sources else "?"
        for what, value in (("sex", _sex(r.demographics.gender)), ("birth date", r.demographics.birth_date)):
            if value is None:
                continue
            if what not in seen:
                seen[what] = (value, src)
                continue
            first, first_src = seen[what]
            same = _same_birth(first, value) if what == "birth date" else first == value
            if not same:
                return (
                    f"patient {show_id(r.patient_id)}: {first_src} and {src} disagree on {what} "
                    f"({first} vs {value}); not merged into one index (two different people with one id?); "
                    "give them different ids, or pass --merge-conflicting to merge them anyway"
                )
    return None


def _existing(folder: Path, pid: str) -> list[PatientRecord]:
    """The patient's current index as a record to check new sources against (its demographics
    only), or nothing when there is none."""
    try:
        m = store.read_manifest(folder)
        if m.patient_id != pid:
            return []
        rec = PatientRecord.model_validate_json((folder / "record.json").read_text(encoding="utf-8"))
    except (RagehrError, OSError, ValueError):
        return []
    return [
        PatientRecord(
            patient_id=pid, format=rec.format, demographics=rec.demographics, sources=(f"the existing index {folder}",)
        )
    ]


def _parse(path: str) -> PatientRecord:
    return load_record(path)


def _source_file(path: Path) -> SourceFile:
    return SourceFile(path=str(path.resolve()), sha256=store.sha256_file(path), size=path.stat().st_size)


def build_indexes(
    paths: Sequence[str | Path],
    index_dir: str | Path = store.DEFAULT_INDEX_DIR,
    config: IndexConfig | None = None,
    *,
    force: bool = False,
    workers: int = 1,
    cache_dir: str | Path | None = None,
    progress: Progress | None = None,
    embedder=None,
    patients: Collection[str] | None = None,
    parsed: Mapping[Path, PatientRecord] | None = None,
    slices: Sequence[PatientSlice] = (),
    embedding_cache=None,
    merge_conflicting: bool = False,
) -> list[BuildSummary]:
    """Index record files and folders; one summary per patient, and one per failed file
    (``status="failed"``, ``patient_id=""``). ``patients``: index only these ids (a cohort
    patient also by its FHIR resource id); an id found nowhere is a failed summary.

    For a caller that spreads the work (:mod:`ragehr.distributed`, Ray): ``parsed``, records of
    some of ``paths`` it already parsed (by path as given), not parsed again; ``slices``,
    cohort patients it already scanned, indexed as if their cohort folder had been given;
    ``embedding_cache``, an opened :class:`~ragehr.embeddings.cache.EmbeddingCache` to use
    instead of opening ``cache_dir`` (a worker keeps one across its tasks).

    ``merge_conflicting``: merge the sources of one patient id even when they disagree on sex or
    birth date (by default that patient is a failed summary, exit status 2)."""
    config = config or IndexConfig()
    progress = progress or NullProgress()
    index_dir = Path(index_dir)
    store.check_index_dir(index_dir)
    cohorts, paths = split_cohorts(paths)
    files, missing = expand_paths(paths) if paths else ([], [])
    files = [f for f in files if not inside_any(f, cohorts)]
    summaries = [
        BuildSummary(patient_id="", index_path=str(p), status="failed", message=f"{p}: {why}", exit_code=2)
        for p, why in missing
    ]
    t0 = time.perf_counter()
    all_slices: list[PatientSlice] = list(slices)
    for c in cohorts:
        progress.start("scanning", c.n_files())
        scan = c.scan(on_file=lambda _f: progress.advance("scanning"))
        summaries.extend(
            BuildSummary(patient_id="", index_path=str(c.folder), status="failed", message=m, exit_code=2)
            for m in scan.problems
        )
        all_slices.extend(scan.slices)
    # Selected over every cohort at once: an alias selects a patient only when it names one.
    chosen: dict[str, PatientSlice] = {sl.source_path: sl for sl in select(all_slices, patients)}
    sources: dict[Path | str, SourceFile] = {}
    for f in files:
        try:
            sources[f] = _source_file(f)
        except OSError as exc:
            summaries.append(
                BuildSummary(
                    patient_id="",
                    index_path=str(f),
                    status="failed",
                    exit_code=2,
                    message=f"{f}: cannot be read ({exc.strerror or type(exc).__name__})",
                )
            )
    files = [f for f in files if f in sources]
    sources.update((k, SourceFile(path=k, sha256=sl.fingerprint, size=sl.size)) for k, sl in chosen.items())
    # Which patient is each file? Known sha256s answer without parsing.
    manifests = {m.patient_id: m for m in store.list_manifests(index_dir)}
    by_sha = {s.sha256: pid for pid, m in manifests.items() for s in m.sources}
    already = {Path(f): r for f, r in (parsed or {}).items()}
    parsed = {}
    patient_of: dict[Path, str] = {}
    for f in files:
        if f in already:
            parsed[f] = already[f]
            patient_of[f] = already[f].patient_id
    to_parse = [f for f in files if (sources[f].sha256 not in by_sha or force) and f not in already]
    for f in files:
        if f not in to_parse and f not in already:
            patient_of[f] = by_sha[sources[f].sha256]
    if files:
        progress.start("files", len(to_parse))
    kept_events = 0
    dropped = 0
    for f, result in _parse_all(to_parse, workers):
        progress.advance("files")
        if isinstance(result, RagehrError):
            summaries.append(
                BuildSummary(
                    patient_id="", index_path=str(f), status="failed", message=str(result), exit_code=result.exit_code
                )
            )
        else:
            patient_of[f] = result.patient_id
            if kept_events + len(result.events) <= KEEP_PARSED_EVENTS:
                parsed[f] = result
                kept_events += len(result.events)
            else:  # parsed again when its patient is built: memory stays bounded
                dropped += 1
        del result
    if dropped:
        log.info("%d of %d files will be parsed again when built (keeps memory bounded)", dropped, len(to_parse))
    t_parse = time.perf_counter() - t0

    groups: dict[str, list[Path | str]] = {}
    for f in files:
        if f in patient_of:
            groups.setdefault(patient_of[f], []).append(f)
    for k, sl in chosen.items():
        groups.setdefault(sl.patient_id, []).append(k)
    if patients is not None:
        alias = alias_map(all_slices)
        ambiguous = ambiguous_aliases(all_slices, patients)
        groups = {pid: g for pid, g in groups.items() if pid in {alias.get(p, p) for p in patients}}
        summaries.extend(
            BuildSummary(
                patient_id=p,
                index_path="",
                status="failed",
                exit_code=2,
                message=(
                    f"patient {show_id(p)}: an identifier of {len(ambiguous[p])} patients "
                    f"({', '.join(show_id(x) for x in ambiguous[p][:5])}); select them by id"
                    if p in ambiguous
                    else f"patient {show_id(p)}: not found in the given sources"
                ),
            )
            for p in sorted(set(patients))
            if alias.get(p, p) not in groups
        )
    progress.start("patients", len(groups))
    emb = None
    cache = None
    todo: list[tuple[str, tuple[SourceFile, ...], Path]] = []
    for pid, given in groups.items():
        old = manifests.get(pid)
        # The patient's sources: those given now, plus earlier ones still on disk.
        srcs: dict[str, SourceFile] = {sources[f].path: sources[f] for f in given}
        if old is not None:
            for s in old.sources:
                p = Path(s.path)
                if s.path not in srcs and p.is_file():
                    srcs[s.path] = _source_file(p)
                elif s.path not in srcs and SLICE_MARK in s.path:
                    log.warning("patient %s: earlier source %s not given now; dropped from the index", pid, s.path)
                elif s.path not in srcs:
                    log.warning("patient %s: earlier source %s no longer exists; dropped from the index", pid, s.path)
        wanted = tuple(sorted(srcs.values(), key=lambda s: s.path))
        folder = store.patient_dir(index_dir, pid)
        try:
            with store.patient_lock(index_dir, folder.name):
                store.recover(index_dir, folder.name)
                store.check_replaceable(folder)
        except NotAnIndexError as exc:
            summaries.append(
                BuildSummary(patient_id=pid, index_path=str(folder), status="failed", message=str(exc), exit_code=3)
            )
            progress.advance("patients")
            continue
        if (
            not force
            and old is not None
            and old.format_version == store.FORMAT_VERSION
            and old.config_hash == config.config_hash()
            and tuple(sorted(old.sources, key=lambda s: s.path)) == wanted
            and _intact(folder)
        ):
            summaries.append(
                BuildSummary(
                    patient_id=pid,
                    index_path=str(folder),
                    status="unchanged",
                    n_sources=len(wanted),
                    n_events=old.counts.get("events", 0),
                    n_chunks=old.counts.get("chunks", 0),
                    duplicates_removed=old.counts.get("duplicates_removed", 0),
                )
            )
            progress.advance("patients")
            continue
        todo.append((pid, wanted, folder))

    building = {pid for pid, _, _ in todo}
    for f in [f for f in parsed if patient_of.get(f) not in building]:
        del parsed[f]  # unchanged or refused patients: not needed
    for pid, wanted, folder, records, failed in _load_groups(todo, parsed, chosen, workers):
        if not failed and not merge_conflicting:
            failed = demographic_conflict([*_existing(folder, pid), *records])
        if failed:
            summaries.append(
                BuildSummary(patient_id=pid, index_path=str(folder), status="failed", message=failed, exit_code=2)
            )
            progress.advance("patients")
            continue
        if emb is None:
            emb, cache = _open_embedder(embedder, config, index_dir, cache_dir, progress, embedding_cache)
        try:
            summaries.append(
                _build_one(pid, records, wanted, index_dir, config, emb, cache, progress, t_parse / max(1, len(groups)))
            )
        except NotAnIndexError as exc:  # appeared while this patient was being built
            summaries.append(
                BuildSummary(patient_id=pid, index_path=str(folder), status="failed", message=str(exc), exit_code=3)
            )
        except OSError as exc:
            raise store.write_failed(exc, pid, index_dir) from exc
        finally:
            del records
            for src in groups.get(pid, ()):  # built: its records are not needed any more
                if isinstance(src, Path):  # cohort slices (str keys) were never in `parsed`
                    parsed.pop(src, None)
        progress.advance("patients")
    return summaries


def _open_embedder(embedder, config: IndexConfig, index_dir: Path, cache_dir, progress: Progress, embedding_cache=None):
    """The build's embedder and embedding cache. A static embedder not distilled yet is
    distilled here, once, with its own progress bar (``distilling``), before any chunk is
    embedded."""
    from ragehr.embeddings import load_embedder
    from ragehr.embeddings.cache import EmbeddingCache
    from ragehr.embeddings.static import default_models_dir

    emb = embedder or load_embedder(config.embedder, models_dir=default_models_dir(index_dir))
    prepare = getattr(emb, "prepare", None)
    if callable(prepare):
        done = [0]

        def on_distil(n: int, total: int) -> None:
            if n == 0 and done[0] == 0:
                progress.start("distilling", total)
            progress.advance("distilling", n - done[0])
            done[0] = n

        prepare(progress=on_distil)
    cache = embedding_cache or EmbeddingCache(Path(cache_dir) if cache_dir else index_dir / ".cache" / "embeddings")
    return emb, cache


def _load_one(
    pid: str,
    wanted: tuple[SourceFile, ...],
    parsed: dict[Path, PatientRecord],
    slices: dict[str, PatientSlice],
    ready: dict[str, PatientRecord | str],
):
    """The records of a patient's sources, or a failure message."""
    records = []
    for s in wanted:
        p = Path(s.path)
        rec: PatientRecord | None
        if s.path in slices:
            got = ready.pop(s.path, None) or _load_slice(slices[s.path])
            if isinstance(got, str):
                return None, got
            rec = got
        else:
            rec = next((r for f, r in parsed.items() if str(f.resolve()) == s.path), None)
            if rec is None:
                try:
                    rec = load_record(p)
                except InputError as exc:
                    return None, str(exc)
        if rec.patient_id != pid:
            return None, f"{p}: now holds patient {show_id(rec.patient_id)}, not {show_id(pid)}"
        records.append(rec)
    return records, None


def _load_slice(sl: PatientSlice) -> PatientRecord | str:
    """A cohort patient's record, or why not (a string: it crosses process boundaries). One
    patient's failure never stops the others."""
    from ragehr.ehr.times import collect_time_warnings

    try:
        with collect_time_warnings() as warned:
            rec = sl.load()
        if warned:
            rec = rec.model_copy(update={"warnings": rec.warnings + warned.summary()})
        return rec
    except InputError as exc:
        return str(exc)
    except Exception as exc:  # a bug on one patient's data: report it, index the rest
        log.debug("patient %s: parsing failed", sl.patient_id, exc_info=True)
        return f"{sl.source_path}: internal error while parsing ({type(exc).__name__}); rerun with --debug"


def _load_groups(todo, parsed, slices, workers: int) -> Iterator[tuple]:
    """(pid, sources, folder, records, failure) for each patient to build, in order. Cohort
    patients are read and parsed here, one at a time, or ``workers`` processes ahead: never
    more than ``2 * workers`` patients are held at once."""
    needed = [[s.path for s in wanted if s.path in slices] for _, wanted, _ in todo]
    if workers <= 1 or sum(map(len, needed)) <= 1:
        for pid, wanted, folder in todo:
            records, failed = _load_one(pid, wanted, parsed, slices, {})
            yield pid, wanted, folder, records, failed
            del records  # not held while the next patient is read
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        ahead: dict[int, list[tuple[str, Future]]] = {}
        nxt = 0
        for i, (pid, wanted, folder) in enumerate(todo):
            while nxt < len(todo) and nxt < i + 2 * workers:
                ahead[nxt] = [(k, pool.submit(_load_slice, slices[k])) for k in needed[nxt]]
                nxt += 1
            ready = {k: fut.result() for k, fut in ahead.pop(i, [])}
            records, failed = _load_one(pid, wanted, parsed, slices, ready)
            yield pid, wanted, folder, records, failed
            del records, ready


class _CountingEmbedder:
    """Counts the texts the model really embeds (the rest come from the cache)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.n_embedded = 0

    def embed(self, texts, **kwargs):
        self.n_embedded += len(texts)
        return self.inner.embed(texts, **kwargs)


def _intact(folder: Path) -> bool:
    """Whether the index's files are still the ones its manifest lists (cheap when untouched)."""
    try:
        m = store.read_manifest(folder)
    except RagehrError:
        return False
    bad = store.verify_files(folder, m)
    if bad is not None:
        log.warning("%s/%s: does not match the index's manifest; rebuilding the index", folder, bad)
    return bad is None


def _parse_all(files: list[Path], workers: int):
    if workers <= 1 or len(files) <= 1:
        for f in files:
            try:
                yield f, load_record(f)
            except InputError as exc:
                yield f, exc
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [(f, pool.submit(_parse, str(f))) for f in files]
        for f, fut in futures:
            try:
                yield f, fut.result()
            except InputError as exc:
                yield f, exc


def _build_one(
    pid: str,
    records: list[PatientRecord],
    sources: tuple[SourceFile, ...],
    index_dir: Path,
    config: IndexConfig,
    embedder,
    cache,
    progress: Progress,
    t_parse: float,
) -> BuildSummary:
    from ragehr.embeddings.cache import embed_with_cache
    from ragehr.retrieval.analyzer import Analyzer, AnalyzerConfig
    from ragehr.retrieval.bm25 import BM25Index
    from ragehr.retrieval.dense import DenseIndex

    seconds = {"parse": round(t_parse, 4)}
    record, removed = merge_records(records)
    t = time.perf_counter()
    counter = EstimateCounter()
    chunks = chunk_record(record, config.chunking, counter)
    seconds["chunk"] = time.perf_counter() - t
    progress.start("chunks", len(chunks))
    progress.advance("chunks", len(chunks))
    texts = [c.text for c in chunks]
    ids = [c.chunk_id for c in chunks]

    t = time.perf_counter()
    analyzer = Analyzer(AnalyzerConfig(lowercase=config.bm25.lowercase, stem=config.bm25.stem))
    bm25 = BM25Index.build(texts, ids, analyzer, k1=config.bm25.k1, b=config.bm25.b, method=config.bm25.method)
    seconds["bm25"] = time.perf_counter() - t

    t = time.perf_counter()
    progress.start("embedding", len(texts))
    counting = _CountingEmbedder(embedder)
    done = [0]

    def on_embedded(total_done: int) -> None:
        progress.advance("embedding", total_done - done[0])
        done[0] = total_done

    vectors = embed_with_cache(counting, texts, cache, batch_size=config.batch_size, progress=on_embedded)
    n_new = counting.n_embedded
    dense = DenseIndex.build(vectors, ids, embedder.model_id)
    seconds["embed"] = time.perf_counter() - t

    t = time.perf_counter()
    safe = store.dirname(index_dir, pid)
    with store.patient_lock(index_dir, safe):
        store.recover(index_dir, safe)
        store.check_replaceable(index_dir / safe)
        final = _write_and_swap(
            pid, record, chunks, bm25, dense, sources, removed, counter, index_dir, config, embedder, seconds, t
        )
    return BuildSummary(
        patient_id=pid,
        index_path=str(final),
        status="built",
        n_sources=len(sources),
        n_events=len(record.events),
        n_chunks=len(chunks),
        duplicates_removed=removed,
        n_embedded=n_new,
        seconds={k: round(v, 4) for k, v in seconds.items()},
    )


def _write_and_swap(
    pid, record, chunks, bm25, dense, sources, removed, counter, index_dir, config, embedder, seconds, t
) -> Path:
    """Write the index into a temporary folder, seal it (0600/0700, stat stamp) and swap it in;
    call with the patient's lock held. On any failure the temporary folder is removed and the
    previous index is untouched."""
    tmp = store.new_tmp_dir(index_dir, pid)
    try:
        (tmp / "record.json").write_text(record.model_dump_json(), encoding="utf-8")
        store.write_chunks(tmp, chunks)
        bm25.save(tmp / "bm25")
        dense.save(tmp / "dense")
        first, last = record.first_time, record.last_time
        manifest = IndexManifest(
            format_version=store.FORMAT_VERSION,
            ragehr_version=__version__,
            patient_id=pid,
            config=config.model_dump(mode="json"),
            config_hash=config.config_hash(),
            embedder_id=embedder.model_id,
            embedder_dim=embedder.dim,
            tokenizer=counter.name,
            sources=sources,
            counts={
                "events": len(record.events),
                "chunks": len(chunks),
                "duplicates_removed": removed,
                **record.counts(),
            },
            first_time=first.isoformat() if first else None,
            last_time=last.isoformat() if last else None,
            built_at=datetime.now(UTC).isoformat(timespec="seconds"),
            build_seconds={k: round(v, 4) for k, v in seconds.items()},
            files=store.file_hashes(tmp),
        )
        seconds["write"] = time.perf_counter() - t
        manifest = manifest.model_copy(update={"build_seconds": {k: round(v, 4) for k, v in seconds.items()}})
        store.write_manifest(tmp, manifest)
        store.seal(tmp)
        final = store.swap_in(tmp, index_dir, pid)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
