"""The layering of README's "Layout" section, checked on every import in the package (module
and function level, ``if TYPE_CHECKING`` blocks included): a module may import its own unit
and units of strictly lower layers, never a sibling on its layer or anything above it.

Allowed exceptions, each on purpose:

- ``from ragehr import __version__`` anywhere: the root package holds only the version and
  lazy names (no import at load time);
- ``ragehr/__init__.py`` is the public facade: it names the API (``ragehr.api``) and the
  types it returns, and loads them only when used (module ``__getattr__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ragehr"

LAYERS: list[tuple[str, ...]] = [
    ("errors", "types", "patterns", "fsutil", "data"),  # data and helpers that import nothing of ragehr's above errors
    ("config", "extras"),
    ("tokens",),  # below ehr: the parsers estimate a record's length
    ("ehr", "embeddings"),
    ("retrieval", "chunking"),
    ("index", "packing", "llm"),
    ("prompts", "doctor"),  # prompts fit the packed evidence; doctor probes backends and embedders
    ("answers",),  # answers computed from the record's events, worded with the packed evidence's markers
    ("pipeline",),
    ("eval", "distributed"),  # distributed: pipeline and indexing as Ray tasks
    ("api",),  # the public Python API
    ("adapters", "serve"),  # the edges: llama-index adapter, the web page and JSON API
    ("cli",),  # on top: `ragehr serve` starts the server
]
RANK = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    parts = module.split(".")
    return "ragehr" if len(parts) == 1 else parts[1]


def _module_name(path: Path) -> tuple[str, str]:
    """(dotted module name, the package relative imports start from)."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
        return ".".join(parts), ".".join(parts)
    return ".".join(parts), ".".join(parts[:-1])


def imports_of(source: str, package: str) -> list[tuple[int, str, tuple[str, ...]]]:
    """Every ``ragehr`` import in ``source``: (line, module, names imported from it)."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, ()) for a in node.names if a.name.split(".")[0] == "ragehr"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] == "ragehr":
                out.append((node.lineno, module, tuple(a.name for a in node.names)))
    return out


def violations(module: str, package: str, source: str) -> list[str]:
    """Imports in ``module`` that break the layering (empty when it keeps it)."""
    unit = _unit(module)
    if unit == "ragehr":  # the facade (see the module docstring)
        return []
    if unit not in RANK:
        return [f"{module}: unit {unit!r} has no layer; add it to LAYERS in tests/test_layering.py"]
    bad = []
    for line, target, names in imports_of(source, package):
        t = _unit(target)
        if t == unit:
            continue
        if t == "ragehr":
            if set(names) <= {"__version__"} and names:
                continue
            bad.append(f"{module}:{line} imports {target} {names} (only __version__ comes from the root)")
            continue
        if t not in RANK:
            bad.append(f"{module}:{line} imports {target}, whose unit has no layer")
        elif RANK[t] >= RANK[unit]:
            where = "a sibling on its layer" if RANK[t] == RANK[unit] else "a higher layer"
            bad.append(f"{module}:{line} imports {target}: {where} ({unit} -> {t})")
    return bad


def test_every_import_keeps_the_layering():
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, package = _module_name(path)
        bad += violations(module, package, path.read_text(encoding="utf-8"))
    assert not bad, "\n".join(bad)


def test_every_unit_has_a_layer():
    units = {
        p.stem if p.is_file() else p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    }
    assert units == set(RANK)


@pytest.mark.parametrize(
    ("module", "package", "source"),
    [
        ("ragehr.retrieval.bm25", "ragehr.retrieval", "def f():\n    from ragehr.pipeline.ask import ask\n"),
        ("ragehr.index.store", "ragehr.index", "import ragehr.eval.runner\n"),
        ("ragehr.index.store", "ragehr.index", "from ragehr.packing import pack_all\n"),  # a sibling
        ("ragehr.ehr.fhir", "ragehr.ehr", "from ..chunking import chunk_record\n"),  # relative, upward
        (
            "ragehr.types.record",
            "ragehr.types",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ragehr.config import RagehrConfig\n",
        ),
        ("ragehr.llm.hf", "ragehr.llm", "from ragehr import open_index\n"),
    ],
)
def test_an_upward_import_is_caught(module, package, source):
    assert violations(module, package, source)


def test_downward_and_own_imports_pass():
    src = "from ragehr import __version__\nfrom ragehr.types import Chunk\nfrom . import base\nimport ragehr.llm.fake\n"
    assert violations("ragehr.llm.registry", "ragehr.llm", src) == []
