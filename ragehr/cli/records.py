"""``ragehr inspect``, ``convert``, ``index`` and ``patients``: records in, indexes out."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ragehr.cli.common import (
    ConfigOpt,
    IndexDirOpt,
    PatientsFileOpt,
    PatientsOpt,
    RayOpt,
    _fail,
    _patients,
    _print_summary,
    _progress_enabled,
    _RichProgress,
    _shown_id,
    app,
    handle_errors,
)


@app.command()
@handle_errors
def inspect(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Record files (MedAlign XML, C-CDA, FHIR JSON/NDJSON) or cohort folders "
            "(a FHIR Bulk Data export, OMOP CDM tables)."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per file or patient.")] = False,
    patients: PatientsOpt = None,
    patients_file: PatientsFileOpt = None,
) -> None:
    """Format, patient id, event counts by kind, time span and length of each record; a cohort
    folder lists each of its patients. A bad file or patient is reported on its own line; the
    others are still inspected, and the exit status is 2."""
    from ragehr.ehr import load_record
    from ragehr.ehr.cohort import ambiguous_aliases, detect_cohort, select
    from ragehr.ehr.summary import summarize
    from ragehr.errors import InputError, escape_controls, show_id

    wanted = _patients(patients, patients_file)
    failed = 0
    for path in paths:
        cohort = detect_cohort(path)
        if cohort is not None:
            scan = cohort.scan()
            for problem in scan.problems:
                failed += 1
                typer.echo(f"ragehr: error: {escape_controls(problem)}", err=True)
            chosen = select(scan.slices, wanted)
            found = {sl.patient_id for sl in chosen} | {a for sl in chosen for a in sl.aliases}
            ambiguous = ambiguous_aliases(scan.slices, wanted or [])
            for p in wanted or []:
                if p in ambiguous:
                    failed += 1
                    typer.echo(
                        f"ragehr: error: patient {show_id(p)}: an identifier of {len(ambiguous[p])} patients "
                        f"in {path} ({', '.join(map(show_id, ambiguous[p][:5]))}); select them by id",
                        err=True,
                    )
                elif p not in found:
                    failed += 1
                    typer.echo(f"ragehr: error: patient {show_id(p)}: not in {escape_controls(path)}", err=True)
            for sl in chosen:
                try:
                    s = summarize(sl.load())
                except InputError as exc:
                    failed += 1
                    typer.echo(f"ragehr: error: {escape_controls(exc)}", err=True)
                    continue
                _print_summary(f"{path} patient {_shown_id(sl.patient_id)} ({cohort.format})", s, as_json)
            continue
        try:
            s = summarize(load_record(path))
        except InputError as exc:
            if len(paths) == 1:
                raise
            failed += 1
            typer.echo(f"ragehr: error: {escape_controls(exc)}", err=True)
            continue
        _print_summary(str(path), s, as_json)
    if failed:
        raise typer.Exit(2)


@app.command()
@handle_errors
def convert(
    path: Annotated[Path, typer.Argument(help="A record file of any supported format.")],
    to: Annotated[str, typer.Option("--to", help="medalign-xml or jsonl.")],
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write here (atomically) instead of stdout.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing -o file (never the input).")] = False,
) -> None:
    """Write a record as MedAlign-style XML or as JSON lines of events."""
    from ragehr.ehr import load_record
    from ragehr.ehr.convert import TARGETS, check_output
    from ragehr.ehr.convert import convert as convert_record
    from ragehr.errors import ConfigError

    if to not in TARGETS:
        raise ConfigError(f"--to must be one of {', '.join(TARGETS)}, not {to!r}")
    if output is not None:
        check_output(path, output, force=force)
    text = convert_record(load_record(path), to)
    if output is None:
        sys.stdout.write(text)
        return
    from ragehr.fsutil import atomic_write_text

    check_output(path, output, force=force)  # again: the file may have appeared while converting
    atomic_write_text(output, text)
    typer.echo(f"wrote {output}", err=True)


@app.command()
@handle_errors
def index(
    paths: Annotated[list[Path], typer.Argument(help="Record files or folders of them.")],
    index_dir: IndexDirOpt = Path("indexes"),
    config: ConfigOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if nothing changed.")] = False,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Processes for parsing (files, cohort patients).")
    ] = 1,
    cache_dir: Annotated[
        Path | None, typer.Option("--cache-dir", help="Embedding cache (default: INDEX_DIR/.cache).")
    ] = None,
    patients: PatientsOpt = None,
    patients_file: PatientsFileOpt = None,
    ray: RayOpt = None,
    merge_conflicting: Annotated[
        bool,
        typer.Option(
            "--merge-conflicting",
            help="Merge the sources of one patient id even when they disagree on "
            "sex or birth date (by default that patient is refused, exit status 2).",
        ),
    ] = False,
) -> None:
    """Build (or update) one index per patient from record files, folders of them, and cohort
    folders (a FHIR Bulk Data export, OMOP CDM tables). With --ray, patients are parsed and
    indexed as Ray tasks (a local Ray uses --workers CPUs when more than 1 is given);
    INDEX_DIR must then be a folder every worker sees."""
    from ragehr.config import RagehrConfig
    from ragehr.index.build import build_indexes

    cfg = RagehrConfig.from_file(config)
    wanted = _patients(patients, patients_file)
    if ray is not None:
        from ragehr.distributed import RayCluster, build_indexes_ray

        with (
            RayCluster(ray, num_cpus=workers if workers > 1 else None),
            _RichProgress(enabled=_progress_enabled()) as bars,
        ):
            summaries = build_indexes_ray(
                paths,
                index_dir,
                cfg.index,
                force=force,
                cache_dir=cache_dir,
                progress=bars,
                patients=wanted,
                merge_conflicting=merge_conflicting,
            )
    else:
        with _RichProgress(enabled=_progress_enabled()) as bars:
            summaries = build_indexes(
                paths,
                index_dir,
                cfg.index,
                force=force,
                workers=workers,
                cache_dir=cache_dir,
                progress=bars,
                patients=wanted,
                merge_conflicting=merge_conflicting,
            )
    failures = [s for s in summaries if s.status == "failed"]
    failed = len(failures)
    code = max((s.exit_code or 2 for s in failures), default=0)
    if failed == 1 and len(summaries) == 1:
        _fail(failures[0].message or "indexing failed", code)
    for s in summaries:
        if s.status == "failed":
            typer.echo(f"failed     {s.message}", err=True)
            continue
        extra = f", {s.duplicates_removed} duplicate events removed" if s.duplicates_removed else ""
        how = f", {s.n_embedded} chunks embedded" if s.status == "built" else ""
        typer.echo(
            f"{s.status:<10} {_shown_id(s.patient_id)}: {s.n_sources} source(s), {s.n_events} events, "
            f"{s.n_chunks} chunks{extra}{how} -> {s.index_path}"
        )
    ok = len(summaries) - failed
    typer.echo(f"{ok} patient index(es) ready, {failed} failure(s)", err=True)
    if failed:
        raise typer.Exit(code)


@app.command()
@handle_errors
def patients(
    index_dir: IndexDirOpt = Path("indexes"),
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per patient.")] = False,
) -> None:
    """The patients indexed in INDEX_DIR, with their time span and counts (no record text)."""
    from ragehr.api import open_index

    rows = open_index(index_dir).patients()
    for p in rows:
        if as_json:
            typer.echo(json.dumps(p.to_json(), ensure_ascii=False))
        else:
            span = f"{(p.first_time or '-')[:10]} .. {(p.last_time or '-')[:10]}"
            typer.echo(
                f"{_shown_id(p.patient_id):<24} {span}  {p.n_events} events, {p.n_chunks} chunks, {p.n_sources} file(s), {p.embedder} vectors"
            )
    typer.echo(f"{len(rows)} patient(s) indexed in {index_dir}", err=True)
