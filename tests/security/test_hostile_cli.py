"""A hostile user's corpus, run through the CLI: every case must fail with one line on stderr,
exit status 2 (bad input or options) or 3 (index problems), and change nothing in the sandbox
it runs in (a before/after listing of every file and folder, with sizes, mtimes, modes and
contents) except the lock files ``index`` may leave in its index folder.

The first 21 cases are the bad record files of ``tests/ehr/test_hostile.py`` given to ``index``
(the other file tests give them to ``inspect`` and ``convert``); the rest are those of issue 15
(a user folder where an index would go, ``--index-dir`` on a file, unknown and hostile patient
ids, empty questions, impossible time windows, budgets, out-of-range options) and more found on
the way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ragehr.config import ChunkingConfig, IndexConfig
from ragehr.index.build import build_indexes
from tests.conftest import FIXTURES, REPO
from tests.ehr.test_hostile import NAMES as FILE_CASES
from tests.ehr.test_hostile import SECRET, _cases

SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"
CFG = IndexConfig(embedder="hashing", chunking=ChunkingConfig(max_tokens=128))


@dataclass(frozen=True)
class Case:
    setup: Callable[[Path], list[str]]
    """Prepares the sandbox; returns the arguments after ``ragehr``."""
    code: int
    phrase: str
    """Text the one-line error must contain."""
    forbidden: tuple[str, ...] = ()
    """Text the output must never contain (other patients' ids, raw control characters)."""
    index_dir: str = "idx"
    """The folder (relative to the sandbox) that counts as the index folder of this case."""
    with_index: bool = True
    """Whether the sandbox starts with the sample patient's index in ``idx/``."""
    checks: tuple[Callable[[Path], None], ...] = field(default=())


def _args(*a: str) -> Callable[[Path], list[str]]:
    return lambda sb: list(a)


def _victim_folder(sb: Path) -> list[str]:
    """Issue 15, case 1: a user folder that ``index`` used to move aside and delete."""
    (sb / "victim" / "important").mkdir(parents=True)
    (sb / "victim" / "important" / "thesis.txt").write_text("years of work")
    shutil.copy(SAMPLE, sb / "EHR_important.xml")
    return ["index", "EHR_important.xml", "--index-dir", "victim", "--config", "cfg.yaml"]


def _victim_file(sb: Path) -> list[str]:
    (sb / "victim").mkdir()
    (sb / "victim" / "important").write_text("a file where the index would go")
    shutil.copy(SAMPLE, sb / "EHR_important.xml")
    return ["index", "EHR_important.xml", "--index-dir", "victim", "--config", "cfg.yaml"]


def _victim_link(sb: Path) -> list[str]:
    (sb / "elsewhere").mkdir()
    (sb / "elsewhere" / "keep.txt").write_text("keep")
    (sb / "victim").mkdir()
    (sb / "victim" / "important").symlink_to(sb / "elsewhere")
    shutil.copy(SAMPLE, sb / "EHR_important.xml")
    return ["index", "EHR_important.xml", "--index-dir", "victim", "--config", "cfg.yaml", "--force"]


def _victim_empty_manifest(sb: Path) -> list[str]:
    """A folder with a file named manifest.json that is not ragehr's, plus the user's files."""
    d = sb / "victim" / "important"
    d.mkdir(parents=True)
    (d / "manifest.json").write_text('{"name": "my web app"}')
    (d / "app.js").write_text("console.log(1)")
    shutil.copy(SAMPLE, sb / "EHR_important.xml")
    return ["index", "EHR_important.xml", "--index-dir", "victim", "--config", "cfg.yaml", "--force"]


def _read_victim(sb: Path) -> list[str]:
    (sb / "idx" / "important").mkdir()
    (sb / "idx" / "important" / "thesis.txt").write_text("years of work")
    return ["retrieve", "potassium", "--patient", "important", "--index-dir", "idx", "--retriever", "bm25"]


def _index_dir_is_file(cmd: list[str]) -> Callable[[Path], list[str]]:
    def setup(sb: Path) -> list[str]:
        (sb / "afile").write_text("not a folder")
        return [a if a != "IDX" else "afile" for a in cmd]

    return setup


def _damage(rel: str, how: str) -> Callable[[Path], list[str]]:
    def setup(sb: Path) -> list[str]:
        p = sb / "idx" / "sample" / rel
        if how == "truncate":
            p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
        elif how == "garbage":
            p.write_text("{not json")
        elif how == "version":
            doc = json.loads(p.read_text())
            doc["format_version"] = 999
            p.write_text(json.dumps(doc))
        elif how == "delete":
            p.unlink()
        return ["retrieve", "potassium", "--patient", "sample", "--index-dir", "idx", "--retriever", "bm25"]

    return setup


def _other_ids(sb: Path) -> list[str]:
    """Other patients' ids (MRNs, say) must never be printed in an error."""
    for mrn in ("MRN-000123", "MRN-000456"):
        shutil.copytree(sb / "idx" / "sample", sb / "idx" / mrn)
        m = sb / "idx" / mrn / "manifest.json"
        doc = json.loads(m.read_text())
        doc["patient_id"] = mrn
        m.write_text(json.dumps(doc))
    return ["retrieve", "potassium", "--patient", "nobody", "--index-dir", "idx"]


def _write(name: str, text: str, cmd: list[str]) -> Callable[[Path], list[str]]:
    def setup(sb: Path) -> list[str]:
        (sb / name).write_text(text)
        return cmd

    return setup


def _empty_folder(sb: Path) -> list[str]:
    (sb / "nothing_here").mkdir()
    (sb / "nothing_here" / "readme.txt").write_text("no records")
    return ["index", "nothing_here", "--index-dir", "idx", "--config", "cfg.yaml"]


Q = ["--index-dir", "idx"]
R = ["retrieve", "potassium", "--patient", "sample", *Q]
C = ["context", "potassium", "--patient", "sample", "--backend", "extractive", *Q]
A = ["ask", "potassium", "--patient", "sample", "--backend", "extractive", "--no-cache", *Q]
ESC = "a\x1b[31mb\x07\nc"

CASES: dict[str, Case] = {
    # issue 15 (1): never destroy what is not ragehr's
    "user_folder_where_index_goes": Case(_victim_folder, 3, "victim/important", index_dir="victim"),
    "user_file_where_index_goes": Case(_victim_file, 3, "victim/important", index_dir="victim"),
    "symlink_where_index_goes": Case(_victim_link, 3, "victim/important", index_dir="victim"),
    "foreign_manifest_where_index_goes": Case(_victim_empty_manifest, 3, "not a ragehr index", index_dir="victim"),
    "reading_a_user_folder": Case(_read_victim, 3, "not a ragehr index", forbidden=("re-index", "delete")),
    # issue 15 (6): --index-dir on a file
    "index_dir_file_index": Case(
        _index_dir_is_file([*"index X --index-dir IDX --config cfg.yaml".split()]),
        2,
        "is not a folder",
        index_dir="afile",
    ),
    "index_dir_file_retrieve": Case(
        _index_dir_is_file(["retrieve", "q", "--patient", "sample", "--index-dir", "IDX"]),
        2,
        "is not a folder",
        index_dir="afile",
    ),
    "index_dir_file_context": Case(
        _index_dir_is_file(["context", "q", "--patient", "sample", "--backend", "extractive", "--index-dir", "IDX"]),
        2,
        "is not a folder",
        index_dir="afile",
    ),
    "index_dir_file_patients": Case(
        _index_dir_is_file(["patients", "--index-dir", "IDX"]), 2, "is not a folder", index_dir="afile"
    ),
    # unknown and hostile patient ids
    "unknown_patient_hides_other_ids": Case(
        _other_ids, 3, "3 patient(s)", forbidden=("MRN-000123", "MRN-000456", "sample")
    ),
    "unknown_patient_names_the_list_command": Case(_args(*R[:3], "nobody", *Q), 3, "ragehr patients"),
    "unknown_patient_no_index_dir_yet": Case(
        _args(*R[:3], "nobody", "--index-dir", "fresh"), 3, "none is indexed", with_index=False
    ),
    "control_chars_in_patient_id": Case(
        _args(*R[:3], ESC, *Q), 3, "a\\x1b[31mb\\x07\\x0ac", forbidden=("\x1b", "\x07")
    ),
    "control_chars_in_patient_id_context": Case(_args(*C[:3], ESC, *C[4:]), 3, "\\x1b", forbidden=("\x1b",)),
    "control_chars_in_patient_id_ask": Case(_args(*A[:3], ESC, *A[4:]), 3, "\\x1b", forbidden=("\x1b",)),
    "path_traversal_patient_id": Case(_args(*R[:3], "../../etc/passwd", *Q), 3, "no index for patient"),
    "dash_patient_id": Case(_args(*R[:3], "-rf", *Q), 3, "no index for patient"),
    # empty questions
    "empty_question_retrieve": Case(_args("retrieve", "", *R[2:]), 2, "question is empty"),
    "blank_question_retrieve": Case(_args("retrieve", " \t\n", *R[2:]), 2, "question is empty"),
    "empty_question_context": Case(_args("context", "", *C[2:]), 2, "question is empty"),
    "empty_question_ask": Case(_args("ask", "   ", *A[2:]), 2, "question is empty"),
    # time windows and filters
    "since_after_until": Case(
        _args(*R, "--since", "2022", "--until", "2020-06"), 2, "--since 2022 is after --until 2020-06"
    ),
    "since_not_a_date": Case(_args(*R, "--since", "yesterday"), 2, "--since"),
    "until_impossible_date": Case(_args(*R, "--until", "2020-02-30"), 2, "--until"),
    "unknown_kind": Case(_args(*R, "--kinds", "lab,xray"), 2, "unknown kind"),
    "unknown_retriever": Case(_args(*R, "--retriever", "magic"), 2, "--retriever"),
    # budgets: context and ask agree, one clear line
    "ask_budget_huge": Case(_args(*A, "--budget", "99999999"), 2, "budget must be between 64 and"),
    "context_budget_huge": Case(_args(*C, "--budget", "99999999"), 2, "budget must be between 64 and"),
    "budget_too_small_usage": Case(_args(*C, "--budget", "10"), 2, "--budget"),
    "budget_not_a_number": Case(_args(*A, "--budget", "lots"), 2, "--budget"),
    "budget_leaves_no_room": Case(_args(*C, "--budget", "100"), 2, "raise --budget"),
    "full_does_not_fit": Case(_args(*C, "--strategy", "full", "--budget", "1024"), 2, "--strategy rag or recent"),
    # out-of-range options and usage errors: one line, not a usage box
    "k_zero": Case(_args(*R, "--k", "0"), 2, "--k"),
    "workers_zero": Case(_args("index", "x.xml", "--workers", "0"), 2, "--workers"),
    "max_new_tokens_zero": Case(_args(*A, "--max-new-tokens", "0"), 2, "--max-new-tokens"),
    "unknown_strategy": Case(_args(*C, "--strategy", "psychic"), 2, "strategy must be one of"),
    "unknown_order": Case(_args(*C, "--order", "random"), 2, "order must be one of"),
    "unknown_backend": Case(_args(*A[:5], "bogus", *A[6:]), 2, "unknown backend"),
    "openai_without_url": Case(_args(*A[:5], "openai", *A[6:]), 2, "base_url"),
    "unknown_option": Case(_args(*R, "--frobnicate"), 2, "No such option"),
    "missing_argument": Case(_args("index"), 2, "Missing argument"),
    "missing_patient_option": Case(_args("retrieve", "q"), 2, "--patient"),
    "unknown_command": Case(_args("destroy"), 2, "No such command"),
    "convert_unknown_target": Case(_args("convert", str(SAMPLE), "--to", "pdf"), 2, "--to must be one of"),
    "convert_output_is_folder": Case(_args("convert", str(SAMPLE), "--to", "jsonl", "-o", "idx"), 2, "is a directory"),
    # configs
    "config_missing": Case(_args(*R, "--config", "nope.yaml"), 2, "no such config file"),
    "config_malformed": Case(_write("bad.yaml", "a: [", [*R, "--config", "bad.yaml"]), 2, "malformed YAML"),
    "config_unknown_key": Case(_write("unk.yaml", "bogus: 1\n", [*R, "--config", "unk.yaml"]), 2, "bogus"),
    "eval_config_missing": Case(_args("eval", "nope.yaml"), 2, "no such config file"),
    # damaged indexes: exit 3, the damage reported, nothing repaired behind the user's back
    "truncated_chunks": Case(_damage("chunks.jsonl", "truncate"), 3, "re-index"),
    "truncated_bm25_ids": Case(_damage("bm25/ids.json", "truncate"), 3, "re-index"),
    "deleted_record": Case(_damage("record.json", "delete"), 3, "re-index"),
    "garbage_manifest": Case(_damage("manifest.json", "garbage"), 3, "re-index"),
    "future_format_version": Case(_damage("manifest.json", "version"), 3, "format version 999"),
    # inputs
    "folder_without_records": Case(_empty_folder, 2, "holds no record files"),
    "index_missing_file": Case(
        _args("index", "missing.xml", "--index-dir", "idx", "--config", "cfg.yaml"), 2, "no such file"
    ),
}
for _name in FILE_CASES:
    CASES[f"index_{_name}"] = Case(
        (lambda n: lambda sb: ["index", str(sb / "files" / _file_of(n)), "--index-dir", "idx", "--config", "cfg.yaml"])(
            _name
        ),
        2,
        "",
        with_index=False,
        forbidden=(SECRET,),
    )


def _file_of(name: str) -> str:
    return {"directory": "a_directory", "missing": "missing.xml"}.get(name, f"{name}.xml")


def test_corpus_size():
    """At least 50 cases, the 21 bad files of test_hostile among them."""
    assert len(CASES) >= 50 and sum(n.startswith("index_") and n[6:] in FILE_CASES for n in CASES) == 21


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The sample patient's index (hashing embedder: fast), copied into each sandbox."""
    root = tmp_path_factory.mktemp("template")
    [s] = build_indexes([SAMPLE], root / "idx", CFG)
    assert s.status == "built"
    shutil.rmtree(root / "idx" / ".cache")
    for lock in (root / "idx").glob(".lock-*"):
        lock.unlink()
    return root / "idx"


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The bad files of test_hostile and the phrase each one's error must hold (a folder given
    to ``index`` is searched for records instead of being refused as a file)."""
    d = tmp_path_factory.mktemp("files")
    phrases = {name: phrase for name, (_, phrase) in _cases(d).items()}
    phrases["directory"] = "holds no record files"
    return d, phrases


def snapshot(root: Path, index_dir: Path) -> dict[str, tuple]:
    """Every path under ``root`` (links not followed) with its type, mode, size, mtime and,
    for files, a sha256; lock files directly in ``index_dir`` (and so that folder's own entry,
    whose mtime they change) are left out; everything in it is listed."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if (p.parent == index_dir and name.startswith(".lock-")) or p == index_dir:
                continue  # the index folder's own mtime changes with its lock files
            st = os.lstat(p)
            digest = None
            if stat.S_ISREG(st.st_mode) and st.st_size < (1 << 20):
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
            out[str(p.relative_to(root))] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_size,
                st.st_mtime_ns,
                digest,
            )
    return out


