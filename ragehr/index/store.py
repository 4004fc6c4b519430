"""The on-disk layout of a patient's index, and loading it back with every check.

``<index_dir>/<safe patient id>/`` holds::

    manifest.json   what built it (versions, config hash, embedder, source sha256s, counts)
    record.json     the merged, de-duplicated PatientRecord
    chunks.jsonl    one Chunk per line
    bm25/           BM25 arrays and the analyzer (ragehr.retrieval.bm25)
    dense/          normalised float32 vectors (ragehr.retrieval.dense)

Plain files, no pickle. Every data file's sha256 is in the manifest and checked on load, so a
truncated or edited file is a clear "re-index" error, never a wrong answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ragehr import __version__
from ragehr.errors import CorruptIndexError, IndexNotFoundError, StaleIndexError
from ragehr.types import Chunk, IndexManifest, PatientRecord

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DEFAULT_INDEX_DIR = Path("indexes")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_dirname(patient_id: str) -> str:
    """A patient id as one safe directory name: no separators, no leading dot, no '..'.

    Ids that need changing get a short hash of the original appended, so two ids that
    sanitise alike never share a folder."""
    cleaned = _SAFE.sub("_", patient_id).lstrip(".")[:96]
    if cleaned == patient_id and cleaned not in ("", ".", ".."):
        return cleaned
    digest = hashlib.sha256(patient_id.encode("utf-8")).hexdigest()[:10]
    return f"{cleaned or 'patient'}-{digest}"


def patient_dir(index_dir: Path, patient_id: str) -> Path:
    return Path(index_dir) / safe_dirname(patient_id)


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def reindex_hint(manifest: IndexManifest | None, patient_id: str) -> str:
    if manifest and manifest.sources:
        paths = " ".join(s.path for s in manifest.sources[:3]) + (" ..." if len(manifest.sources) > 3 else "")
        return f"re-index it: ragehr index {paths} --force"
    return f"re-index it: ragehr index <record files of {patient_id}> --force"


def read_manifest(folder: Path) -> IndexManifest:
    p = folder / MANIFEST
    try:
        return IndexManifest.model_validate_json(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CorruptIndexError(f"{p}: missing; the index is incomplete, re-index it") from None
    except (ValidationError, ValueError, OSError):
        raise CorruptIndexError(f"{p}: unreadable or not a ragehr manifest; re-index it") from None


def list_manifests(index_dir: Path) -> list[IndexManifest]:
    """Manifests of every readable index under ``index_dir`` (unreadable ones are skipped)."""
    out = []
    if not Path(index_dir).is_dir():
        return out
    for child in sorted(Path(index_dir).iterdir()):
        if child.is_dir() and not child.name.startswith(".") and (child / MANIFEST).is_file():
            try:
                out.append(read_manifest(child))
            except CorruptIndexError:
                continue
    return out


def recover(index_dir: Path, safe: str) -> None:
    """Finish or undo an interrupted swap: drop temporary folders, restore a lone old index."""
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        return
    final = index_dir / safe
    for child in index_dir.iterdir():
        if child.name.startswith(f".tmp-{safe}-"):
            shutil.rmtree(child, ignore_errors=True)
        elif child.name.startswith(f".old-{safe}-"):
            if not final.exists():
                os.rename(child, final)
            else:
                shutil.rmtree(child, ignore_errors=True)


def new_tmp_dir(index_dir: Path, patient_id: str) -> Path:
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    tmp = index_dir / f".tmp-{safe_dirname(patient_id)}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return tmp


def swap_in(tmp: Path, index_dir: Path, patient_id: str) -> Path:
    """Put a fully written temporary folder in place of the patient's index."""
    safe = safe_dirname(patient_id)
    final = Path(index_dir) / safe
    if final.exists():
        old = Path(index_dir) / f".old-{safe}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    return final


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the manifest, by relative path."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            out[p.relative_to(folder).as_posix()] = sha256_file(p)
    return out


def write_chunks(folder: Path, chunks: list[Chunk]) -> None:
    with open(folder / "chunks.jsonl", "w", encoding="utf-8") as fh:
        for c in chunks:
            fh.write(c.model_dump_json() + "\n")


@dataclass
class StoredIndex:
    """A patient's index read from disk (retrievers are loaded by ``ragehr.index.search``)."""

    folder: Path
    manifest: IndexManifest
    record: PatientRecord
    chunks: list[Chunk]

    def chunk_by_id(self) -> dict[str, Chunk]:
        return {c.chunk_id: c for c in self.chunks}


def open_index(index_dir: Path, patient_id: str, *, verify: bool = True) -> StoredIndex:
    """Load and check a patient's index. Raises a one-line error telling the user what to do."""
    index_dir = Path(index_dir)
    safe = safe_dirname(patient_id)
    recover(index_dir, safe)
    folder = index_dir / safe
    if not folder.is_dir():
        known = [m.patient_id for m in list_manifests(index_dir)]
        hint = f" Indexed patients: {', '.join(known[:10])}{' ...' if len(known) > 10 else ''}." if known else ""
        raise IndexNotFoundError(
            f"no index for patient {patient_id!r} in {index_dir}/; build one with "
            f"`ragehr index <record file> --index-dir {index_dir}`.{hint}"
        )
    manifest = read_manifest(folder)
    if manifest.patient_id != patient_id:
        raise CorruptIndexError(f"{folder}: holds patient {manifest.patient_id!r}, not {patient_id!r}; re-index it")
    if manifest.format_version != FORMAT_VERSION:
        raise StaleIndexError(
            f"index of {patient_id!r} has format version {manifest.format_version}, this ragehr "
            f"({__version__}) reads version {FORMAT_VERSION}; {reindex_hint(manifest, patient_id)}"
        )
    for rel, digest in manifest.files.items():
        p = folder / rel
        if not p.is_file():
            raise CorruptIndexError(f"{p}: missing from the index of {patient_id!r}; {reindex_hint(manifest, patient_id)}")
        if verify and sha256_file(p) != digest:
            raise CorruptIndexError(
                f"{p}: does not match its manifest (truncated or modified); {reindex_hint(manifest, patient_id)}"
            )
    try:
        record = PatientRecord.model_validate_json((folder / "record.json").read_text(encoding="utf-8"))
        chunks = [
            Chunk.model_validate_json(line)
            for line in (folder / "chunks.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    except (ValidationError, ValueError, OSError):
        raise CorruptIndexError(f"{folder}: record.json or chunks.jsonl unreadable; {reindex_hint(manifest, patient_id)}") from None
    if len(chunks) != manifest.counts.get("chunks"):
        raise CorruptIndexError(f"{folder}/chunks.jsonl: chunk count disagrees with the manifest; re-index it")
    return StoredIndex(folder=folder, manifest=manifest, record=record, chunks=chunks)


def write_manifest(folder: Path, manifest: IndexManifest) -> None:
    (folder / MANIFEST).write_text(
        json.dumps(manifest.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
