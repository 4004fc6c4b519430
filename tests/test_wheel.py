"""The package as users get it: ``python -m build`` makes an sdist and a wheel, and the wheel,
installed (not editable) into a fresh venv, runs the CLI on the sample record with its package
data (the page's assets, ``py.typed``, everything under ``ragehr/data/``) in place.

No download: the build runs without isolation (this venv has setuptools), the wheel is
installed with ``--no-deps --no-index``, and its dependencies are this venv's packages, made
visible to the fresh venv by a path file (which does not run this venv's editable hooks, so the
``ragehr`` imported there is the wheel's)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, REPO

pytestmark = pytest.mark.slow

SAMPLE = FIXTURES / "medalign" / "EHR_sample.xml"


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: int = 600) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _source_copy(dest: Path) -> Path:
    """The tracked files (plus untracked, not ignored ones) of this checkout: what a clone has."""
    pytest.importorskip("build", reason="the dev extra (build) is not installed")
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell the source files")
    for rel in listed.stdout.splitlines():
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _source_copy(tmp / "src")
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp / "dist", ".", cwd=src)
    [wheel] = (tmp / "dist").glob("ragehr-*.whl")
    [sdist] = (tmp / "dist").glob("ragehr-*.tar.gz")
    venv = tmp / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp)
    vpy = venv / "bin" / "python"
    purelib = Path(_run(vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=tmp).strip())
    (purelib / "_ragehr_test_deps.pth").write_text(
        "\n".join(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])) + "\n"
    )
    _run(sys.executable, "-m", "pip", "--python", vpy, "install", "--no-deps", "--no-index", "--quiet", wheel, cwd=tmp)
    return {"tmp": tmp, "src": src, "wheel": wheel, "sdist": sdist, "venv": venv, "purelib": purelib}


def _env(built: dict[str, Path]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAGEHR_CONFIG", "RAGEHR_INDEX_DIR")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def test_the_wheel_holds_the_package_data(built):
    names = set(zipfile.ZipFile(built["wheel"]).namelist())
    assert "ragehr/py.typed" in names
    assert {"ragehr/serve/static/app.js", "ragehr/serve/static/app.css"} <= names
    data = [p.relative_to(REPO).as_posix() for p in (REPO / "ragehr" / "data").rglob("*") if p.is_file()]
    assert not [d for d in data if d not in names and "__pycache__" not in d]
    for p in (REPO / "ragehr").rglob("*.py"):
        assert p.relative_to(REPO).as_posix() in names
    meta = zipfile.ZipFile(built["wheel"]).read(f"ragehr-{_version()}.dist-info/METADATA").decode()
    assert f"Version: {_version()}" in meta


def _version() -> str:
    import ragehr

    return ragehr.__version__


def test_the_installed_wheel_runs_the_cli(built, tmp_path):
    env = _env(built)
    bin_ = built["venv"] / "bin"
    where = _run(
        bin_ / "python",
        "-c",
        "import ragehr, ragehr.serve; print(ragehr.__file__, ragehr.__version__)",
        cwd=tmp_path,
        env=env,
    )
    path, version = where.split()
    assert Path(path).is_relative_to(built["purelib"]), f"ragehr imported from {path}, not the wheel"
    assert version == _version()
    assert "Usage" in _run(bin_ / "ragehr", "--help", cwd=tmp_path, env=env)
    assert _run(bin_ / "ragehr", "--version", cwd=tmp_path, env=env).strip() == f"ragehr {version}"

    cfg = tmp_path / "fast.yaml"
    cfg.write_text("index:\n  embedder: hashing\nllm:\n  backend: extractive\n", encoding="utf-8")
    idx = tmp_path / "idx"
    doctor = json.loads(
        _run(
            bin_ / "ragehr",
            "doctor",
            "--json",
            "--config",
            cfg,
            "--index-dir",
            idx,
            "--backend",
            "extractive",
            cwd=tmp_path,
            env=env,
        )
    )
    assert doctor["configured_backend_generates"] and doctor["versions"]["ragehr"] == version

    _run(bin_ / "ragehr", "index", SAMPLE, "--index-dir", idx, "--config", cfg, cwd=tmp_path, env=env)
    answer = json.loads(
        _run(
            bin_ / "ragehr",
            "ask",
            "What was the systolic blood pressure?",
            "--patient-id",
            "sample",
            "--backend",
            "extractive",
            "--index-dir",
            idx,
            "--json",
            cwd=tmp_path,
            env=env,
        )
    )
    assert answer["patient_id"] == "sample" and answer["citations"] and answer["grounded"]
    page_assets = _run(
        bin_ / "python",
        "-c",
        "from importlib import resources; "
        "print((resources.files('ragehr.serve') / 'static' / 'app.js').read_text()[:20])",
        cwd=tmp_path,
        env=env,
    )
    assert page_assets.strip()


def test_the_sdist_holds_what_a_source_user_needs(built):
    import tarfile

    with tarfile.open(built["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {
        "pyproject.toml",
        "README.md",
        "CHANGELOG.md",
        "LICENSE",
        "configs/default.yaml",
        "ragehr/py.typed",
        "ragehr/serve/static/app.js",
    } <= names
    assert not [n for n in names if n.startswith(("indexes/", "results/", "benchmarks/data/"))]
