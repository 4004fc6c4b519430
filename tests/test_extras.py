"""Missing optional extras: one line naming the extra and the exact install command, exit 2."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from ragehr.cli import app
from ragehr.config import IndexConfig
from ragehr.extras import EXTRA_OF, MissingExtraError, install_command, missing_extra_error, require
from ragehr.index.build import build_indexes
from tests.conftest import FIXTURES, REPO


def test_require_names_the_extra_and_command(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith("sacrebleu.")]:  # imported by earlier tests
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sacrebleu", None)  # importing it now fails
    with pytest.raises(MissingExtraError) as info:
        require("sacrebleu.metrics", needed_for="chrF")
    msg = str(info.value)
    assert info.value.exit_code == 2
    assert msg.startswith("sacrebleu is not installed (chrF): it comes with the 'eval' extra: ")
    assert f"-m pip install -e '{REPO}[eval]'" in msg  # run from a checkout: the editable install
    assert require("json").__name__ == "json"


def test_unknown_modules_are_not_explained_away() -> None:
    exc = ModuleNotFoundError("No module named 'nonexistent_thing'", name="nonexistent_thing")
    assert missing_extra_error(exc) is None
    with pytest.raises(ModuleNotFoundError):
        require("nonexistent_thing_xyz")


def test_every_extra_named_exists_in_pyproject() -> None:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    for extra in set(EXTRA_OF.values()):
        assert f"\n{extra} = [" in text, extra
    assert "make -C" in install_command("local-fast") and "local-fast" in install_command("local-fast")


def test_cli_says_which_extra_instead_of_internal_error(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    [s] = build_indexes([FIXTURES / "medalign" / "EHR_sample.xml"], tmp_path, IndexConfig(embedder="hashing"))
    assert s.status == "built"
    for name in [
        m for m in list(sys.modules) if m == "bm25s" or m.startswith("bm25s.") or m.startswith("ragehr.retrieval.bm25")
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "bm25s", None)
    r = CliRunner().invoke(
        app, ["retrieve", "NIHSS", "--patient", "sample", "--index-dir", str(tmp_path), "--retriever", "bm25"]
    )
    assert r.exit_code == 2, r.output
    assert "internal error" not in r.output and r.output.count("\n") == 1
    assert "bm25s is not installed" in r.output and "'retrieval' extra" in r.output and "pip install" in r.output