def _limit_memory() -> None:  # pragma: no cover - runs in the child
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (2048 * 1024 * 1024, 2048 * 1024 * 1024))


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAGEHR_INDEX_DIR"}
    env.update(PYTHONPATH=str(REPO), PYTHONWARNINGS="ignore")
    return subprocess.run(
        [sys.executable, "-m", "ragehr.cli", *args],
        cwd=cwd,
        capture_output=True,
        timeout=120,
        env=env,
        preexec_fn=_limit_memory,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_case(name, tmp_path, template, hostile_files):
    case = CASES[name]
    sb = tmp_path / "sandbox"
    sb.mkdir()
    (sb / "cfg.yaml").write_text("index:\n  embedder: hashing\n  chunking:\n    max_tokens: 128\n")
    if case.with_index:
        shutil.copytree(template, sb / "idx", copy_function=shutil.copy2)
    phrase = case.phrase
    if name.startswith("index_") and name[len("index_") :] in FILE_CASES:
        shutil.copytree(hostile_files[0], sb / "files", symlinks=True, copy_function=shutil.copy2)
        phrase = hostile_files[1][name[len("index_") :]]
    args = case.setup(sb)
    before = snapshot(sb, sb / case.index_dir)
    proc = run_cli(args, sb)
    after = snapshot(sb, sb / case.index_dir)
    err = proc.stderr.decode("utf-8", "replace")
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == case.code, (proc.returncode, err)
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("ragehr: error: ") and phrase in lines[0], lines[0]
    assert "Traceback" not in err and "internal error" not in err
    for bad in case.forbidden:
        assert bad not in err and bad not in out, (bad, err)
    assert out == "", out
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert not changed, f"the failed command changed {sorted(changed)}"
