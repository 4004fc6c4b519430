"""Issue 24, part A: ragehr writes and deletes only what it made, and no user path can hang it.

A hostile user's corpus run through the CLI, like ``test_hostile_cli.py`` (whose sandbox,
snapshot and runner it reuses): every case must fail with one line on stderr, exit status 2
(bad input or options) or 3 (index problems), within the runner's timeout (a FIFO that hangs
is a failure), and change nothing in the sandbox, byte for byte and mode for mode, except the
lock files ``index`` may leave in its index folder.

The classes: a user's folder where an index goes that holds only files *named* like an
index's; lock files that are links, folders or FIFOs; FIFOs, sockets and devices given
wherever a file is read (records, questions, configs, datasets, the ``-o``/``--out`` target);
``ask|context --out`` naming the questions file (by path, link, hard link, ``..``) or a
JSONL that is not ragehr's; ``convert -o`` naming its input or an existing file; ``eval``
run and experiment names that leave ``results_dir``, and ``--fresh`` on folders that are
not ragehr's run folders.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.security.test_hostile_cli import SAMPLE, Case, run_cli, snapshot, template  # noqa: F401 - fixture

ESC = "x\x1b]0;pwned\x07y"


def _fifo(sb: Path, name: str) -> Path:
    p = sb / name
    p.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(p)
    return p


def _sock(sb: Path, name: str) -> Path:
    p = sb / name
    s = socket.socket(socket.AF_UNIX)
    try:
        s.bind(str(p))
    finally:
        s.close()
    return p


def _questions(sb: Path, name: str = "q.jsonl") -> Path:
    p = sb / name
    p.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "question": q, "patient_id": "sample"}) + "\n"
            for i, q in enumerate(("latest potassium", "weight in 2018", "any allergies"))
        )
    )
    return p


def _ask(q: str, out: str, mode: str = "ask") -> list[str]:
    extra = ["--backend", "extractive"] + (["--no-cache"] if mode == "ask" else [])
    return [mode, "--questions", q, "--out", out, *extra, "--index-dir", "idx"]


# -- index store: ownership by the manifest's content, never by file names -------------------


def _layout_folder(manifest: object | None, extra: dict[str, str] | None = None) -> Callable[[Path], list[str]]:
    def setup(sb: Path) -> list[str]:
        d = sb / "idx" / "sample"
        shutil.rmtree(d)
        d.mkdir()
        (d / "record.json").write_text('{"my": "own record.json"}')
        if manifest is not None:
            (d / "manifest.json").write_text(manifest if isinstance(manifest, str) else json.dumps(manifest))
        for k, v in (extra or {}).items():
            (d / k).write_text(v)
        shutil.copy(SAMPLE, sb / "EHR_sample.xml")
        return ["index", "EHR_sample.xml", "--index-dir", "idx", "--config", "cfg.yaml", "--force"]

    return setup


def _manifest_special(kind: str) -> Callable[[Path], list[str]]:
    def setup(sb: Path) -> list[str]:
        d = sb / "idx" / "sample"
        real = json.loads((d / "manifest.json").read_text())
        (d / "manifest.json").unlink()
        if kind == "fifo":
            os.mkfifo(d / "manifest.json")
        elif kind == "link":
            (sb / "elsewhere.json").write_text(json.dumps(real))
            (d / "manifest.json").symlink_to(sb / "elsewhere.json")
        elif kind == "folder":
            (d / "manifest.json").mkdir()
        shutil.copy(SAMPLE, sb / "EHR_sample.xml")
        return ["index", "EHR_sample.xml", "--index-dir", "idx", "--config", "cfg.yaml", "--force"]

    return setup


def _lock(kind: str) -> Callable[[Path], list[str]]:
    def setup(sb: Path) -> list[str]:
        lock = sb / "idx" / ".lock-sample"
        if kind == "link":
            (sb / "precious.txt").write_text("the lock link points here")
            lock.symlink_to(sb / "precious.txt")
        elif kind == "dangling":
            lock.symlink_to(sb / "nowhere" / "lock")
        elif kind == "folder":
            lock.mkdir()
            (lock / "keep.txt").write_text("mine")
        elif kind == "fifo":
            os.mkfifo(lock)
        shutil.copy(SAMPLE, sb / "EHR_sample.xml")
        return ["index", "EHR_sample.xml", "--index-dir", "idx", "--config", "cfg.yaml", "--force"]

    return setup


def _lock_untouched(kind: str) -> Callable[[Path], None]:
    def check(sb: Path) -> None:
        lock = sb / "idx" / ".lock-sample"
        if kind in ("link", "dangling"):
            assert lock.is_symlink()
        elif kind == "folder":
            assert (lock / "keep.txt").read_text() == "mine"
        elif kind == "fifo":
            import stat

            assert stat.S_ISFIFO(os.lstat(lock).st_mode)

    return check


# -- special files where a regular file is read ----------------------------------------------


def _special(kind: str, cmd: Callable[[str], list[str]]) -> Callable[[Path], list[str]]:
    def setup(sb: Path) -> list[str]:
        _questions(sb)
        shutil.copy(SAMPLE, sb / "EHR_sample.xml")
        if kind == "fifo":
            target = str(_fifo(sb, "special"))
        elif kind == "socket":
            target = str(_sock(sb, "sp.sock"))
        elif kind == "zero":
            target = "/dev/zero"
        elif kind == "zero_link":
            (sb / "zero.xml").symlink_to("/dev/zero")
            target = "zero.xml"
        else:
            raise AssertionError(kind)
        return cmd(target)

    return setup


def _index(t: str) -> list[str]:
    return ["index", t, "--index-dir", "idx", "--config", "cfg.yaml"]


def _eval_cfg(
    sb: Path, name: str = "tiny", dataset: str = "q.jsonl", results: str = "results", records: str = "EHR_sample.xml"
) -> str:
    (sb / "tiny.yaml").write_text(
        f"name: '{name}'\ndata_root: .\nindex_dir: idx\nresults_dir: {results}\n"
        "index: {embedder: hashing, chunking: {max_tokens: 128}}\n"
        f"datasets:\n  - {{name: q, type: jsonl, path: {dataset}, records: [{records}]}}\n"
        "strategies: [rag]\nbudgets: [512]\nbackends: [extractive]\nbootstrap_resamples: 100\n"
    )
    return "tiny.yaml"


def _eval_dataset_special(sb: Path) -> list[str]:
    shutil.copy(SAMPLE, sb / "EHR_sample.xml")
    _fifo(sb, "fifo.jsonl")
    return ["eval", _eval_cfg(sb, dataset="fifo.jsonl", records="")]


# -- batch --out ----------------------------------------------------------------------------


def _out_is_input(how: str, mode: str = "ask") -> Callable[[Path], list[str]]:
    def setup(sb: Path) -> list[str]:
        q = _questions(sb)
        if how == "same":
            out = "q.jsonl"
        elif how == "dotdot":
            (sb / "sub").mkdir()
            out = "sub/../q.jsonl"
        elif how == "absolute":
            out = str(q)
        elif how == "symlink":
            (sb / "a.jsonl").symlink_to(q)
            out = "a.jsonl"
        elif how == "hardlink":
            os.link(q, sb / "a.jsonl")
            out = "a.jsonl"
        else:
            raise AssertionError(how)
        return _ask("q.jsonl", out, mode)

    return setup


def _out_user_jsonl(content: str, mode: str = "ask") -> Callable[[Path], list[str]]:
    def setup(sb: Path) -> list[str]:
        _questions(sb)
        (sb / "mine.jsonl").write_text(content)
        return _ask("q.jsonl", "mine.jsonl", mode)

    return setup


_ANSWER = {"id": "q0", "line": 1, "question": "latest potassium", "patient_id": "sample", "chunks": [], "answer": "4.1"}
_CONTEXT = {k: v for k, v in _ANSWER.items() if k != "answer"}
_USER_ROWS = "".join(json.dumps(r) + "\n" for r in ({"id": "a", "score": 1}, {"id": "b", "score": 2}, {"note": "x"}))


def _out_special(kind: str) -> Callable[[Path], list[str]]:
    def setup(sb: Path) -> list[str]:
        _questions(sb)
        out = (
            str(_fifo(sb, "out.jsonl"))
            if kind == "fifo"
            else "/dev/null"
            if kind == "null"
            else str(_sock(sb, "o.sock"))
        )
        return _ask("q.jsonl", out)

    return setup


# -- convert -o -------------------------------------------------------------------------------


def _convert(how: str, force: bool = False) -> Callable[[Path], list[str]]:
    def setup(sb: Path) -> list[str]:
        rec = sb / "rec.xml"
        shutil.copy(SAMPLE, rec)
        if how == "same":
            out = "rec.xml"
        elif how == "dotdot":
            (sb / "d").mkdir()
            out = "d/../rec.xml"
        elif how == "absolute":
            out = str(rec)
        elif how == "symlink":
            (sb / "out.jsonl").symlink_to(rec)
            out = "out.jsonl"
        elif how == "hardlink":
            os.link(rec, sb / "out.jsonl")
            out = "out.jsonl"
        elif how == "exists":
            (sb / "thesis.jsonl").write_text("years of work\n")
            out = "thesis.jsonl"
        elif how == "fifo":
            out = str(_fifo(sb, "out.jsonl"))
        elif how == "dev_null":
            out = "/dev/null"
        else:
            raise AssertionError(how)
        return ["convert", "rec.xml", "--to", "jsonl", "-o", out, *(["--force"] if force else [])]

    return setup


# -- eval --run / --fresh -------------------------------------------------------------------


def _victim(sb: Path, rel: str) -> None:
    d = sb / rel
    d.mkdir(parents=True, exist_ok=True)
    (d / "thesis.txt").write_text("years of work")
    (d / "sub").mkdir(exist_ok=True)
    (d / "sub" / "data.csv").write_text("a,b\n1,2\n")


def _eval_run(
    run: str | None,
    *,
    name: str = "tiny",
    victim: str | None = None,
    fresh: bool = True,
    prepare: Callable[[Path], None] | None = None,
) -> Callable[[Path], list[str]]:
    def setup(sb: Path) -> list[str]:
        shutil.copy(SAMPLE, sb / "EHR_sample.xml")
        (sb / "q.jsonl").write_text(json.dumps({"question": "latest potassium", "patient_id": "sample"}) + "\n")
        (sb / "results").mkdir()
        if victim:
            _victim(sb, victim)
        if prepare:
            prepare(sb)
        cfg = _eval_cfg(sb, name=name)
        return ["eval", cfg, *(["--run", run] if run is not None else []), *(["--fresh"] if fresh else [])]

    return setup


def _fake_run_manifest(doc: object) -> Callable[[Path], None]:
    def prep(sb: Path) -> None:
        _victim(sb, "results/tiny")
        (sb / "results" / "tiny" / "manifest.json").write_text(json.dumps(doc))

    return prep


def _run_link(sb: Path) -> None:
    _victim(sb, "precious")
    (sb / "precious" / "manifest.json").write_text(json.dumps({"format": "ragehr-run", "name": "tiny"}))
    (sb / "results" / "tiny").symlink_to(sb / "precious")


def _run_file(sb: Path) -> None:
    (sb / "results" / "tiny").write_text("a file of mine")


def _serve_on_file(sb: Path) -> list[str]:
    (sb / "afile").write_text("not a folder")
    return ["serve", "--index-dir", "afile", "--port", "0"]


CASES: dict[str, Case] = {
    # index store: a user's folder holding only files named like an index's
    "layout_names_garbage_manifest": Case(_layout_folder("{trunc"), 3, "not a ragehr index"),
    "layout_names_no_manifest": Case(_layout_folder(None), 3, "not a ragehr index"),
    "layout_names_foreign_manifest": Case(_layout_folder({"name": "my web app", "files": {}}), 3, "not a ragehr index"),
    "layout_names_manifest_keys_as_list": Case(
        _layout_folder(["format_version", "ragehr_version", "patient_id", "config_hash", "files"]),
        3,
        "not a ragehr index",
    ),
    "layout_names_other_format_marker": Case(
        _layout_folder({"format": "not-ragehr", "patient_id": "sample", "files": {}}), 3, "not a ragehr index"
    ),
    "layout_names_other_patients_manifest": Case(
        _layout_folder({"format": "ragehr-index", "patient_id": "someone-else", "files": {}}), 3, "another patient"
    ),
    "layout_names_with_stat_stamp": Case(
        _layout_folder("[]", {".stat.json": "{}", "chunks.jsonl": "mine\n"}), 3, "not a ragehr index"
    ),
    "manifest_is_a_fifo": Case(_manifest_special("fifo"), 3, "not a ragehr index"),
    "manifest_is_a_link": Case(_manifest_special("link"), 3, "not a ragehr index"),
    "manifest_is_a_folder": Case(_manifest_special("folder"), 3, "not a ragehr index"),
    # lock files that are not ragehr's
    "lock_is_a_symlink": Case(_lock("link"), 3, "not ragehr's lock file", checks=(_lock_untouched("link"),)),
    "lock_is_a_dangling_symlink": Case(
        _lock("dangling"), 3, "not ragehr's lock file", checks=(_lock_untouched("dangling"),)
    ),
    "lock_is_a_folder": Case(_lock("folder"), 3, "not ragehr's lock file", checks=(_lock_untouched("folder"),)),
    "lock_is_a_fifo": Case(_lock("fifo"), 3, "not ragehr's lock file", checks=(_lock_untouched("fifo"),)),
    # non-regular files: refused before any read (a FIFO used to hang `index` forever)
    "index_fifo": Case(_special("fifo", _index), 2, "FIFO"),
    "index_socket": Case(_special("socket", _index), 2, "socket"),
    "index_dev_zero": Case(_special("zero", _index), 2, "device"),
    "index_link_to_dev_zero": Case(_special("zero_link", _index), 2, "device"),
    "inspect_fifo": Case(_special("fifo", lambda t: ["inspect", t]), 2, "FIFO"),
    "inspect_dev_zero": Case(_special("zero", lambda t: ["inspect", t]), 2, "regular file"),
    "convert_fifo": Case(_special("fifo", lambda t: ["convert", t, "--to", "jsonl"]), 2, "regular file"),
    "ask_questions_fifo": Case(_special("fifo", lambda t: _ask(t, "a.jsonl")), 2, "FIFO"),
    "ask_questions_dev_zero": Case(_special("zero", lambda t: _ask(t, "a.jsonl")), 2, "device"),
    "context_questions_socket": Case(_special("socket", lambda t: _ask(t, "a.jsonl", "context")), 2, "socket"),
    "config_fifo": Case(
        _special(
            "fifo", lambda t: ["retrieve", "potassium", "--patient", "sample", "--index-dir", "idx", "--config", t]
        ),
        2,
        "FIFO",
    ),
    "eval_config_fifo": Case(_special("fifo", lambda t: ["eval", t]), 2, "FIFO"),
    "eval_config_dev_zero": Case(_special("zero", lambda t: ["eval", t]), 2, "device"),
    "eval_dataset_fifo": Case(_eval_dataset_special, 2, "FIFO"),
    # batch --out: never the questions file, never a file that is not ragehr's output
    "out_is_questions": Case(_out_is_input("same"), 2, "is the input file"),
    "out_is_questions_dotdot": Case(_out_is_input("dotdot"), 2, "is the input file"),
    "out_is_questions_absolute": Case(_out_is_input("absolute"), 2, "is the input file"),
    "out_symlink_to_questions": Case(_out_is_input("symlink"), 2, "is the input file"),
    "out_hardlink_to_questions": Case(_out_is_input("hardlink"), 2, "is the input file"),
    "context_out_is_questions": Case(_out_is_input("same", "context"), 2, "is the input file"),
    "out_user_jsonl": Case(_out_user_jsonl(_USER_ROWS), 2, "not a ragehr `ask` answer line"),
    "out_user_jsonl_after_answers": Case(
        _out_user_jsonl(json.dumps(_ANSWER) + "\n" + _USER_ROWS), 2, "line 2 is not a ragehr"
    ),
    "out_user_text_file": Case(_out_user_jsonl("my notes\nsecond line\n"), 2, "not a ragehr"),
    "out_user_unterminated_line": Case(_out_user_jsonl(json.dumps(_ANSWER) + "\nmy notes"), 2, "line 2 is not"),
    "out_context_rows_for_ask": Case(_out_user_jsonl(json.dumps(_CONTEXT) + "\n"), 2, "not a ragehr `ask`"),
    "out_ask_rows_for_context": Case(
        _out_user_jsonl(json.dumps(_ANSWER) + "\n", "context"), 2, "not a ragehr `context`"
    ),
    "out_is_a_fifo": Case(_out_special("fifo"), 2, "FIFO"),
    "out_is_dev_null": Case(_out_special("null"), 2, "device"),
    "out_is_a_socket": Case(_out_special("socket"), 2, "socket"),
    # convert -o: never the input, never an existing file without --force
    "convert_o_is_input": Case(_convert("same"), 2, "is the input record"),
    "convert_o_is_input_force": Case(_convert("same", force=True), 2, "is the input record"),
    "convert_o_is_input_dotdot": Case(_convert("dotdot"), 2, "is the input record"),
    "convert_o_is_input_absolute": Case(_convert("absolute", force=True), 2, "is the input record"),
    "convert_o_symlink_to_input": Case(_convert("symlink", force=True), 2, "is the input record"),
    "convert_o_hardlink_to_input": Case(_convert("hardlink", force=True), 2, "is the input record"),
    "convert_o_exists": Case(_convert("exists"), 2, "without --force"),
    "convert_o_fifo": Case(_convert("fifo", force=True), 2, "FIFO"),
    "convert_o_dev_null": Case(_convert("dev_null", force=True), 2, "device"),
    # eval: run names stay inside results_dir; --fresh deletes only ragehr's run folders
    "eval_run_parent_victim_fresh": Case(_eval_run("../victim", victim="victim"), 2, "path separator"),
    "eval_run_absolute_fresh": Case(_eval_run("/tmp", victim="victim"), 2, "path separator"),
    "eval_run_dotdot_fresh": Case(_eval_run("..", victim="victim"), 2, "not a folder name"),
    "eval_run_dot_fresh": Case(_eval_run(".", victim="results/old"), 2, "not a folder name"),
    "eval_run_control_chars": Case(_eval_run(ESC), 2, "control character", forbidden=("\x1b", "\x07")),
    "eval_run_backslash": Case(_eval_run("..\\victim", victim="victim"), 2, "path separator"),
    "eval_experiment_named_dotdot_fresh": Case(_eval_run(None, name="..", victim="victim"), 2, "not folder names"),
    "eval_experiment_named_dot_fresh": Case(_eval_run(None, name=".", victim="results/x"), 2, "not folder names"),
    "eval_fresh_user_folder_in_results": Case(_eval_run(None, victim="results/tiny"), 2, "not a ragehr run folder"),
    "eval_resume_into_user_folder": Case(
        _eval_run(None, victim="results/tiny", fresh=False), 2, "not a ragehr run folder"
    ),
    "eval_fresh_manifest_without_marker": Case(
        _eval_run(None, prepare=_fake_run_manifest({"name": "tiny", "ragehr_version": "0.1"})),
        2,
        "not a ragehr run folder",
    ),
    "eval_fresh_index_manifest_is_not_a_run": Case(
        _eval_run(None, prepare=_fake_run_manifest({"format": "ragehr-index", "patient_id": "x", "files": {}})),
        2,
        "not a ragehr run folder",
    ),
    "eval_fresh_run_dir_is_a_link": Case(_eval_run(None, prepare=_run_link), 2, "a link"),
    "eval_fresh_run_dir_is_a_file": Case(_eval_run(None, prepare=_run_file), 2, "not a folder"),
    # serve: a file as --index-dir refuses to start (it used to serve 0 patients)
    "serve_index_dir_is_a_file": Case(_serve_on_file, 2, "is not a folder", index_dir="afile"),
}


def test_corpus_size():
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_write_case(name, tmp_path, template):  # noqa: F811 - the fixture
    case = CASES[name]
    sb = tmp_path / "sandbox"
    sb.mkdir()
    (sb / "cfg.yaml").write_text("index:\n  embedder: hashing\n  chunking:\n    max_tokens: 128\n")
    if case.with_index:
        shutil.copytree(template, sb / "idx", copy_function=shutil.copy2)
    args = case.setup(sb)
    before = snapshot(sb, sb / case.index_dir)
    proc = run_cli(args, sb)
    after = snapshot(sb, sb / case.index_dir)
    err = proc.stderr.decode("utf-8", "replace")
    out = proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == case.code, (proc.returncode, err)
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith("ragehr: error: ") and case.phrase in lines[0], lines[0]
    assert "Traceback" not in err and "internal error" not in err
    for bad in case.forbidden:
        assert bad not in err and bad not in out, (bad, err)
    assert out == "", out
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    assert not changed, f"the failed command changed {sorted(changed)}"
    for check in case.checks:
        check(sb)
