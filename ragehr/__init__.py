"""ragehr: retrieval-augmented question answering over a patient's EHR.

The public API (see ``docs/python-api.md``)::

    import ragehr

    ragehr.index_records(["record.xml"], "indexes")           # ragehr index
    patient = ragehr.open_index("indexes").patient("p1")       # ragehr patients
    patient.retrieve("latest A1c?", k=5)                       # ragehr retrieve
    patient.context("latest A1c?", budget=2048)                # ragehr context
    patient.ask("latest A1c?", backend="extractive")           # ragehr ask
    ragehr.run_eval("configs/experiments/smoke.yaml")          # ragehr eval
    ragehr.load_run("results/smoke").report()                  # its tables and plots, recomputed

Each result's ``to_json()`` is what the command prints with ``--json``. Only the names in
``__all__`` are public; every submodule is internal and may change.

``import ragehr`` stays light: no torch, faiss or llama-index until a function that needs them
is called (the names below are loaded on first use).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # the names, for type checkers and IDEs (re-exported: `X as X`)
    from ragehr.api import Context as Context
    from ragehr.api import EvalRun as EvalRun
    from ragehr.api import Indexes as Indexes
    from ragehr.api import Patient as Patient
    from ragehr.api import PatientInfo as PatientInfo
    from ragehr.api import Retrieval as Retrieval
    from ragehr.api import RunReport as RunReport
    from ragehr.api import index_records as index_records
    from ragehr.api import load_run as load_run
    from ragehr.api import open_index as open_index
    from ragehr.api import run_eval as run_eval
    from ragehr.config import RagehrConfig as RagehrConfig
    from ragehr.errors import RagehrError as RagehrError
    from ragehr.pipeline.ask import AskResult as AskResult
    from ragehr.types import BuildSummary as BuildSummary

_LAZY = {
    "Context": "ragehr.api",
    "EvalRun": "ragehr.api",
    "Indexes": "ragehr.api",
    "Patient": "ragehr.api",
    "PatientInfo": "ragehr.api",
    "Retrieval": "ragehr.api",
    "RunReport": "ragehr.api",
    "index_records": "ragehr.api",
    "load_run": "ragehr.api",
    "open_index": "ragehr.api",
    "run_eval": "ragehr.api",
    "AskResult": "ragehr.pipeline.ask",
    "BuildSummary": "ragehr.types",
    "RagehrConfig": "ragehr.config",
    "RagehrError": "ragehr.errors",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ragehr' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
