"""No import circle inside ``ragehr``.

The graph is built from each module's top-level imports (read with :mod:`ast`, nothing is
imported): ``import a.b``, ``from a import b`` (``a.b`` when that is a module, else ``a``),
relative imports resolved, ``if TYPE_CHECKING:`` blocks left out. Importing a submodule also
runs its packages' ``__init__``, so ``a.b`` depends on ``a`` too. A cycle is printed as the
chain of modules that closes it.

Imports inside functions are deferred by design (``import ragehr`` stays light), but a circle
through them is still a circle (the ``bulk`` <-> ``cohort`` <-> ``omop`` one of issue 23 was one),
so the graph with every import, at any depth, must be free of cycles too. The cohort interface
(:mod:`ragehr.ehr.cohort`) imports none of its readers at any level; they are found by name
(``READER_MODULES``).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PKG = REPO / "ragehr"


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _top_level(body: list[ast.stmt]):
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and not _is_type_checking(node.test):
            yield from _top_level(node.body)
            yield from _top_level(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *[h.body for h in node.handlers]):
                yield from _top_level(block)


def _all_imports(tree: ast.AST):
    yield from (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)))


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_pkg: bool, known: set[str]) -> set[str]:
    out: set[str] = set()
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = node.module or ""
        if node.level:
            pkg = module.split(".") if is_pkg else module.split(".")[:-1]
            pkg = pkg[: len(pkg) - (node.level - 1)]
            base = ".".join(pkg + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # a.b.c runs a, a.b and a.b.c
            if ".".join(parts[:i]) in known:
                out.add(".".join(parts[:i]))
    return out


def import_graph(top_level_only: bool = True) -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        nodes = _top_level(tree.body) if top_level_only else _all_imports(tree)
        deps: set[str] = set()
        for node in nodes:
            deps |= _targets(node, name, path.name == "__init__.py", known)
        deps.discard(name)
        # A package's own __init__ runs before its submodule: not an edge back from it.
        graph[name] = {d for d in deps if not name.startswith(d + ".")}
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module, as one closing chain each."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def strong(v: str) -> None:  # Tarjan, iterative enough for a package of this size
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycle_in_ragehr():
    cycles = find_cycles(import_graph())
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_no_import_cycle_even_through_deferred_imports():
    cycles = find_cycles(import_graph(top_level_only=False))
    assert cycles == [], "import cycles (imports inside functions counted): " + "; ".join(
        " <-> ".join(c) for c in cycles
    )


def test_the_checker_finds_a_planted_cycle():
    g = import_graph()
    assert find_cycles(g) == []
    assert "ragehr.errors" in g["ragehr.index.store"]
    g["ragehr.errors"] = g["ragehr.errors"] | {"ragehr.index.store"}  # store imports errors: a circle
    cycles = find_cycles(g)
    assert any({"ragehr.index.store", "ragehr.errors"} <= set(c) for c in cycles)


def test_relative_and_from_imports_are_resolved(tmp_path):
    tree = ast.parse("from . import bulk\nfrom ..errors import InputError\nimport ragehr.ehr.omop as o\n")
    known = {"ragehr", "ragehr.ehr", "ragehr.ehr.bulk", "ragehr.ehr.omop", "ragehr.errors"}
    deps: set[str] = set()
    for node in _top_level(tree.body):
        deps |= _targets(node, "ragehr.ehr.cohort", False, known)
    assert deps == known


def test_the_cohort_interface_imports_no_reader_at_any_level():
    """The circle ``bulk`` <-> ``cohort`` <-> ``omop`` of issue 23: readers import the
    interface, never the reverse (not even inside a function)."""
    mods = _modules()
    tree = ast.parse(mods["ragehr.ehr.cohort"].read_text(encoding="utf-8"))
    deps: set[str] = set()
    for node in _all_imports(tree):
        deps |= _targets(node, "ragehr.ehr.cohort", False, set(mods))
    from ragehr.ehr.cohort import READER_MODULES

    assert not deps & set(READER_MODULES)
    graph = import_graph()
    for reader in READER_MODULES:
        assert "ragehr.ehr.cohort" in graph[reader]
    ehr_init = ast.parse(mods["ragehr.ehr"].read_text(encoding="utf-8"))
    init_deps: set[str] = set()
    for node in _all_imports(ehr_init):
        init_deps |= _targets(node, "ragehr.ehr", True, set(mods))
    assert not init_deps & set(READER_MODULES), "readers must not be registered by ragehr/ehr/__init__.py"


def test_readers_are_found_by_name():
    from ragehr.ehr.cohort import readers

    assert [r.format for r in readers()] == ["omop", "fhir-bulk"]
