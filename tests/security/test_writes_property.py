"""Issue 24, part A, as a property: every command that writes (``index``, ``ask|context
--questions --out``, ``convert -o``, ``eval --fresh``) leaves every file and folder of the
user's exactly as it was, byte for byte and mode for mode, whatever user tree surrounds its
target: files named like an index's or a run's, near-miss manifests, links, the target itself
being the user's, the output naming the input. The command may succeed or fail; it may add
its own files; it may not change, replace or delete one of the user's.

Runs the CLI in-process (hashing embedder, extractive backend) on a few generated trees per
command, so it stays within the corpus's CI time."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ragehr.cli import main as cli_main  # noqa: E402
from tests.conftest import FIXTURES  # noqa: E402

SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"
SETTINGS = settings(
    max_examples=6,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

NAMES = st.sampled_from(
    [
        "manifest.json",
        "record.json",
        "chunks.jsonl",
        "bm25",
        "dense",
        ".stat.json",
        "predictions.jsonl",
        "metrics.json",
        "summary.md",
        "notes.txt",
        "sample",
        "tiny",
        "a.jsonl",
        "out.jsonl",
        "thesis.docx",
    ]
)
CONTENTS = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b'{"name": "my web app"}',
            b'{"format": "ragehr-index"}',
            b'{"format": "ragehr-run"}',
            b'{"format_version": 1, "patient_id": "other", "files": {}}',
            b"[]",
            b"{trunc",
            b'{"id": "q0", "line": 1}\n',
            b'{"id": "q0", "answer": "mine"}\nmy own line\n',
        ]
    ),
)
MODES = st.sampled_from([0o600, 0o644, 0o640, 0o400])


@st.composite
def user_trees(draw, depth: int = 2) -> dict[str, tuple[bytes | None, int]]:
    """Relative path -> (content, mode); content ``None`` is a folder."""
    tree: dict[str, tuple[bytes | None, int]] = {}

    def fill(prefix: str, level: int) -> None:
        for name in draw(st.lists(NAMES, max_size=4, unique=True)):
            rel = f"{prefix}{name}"
            if level < depth and draw(st.booleans()):
                tree[rel] = (None, 0o755)
                fill(rel + "/", level + 1)
            else:
                tree[rel] = (draw(CONTENTS), draw(MODES))

    fill("", 0)
    return tree


def plant(root: Path, tree: dict[str, tuple[bytes | None, int]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for rel, (content, mode) in sorted(tree.items()):
        p = root / rel
        if content is None:
            p.mkdir(exist_ok=True)
        else:
            p.write_bytes(content)
        os.chmod(p, mode)


def state(root: Path) -> dict[str, tuple]:
    """Every path under ``root`` (links not followed): type, mode and, for files, size,
    mtime and sha256."""
    out: dict[str, tuple] = {}
    if not os.path.lexists(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            s = os.lstat(p)
            if stat.S_ISREG(s.st_mode):
                out[str(p)] = (
                    "f",
                    stat.S_IMODE(s.st_mode),
                    s.st_size,
                    s.st_mtime_ns,
                    hashlib.sha256(p.read_bytes()).hexdigest(),
                )
            else:
                out[str(p)] = (stat.S_IFMT(s.st_mode), stat.S_IMODE(s.st_mode))
    return out


def run(args: list[str]) -> int:
    try:
        cli_main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def assert_untouched(before: dict[str, tuple], root: Path) -> None:
    after = state(root)
    lost = {k: v for k, v in before.items() if after.get(k) != v}
    assert not lost, f"user paths changed or gone: {sorted(lost)[:5]}"


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prop-template")
    (root / "cfg.yaml").write_text("index:\n  embedder: hashing\n  chunking:\n    max_tokens: 128\n")
    assert run(["index", str(SAMPLE), "--index-dir", str(root / "idx"), "--config", str(root / "cfg.yaml")]) == 0
    return root


def _sandbox(template: Path, with_index: bool = True) -> Path:
    sb = Path(tempfile.mkdtemp(prefix="ragehr-prop-"))
    shutil.copy(template / "cfg.yaml", sb / "cfg.yaml")
    if with_index:
        shutil.copytree(template / "idx", sb / "idx", copy_function=shutil.copy2)
    return sb


LAYOUT_ONLY = {"manifest.json": (b"{trunc", 0o644), "record.json": (b'{"mine": 1}', 0o600)}


@given(tree=user_trees(), where=st.sampled_from(["idx/sample", "idx/other", "idx/user", "."]))
@example(tree=LAYOUT_ONLY, where="idx/sample")  # issue 24: a folder holding only index file names
@example(tree={"record.json": (b"{}", 0o644), "bm25": (None, 0o755)}, where="idx/sample")
@SETTINGS
def test_index_never_touches_a_user_tree(template, tree, where):
    sb = _sandbox(template, with_index=False)
    try:
        target = sb / where
        if where == "idx/user" or where == "idx/other":
            (sb / "idx").mkdir()
        plant(target if where != "." else sb / "mine", tree)
        shutil.copy(SAMPLE, sb / "EHR_sample.xml")
        before = state(sb)
        before = {k: v for k, v in before.items() if not k.endswith("EHR_sample.xml")}
        run(
            [
                "index",
                str(sb / "EHR_sample.xml"),
                "--index-dir",
                str(sb / "idx"),
                "--config",
                str(sb / "cfg.yaml"),
                "--force",
            ]
        )
        assert_untouched(before, sb)
    finally:
        shutil.rmtree(sb, ignore_errors=True)


@given(
    tree=user_trees(depth=1),
    out=st.sampled_from(["q.jsonl", "a.jsonl", "out.jsonl", "new.jsonl", "link.jsonl"]),
    mode=st.sampled_from(["ask", "context"]),
)
@example(tree={}, out="q.jsonl", mode="ask")  # issue 24: --out Q rewrote the questions file
@example(tree={}, out="link.jsonl", mode="context")
@example(
    tree={"a.jsonl": (b'{"id": "q0", "line": 1, "question": "x", "chunks": [], "answer": "4"}\nmine\n', 0o644)},
    out="a.jsonl",
    mode="ask",
)  # a user's JSONL: only answer-looking lines used to be kept
@SETTINGS
def test_batch_out_never_touches_a_user_file(template, tree, out, mode):
    sb = _sandbox(template)
    try:
        plant(sb, {k: v for k, v in tree.items() if k not in ("idx", "cfg.yaml", "q.jsonl", "new.jsonl", "link.jsonl")})
        (sb / "q.jsonl").write_text(
            "".join(
                json.dumps({"id": f"q{i}", "question": q, "patient_id": "sample"}) + "\n"
                for i, q in enumerate(("latest potassium", "weight in 2018"))
            )
        )
        (sb / "link.jsonl").symlink_to(sb / "q.jsonl")
        before = {k: v for k, v in state(sb).items() if not k.startswith(str(sb / "idx"))}
        extra = ["--backend", "extractive"] + (["--no-cache"] if mode == "ask" else [])
        run([mode, "--questions", str(sb / "q.jsonl"), "--out", str(sb / out), *extra, "--index-dir", str(sb / "idx")])
        if out == "new.jsonl":
            rows = [json.loads(line) for line in (sb / out).read_text().splitlines()]
            assert {r["id"] for r in rows} == {"q0", "q1"}
        assert_untouched(before, sb)
    finally:
        shutil.rmtree(sb, ignore_errors=True)


@given(
    tree=user_trees(depth=1),
    out=st.sampled_from(["rec.xml", "notes.txt", "out.jsonl", "new.jsonl", "hard.xml"]),
    force=st.booleans(),
)
@example(tree={}, out="rec.xml", force=False)  # issue 24: convert rec.xml -o rec.xml
@example(tree={"notes.txt": (b"mine", 0o600)}, out="notes.txt", force=False)
@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_convert_never_touches_a_user_file(template, tree, out, force):
    sb = _sandbox(template, with_index=False)
    try:
        plant(sb, {k: v for k, v in tree.items() if k not in ("rec.xml", "new.jsonl", "hard.xml", "cfg.yaml")})
        shutil.copy(SAMPLE, sb / "rec.xml")
        os.link(sb / "rec.xml", sb / "hard.xml")
        before = state(sb)
        if force and out not in ("rec.xml", "hard.xml"):
            before.pop(str(sb / out), None)  # --force: the user asked for this one file to be replaced
        code = run(
            ["convert", str(sb / "rec.xml"), "--to", "jsonl", "-o", str(sb / out), *(["--force"] if force else [])]
        )
        assert_untouched(before, sb)
        if out in ("rec.xml", "hard.xml"):
            assert code == 2
    finally:
        shutil.rmtree(sb, ignore_errors=True)


@given(
    tree=user_trees(), run_name=st.sampled_from([None, "tiny", "..", ".", "../victim", "victim"]), marker=st.booleans()
)
@example(tree={"thesis.docx": (b"years", 0o600)}, run_name="../victim", marker=False)  # issue 24: deleted ../victim
@example(tree={"thesis.docx": (b"years", 0o600)}, run_name=None, marker=True)
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_eval_fresh_never_touches_a_user_tree(template, tree, run_name, marker):
    sb = _sandbox(template)
    try:
        (sb / "results").mkdir()
        plant(sb / "victim", tree)
        plant(sb / "results" / (run_name if run_name not in (None, "..", ".", "../victim") else "tiny"), tree)
        if marker and not (sb / "results" / "tiny" / "manifest.json").is_dir():
            # a near miss: the run marker's key without ragehr's value
            (sb / "results" / "tiny").mkdir(exist_ok=True)
            (sb / "results" / "tiny" / "manifest.json").write_text(
                json.dumps({"format": "ragehr-run?", "name": "tiny"})
            )
        shutil.copy(SAMPLE, sb / "EHR_sample.xml")
        (sb / "q.jsonl").write_text(json.dumps({"question": "latest potassium", "patient_id": "sample"}) + "\n")
        (sb / "tiny.yaml").write_text(
            f"name: tiny\ndata_root: {sb}\nindex_dir: {sb / 'idx'}\nresults_dir: {sb / 'results'}\n"
            "index: {embedder: hashing, chunking: {max_tokens: 128}}\n"
            "datasets:\n  - {name: q, type: jsonl, path: q.jsonl, records: [EHR_sample.xml]}\n"
            "strategies: [rag]\nbudgets: [512]\nbackends: [extractive]\nbootstrap_resamples: 100\n"
        )
        before = {k: v for k, v in state(sb).items() if not k.startswith(str(sb / "idx"))}
        run(["eval", str(sb / "tiny.yaml"), *(["--run", run_name] if run_name else []), "--fresh"])
        assert_untouched(before, sb)
    finally:
        shutil.rmtree(sb, ignore_errors=True)
