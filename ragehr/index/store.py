"""The on-disk layout of a patient's index, and loading it back with every check.

``<index_dir>/<safe patient id>/`` holds::

    manifest.json   what built it (versions, config hash, embedder, source sha256s, counts)
    record.json     the merged, de-duplicated PatientRecord
    chunks.jsonl    one Chunk per line
    bm25/           BM25 arrays and the analyzer (ragehr.retrieval.bm25)
    dense/          normalised float32 vectors (ragehr.retrieval.dense)

Plain files, no pickle. Every data file's sha256 is in the manifest and checked on load, so a
truncated or edited file is a clear "re-index" error, never a wrong answer. Files are 0600 and
folders 0700 (patient data).

Safety of what is already on disk:

- ragehr replaces only folders that are its own (:func:`is_own_index`: a ``manifest.json`` that
  ragehr wrote, parsed: its ``format`` marker and a patient id that names this folder; file
  names alone never count); anything else at a patient's path is refused (:class:`NotAnIndexError`) and
  left exactly as it is.
- Build, swap and recovery of a patient hold that patient's lock (``.lock-<safe id>``, an
  ``fcntl.flock`` lock, released by the kernel when the process dies), so a reader never
  removes the temporary folder of a live writer, and two builds of one patient never race.
- Recovery touches only the patient's own temporary names (``.tmp-<safe id>-<8 hex>`` and
  ``.old-<safe id>-<8 hex>``, matched whole, so ids ``john`` and ``john-smith`` never clash).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from ragehr import __version__
from ragehr.errors import (
    ConfigError,
    CorruptIndexError,
    IndexBusyError,
    IndexNotFoundError,
    IndexWriteError,
    NotAnIndexError,
    StaleIndexError,
    show_id,
)
from ragehr.fsutil import MAX_MANIFEST_BYTES, is_index_manifest, open_regular, read_json_manifest
from ragehr.types import Chunk, IndexManifest, PatientRecord

FORMAT_VERSION = 2
"""2: event ids hash the source file's name, not its folder (so chunk ids differ from version 1's)."""
MANIFEST = "manifest.json"
STAMP = ".stat.json"
"""Size and mtime of every data file when the index was sealed: a cheap first check of
:func:`verify_files` (sha256s are computed only when a file's stat differs)."""
FILE_MODE = 0o600
DIR_MODE = 0o700
DEFAULT_INDEX_DIR = Path("indexes")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


_HASHED = re.compile(r"-[0-9a-f]{10}")
"""How a changed name ends: an id that already ends like this is changed too, so an id can
never be spelled as another id's changed name (``a_b-<hash of 'a/b'>``)."""


def safe_dirname(patient_id: str) -> str:
    """A patient id as one safe directory name: no separators, no leading dot or dash (an id
    ``-rf`` must not become an argument-like folder name), no '..'.

    Ids that need changing get a short hash of the original appended, so two ids that
    sanitise alike never share a folder; ids kept as they are never end in ``-`` and ten hex
    digits (those are changed too), so no id is kept as another id's changed name."""
    cleaned = _SAFE.sub("_", patient_id).lstrip(".-")[:96]
    if cleaned == patient_id and cleaned not in ("", ".", "..") and not _HASHED.search(cleaned[-11:]):
        return cleaned
    digest = hashlib.sha256(patient_id.encode("utf-8")).hexdigest()[:10]
    return f"{cleaned or 'patient'}-{digest}"


def _alternative_dirname(patient_id: str) -> str:
    digest = hashlib.sha256(b"collision\0" + patient_id.encode("utf-8")).hexdigest()[:10]
    return f"{safe_dirname(patient_id)}-{digest}"


def _holds_other_patient(folder: Path, patient_id: str) -> bool:
    try:
        m = read_manifest(folder)
    except (NotAnIndexError, CorruptIndexError):
        return False
    return m.patient_id != patient_id


def dirname(index_dir: Path, patient_id: str) -> str:
    """The folder name of a patient's index in ``index_dir``: :func:`safe_dirname`, unless a
    folder of that name already holds another patient's index (two ids that name one folder,
    as on a case-insensitive file system: ``ABC`` and ``abc``); then a second name with its own
    hash, so the first patient stays reachable."""
    safe = safe_dirname(patient_id)
    if _holds_other_patient(Path(index_dir) / safe, patient_id):
        return _alternative_dirname(patient_id)
    return safe


def patient_dir(index_dir: Path, patient_id: str) -> Path:
    return Path(index_dir) / dirname(index_dir, patient_id)


def sha256_file(path: Path, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with os.fdopen(open_regular(path), "rb") as fh:
        while chunk := fh.read(bufsize):
            h.update(chunk)
    return h.hexdigest()


def reindex_hint(manifest: IndexManifest | None, patient_id: str) -> str:
    if manifest and manifest.sources:
        paths = " ".join(s.path for s in manifest.sources[:3]) + (" ..." if len(manifest.sources) > 3 else "")
        return f"re-index it: ragehr index {paths} --force"
    return f"re-index it: ragehr index <record files of {show_id(patient_id)}> --force"


def read_manifest(folder: Path) -> IndexManifest:
    p = folder / MANIFEST
    try:
        with os.fdopen(open_regular(p, max_bytes=MAX_MANIFEST_BYTES), "rb") as fh:
            return IndexManifest.model_validate_json(fh.read())
    except FileNotFoundError:
        raise NotAnIndexError(
            f"{folder}: not a ragehr index (it has no {MANIFEST}); ragehr will neither read nor replace "
            "it: use another --index-dir"
        ) from None
    except (ValidationError, ValueError, OSError):
        raise CorruptIndexError(f"{p}: unreadable or not a ragehr manifest; re-index it") from None


def list_manifests(index_dir: Path) -> list[IndexManifest]:
    """Manifests of every readable index under ``index_dir`` (unreadable ones are skipped)."""
    out: list[IndexManifest] = []
    if not Path(index_dir).is_dir():
        return out
    for child in sorted(Path(index_dir).iterdir()):
        if (
            child.is_dir()
            and not child.is_symlink()
            and not child.name.startswith(".")
            and (child / MANIFEST).is_file()
        ):
            try:
                out.append(read_manifest(child))
            except (CorruptIndexError, NotAnIndexError):
                continue
    return out


def _exact(prefix: str, safe: str) -> re.Pattern[str]:
    return re.compile(rf"\.{prefix}-{re.escape(safe)}-[0-9a-f]{{8}}")


def tmp_pattern(safe: str) -> re.Pattern[str]:
    """The whole name of a temporary build folder of the patient whose folder is ``safe``."""
    return _exact("tmp", safe)


def old_pattern(safe: str) -> re.Pattern[str]:
    """The whole name of a previous index moved aside during a swap."""
    return _exact("old", safe)


def check_index_dir(index_dir: Path) -> None:
    """``index_dir`` must be a folder or not exist yet (it is then created by a build)."""
    p = Path(index_dir)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{p}: is not a folder; give --index-dir a folder (it is created if missing)")


def is_own_index(folder: Path, safe: str | None = None) -> bool:
    """Whether ``folder`` is a ragehr index (of any version): a real folder, not a link,
    holding a ``manifest.json`` that ragehr wrote (:func:`ragehr.fsutil.ragehr_made`: its
    format marker, parsed) for a patient whose folder name is ``safe`` (default: the folder's
    own name). File names never count: a folder whose manifest is damaged, foreign or names
    another patient is not ragehr's to replace."""
    doc = read_json_manifest(folder)
    if not is_index_manifest(doc):
        return False
    return safe_dirname(doc["patient_id"]) == (Path(folder).name if safe is None else safe)  # type: ignore[index]


def check_replaceable(folder: Path) -> None:
    """Raise :class:`NotAnIndexError` unless ``folder`` is absent or a ragehr index."""
    if not os.path.lexists(folder) or is_own_index(folder):
        return
    if os.path.islink(folder):
        what = "a link"
    elif not os.path.isdir(folder):
        what = "a file"
    elif os.path.lexists(Path(folder) / MANIFEST):
        what = f"its {MANIFEST} is not one ragehr wrote for this patient: damaged, foreign or another patient's"
    else:
        what = f"a folder without a ragehr {MANIFEST}"
    raise NotAnIndexError(
        f"{folder}: exists and is not a ragehr index ({what}); ragehr never replaces it: "
        "use another --index-dir, or move it away yourself"
    )


@contextlib.contextmanager
def patient_lock(index_dir: Path, safe: str, *, blocking: bool = True) -> Iterator[bool]:
    """Hold the patient's lock file (``fcntl.flock``, so the kernel releases it when the
    process dies, even by ``kill -9``). Yields ``True`` when held; with ``blocking=False``,
    ``False`` when another process holds it (nothing is then done under it)."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    path = index_dir / f".lock-{safe}"
    try:
        fd = os.open(
            path,
            os.O_RDWR | os.O_CREAT | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0),
            FILE_MODE,
        )
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.EOPNOTSUPP):
            raise
        raise IndexWriteError(
            f"{path}: is not ragehr's lock file (a link, folder or special file); ragehr will not use it: "
            "move it away yourself"
        ) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IndexWriteError(f"{path}: is not ragehr's lock file (not a regular file); move it away yourself")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def recover(index_dir: Path, safe: str) -> None:
    """Finish or undo an interrupted swap of one patient: drop its temporary folders, put a
    lone old index back. Call with the patient's lock held (:func:`patient_lock`): then no live
    writer owns any of these names. Only the patient's exact names are touched."""
    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        return
    final = index_dir / safe
    tmp_re, old_re = tmp_pattern(safe), old_pattern(safe)
    for child in sorted(index_dir.iterdir()):
        if tmp_re.fullmatch(child.name) and child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        elif old_re.fullmatch(child.name) and is_own_index(child, safe):
            if not os.path.lexists(final):
                os.rename(child, final)
            else:
                shutil.rmtree(child, ignore_errors=True)


def new_tmp_dir(index_dir: Path, patient_id: str) -> Path:
    """A fresh temporary folder for a build (0700); call with the patient's lock held."""
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    tmp = index_dir / f".tmp-{dirname(index_dir, patient_id)}-{uuid.uuid4().hex[:8]}"  # matched by its lock's name
    tmp.mkdir(mode=DIR_MODE)
    return tmp


def seal(folder: Path) -> None:
    """Give every file of an index 0600 and every folder 0700 (patient data), whatever the
    umask or the library that wrote them, and record their stat for :func:`verify_files`."""
    for p in sorted(Path(folder).rglob("*")):
        if p.is_symlink():
            continue
        os.chmod(p, DIR_MODE if p.is_dir() else FILE_MODE)
    os.chmod(folder, DIR_MODE)
    stamp = {rel: list(st) for rel, st in _stats(folder).items()}
    path = Path(folder) / STAMP
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(stamp, fh)


def _stats(folder: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for p in sorted(Path(folder).rglob("*")):
        if p.is_file() and p.name not in (MANIFEST, STAMP):
            st = p.stat()
            out[p.relative_to(folder).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def verify_files(folder: Path, manifest: IndexManifest) -> str | None:
    """Whether the files of an index are the ones its manifest lists: ``None`` when they are,
    else the relative path of the first that is not. Sizes and mtimes are compared with the
    stamp first; sha256s are computed only when they differ (or there is no stamp)."""
    try:
        stamp = json.loads((Path(folder) / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        stamp = {}
    for rel, digest in manifest.files.items():
        p = Path(folder) / rel
        if not p.is_file():
            return rel
        st = p.stat()
        if isinstance(stamp, dict) and stamp.get(rel) == [st.st_size, st.st_mtime_ns]:
            continue
        if sha256_file(p) != digest:
            return rel
    return None


def swap_in(tmp: Path, index_dir: Path, patient_id: str) -> Path:
    """Put a fully written temporary folder in place of the patient's index. Call with the
    patient's lock held. Refuses (:class:`NotAnIndexError`) to replace anything that is not a
    ragehr index."""
    safe = dirname(index_dir, patient_id)
    final = Path(index_dir) / safe
    check_replaceable(final)
    if os.path.lexists(final):
        old = Path(index_dir) / f".old-{safe}-{uuid.uuid4().hex[:8]}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    return final


def write_failed(exc: OSError, patient_id: str, index_dir: Path) -> IndexWriteError:
    """The one-line error for an index that could not be written (the old one is intact)."""
    why = exc.strerror or type(exc).__name__
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        why += " (free some space and run it again)"
    return IndexWriteError(
        f"could not write the index of patient {show_id(patient_id)} in {index_dir}: {why}; "
        "the previous index, if any, is unchanged"
    )


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` except the manifest, by relative path."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name not in (MANIFEST, STAMP):
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


def _pending(index_dir: Path, safe: str) -> bool:
    """Whether the patient has temporary or old folders (a swap interrupted or under way)."""
    tmp_re, old_re = tmp_pattern(safe), old_pattern(safe)
    return any(tmp_re.fullmatch(n) or old_re.fullmatch(n) for n in os.listdir(index_dir))


def _recover_for_reader(index_dir: Path, safe: str, wait_s: float = 10.0) -> None:
    """A reader finishes an interrupted swap only when no writer holds the patient's lock (it
    creates nothing when there is nothing to recover). When a writer holds it and the index is
    momentarily absent (between the swap's two renames), the reader waits for it."""
    deadline = time.monotonic() + wait_s
    while _pending(index_dir, safe):
        with patient_lock(index_dir, safe, blocking=False) as held:
            if held:
                recover(index_dir, safe)
                return
        if os.path.lexists(index_dir / safe):
            return
        if time.monotonic() > deadline:
            raise IndexBusyError(
                f"{index_dir / safe}: being built by another ragehr process; try again when it is done"
            )
        time.sleep(0.05)


def open_index(index_dir: Path, patient_id: str, *, verify: bool = True) -> StoredIndex:
    """Load and check a patient's index. Raises a one-line error telling the user what to do."""
    index_dir = Path(index_dir)
    check_index_dir(index_dir)
    safe = dirname(index_dir, patient_id)
    if index_dir.is_dir():
        try:
            _recover_for_reader(index_dir, safe)
        except OSError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            # a read-only (shared) index folder: no lock can be taken and nothing recovered there
    folder = index_dir / safe
    if not folder.is_dir() or folder.is_symlink():
        n = len(list_manifests(index_dir))
        known = (
            f"; {n} patient(s) are indexed there: list them with `ragehr patients --index-dir {index_dir}`"
            if n
            else "; none is indexed there yet"
        )
        raise IndexNotFoundError(
            f"no index for patient {show_id(patient_id)} in {index_dir}/{known}; build one with "
            f"`ragehr index <record file> --index-dir {index_dir}`"
        )
    manifest = read_manifest(folder)
    if manifest.patient_id != patient_id:
        raise CorruptIndexError(
            f"{folder}: holds patient {show_id(manifest.patient_id)}, not {show_id(patient_id)}; re-index it"
        )
    if manifest.format_version != FORMAT_VERSION:
        raise StaleIndexError(
            f"index of {show_id(patient_id)} has format version {manifest.format_version}, this ragehr "
            f"({__version__}) reads version {FORMAT_VERSION}; {reindex_hint(manifest, patient_id)}"
        )
    for rel, digest in manifest.files.items():
        p = folder / rel
        if not p.is_file():
            raise CorruptIndexError(
                f"{p}: missing from the index of {show_id(patient_id)}; {reindex_hint(manifest, patient_id)}"
            )
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
        raise CorruptIndexError(
            f"{folder}: record.json or chunks.jsonl unreadable; {reindex_hint(manifest, patient_id)}"
        ) from None
    if len(chunks) != manifest.counts.get("chunks"):
        raise CorruptIndexError(f"{folder}/chunks.jsonl: chunk count disagrees with the manifest; re-index it")
    return StoredIndex(folder=folder, manifest=manifest, record=record, chunks=chunks)


def write_manifest(folder: Path, manifest: IndexManifest) -> None:
    fd = os.open(folder / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(manifest.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n")
