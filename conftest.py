"""Executable docs: every ```python and ```bash block of the README and ``docs/*.md`` runs in
the test suite, with Sybil, against ``../shared/data``.

- ```python blocks run as Python, in one namespace per file, in order;
- ```bash blocks run with ``bash -e`` from the repository root, ``ragehr`` on ``PATH`` (this
  interpreter, this checkout), and each file gets its own empty index folder
  (``RAGEHR_INDEX_DIR``) and results folder;
- both run with ``RAGEHR_CONFIG`` set to a fast configuration (hashing embedder, extractive
  backend: :data:`FAST_CONFIG`), so the docs' tests take seconds, not the minutes MiniLM and
  SmolLM2 would; a reader running the same commands gets the defaults;
- a block preceded by ``<!-- skip: next -->`` does not run (it needs a GPU, a served model, a
  file the reader provides, or minutes).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent
DOCUMENTS = ["README.md", "docs/*.md"]
"""Globs (from the repository root) of the Markdown files whose examples run."""
FAST_CONFIG = """\
# the docs' tests: seconds per command (the defaults load MiniLM and SmolLM2)
index:
  embedder: hashing
llm:
  backend: extractive
"""
BASH_TIMEOUT_S = 300

try:
    from sybil import Sybil
    from sybil.parsers.markdown import CodeBlockParser, PythonCodeBlockParser, SkipParser
except ImportError:  # the dev extra is not installed: the docs are not collected
    Sybil = None  # type: ignore[assignment,misc]


def _setup(namespace: dict) -> None:
    """Per document: a scratch folder with the fast config, an index folder and a ``ragehr``
    command running this interpreter on this checkout; the environment points at them."""
    scratch = Path(tempfile.mkdtemp(prefix="ragehr-docs-"))
    (scratch / "fast.yaml").write_text(FAST_CONFIG, encoding="utf-8")
    bin_dir = scratch / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "ragehr"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m ragehr.cli "$@"\n', encoding="utf-8")
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = {
        "RAGEHR_CONFIG": str(scratch / "fast.yaml"),
        "RAGEHR_INDEX_DIR": str(scratch / "indexes"),
        "RAGEHR_DOCS_SCRATCH": str(scratch),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
    namespace["_saved_env"] = {k: os.environ.get(k) for k in env}
    namespace["_saved_cwd"] = os.getcwd()
    namespace["_scratch"] = scratch
    os.environ.update(env)
    os.chdir(REPO)


def _teardown(namespace: dict) -> None:
    for k, v in namespace.pop("_saved_env", {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    os.chdir(namespace.pop("_saved_cwd", REPO))
    shutil.rmtree(namespace.pop("_scratch", ""), ignore_errors=True)


def run_bash(example) -> None:
    """A ```bash block: ``bash -e`` from the repository root; a non-zero exit fails the test
    with the block's output."""
    done = subprocess.run(
        ["bash", "-e", "-c", example.parsed],
        cwd=REPO,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=BASH_TIMEOUT_S,
    )
    if done.returncode != 0:
        raise AssertionError(
            f"bash block at line {example.line} exited {done.returncode}\n"
            f"--- stdout ---\n{done.stdout[-4000:]}\n--- stderr ---\n{done.stderr[-4000:]}"
        )


if Sybil is not None:
    pytest_collect_file = Sybil(
        parsers=[PythonCodeBlockParser(), CodeBlockParser("bash", evaluator=run_bash), SkipParser()],
        patterns=DOCUMENTS,
        setup=_setup,
        teardown=_teardown,
    ).pytest()
