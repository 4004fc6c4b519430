"""The benchmark scripts under test are loaded as modules by file path (``benchmarks/`` is not a
package): a test module names its script in ``BENCH`` and gets it from the ``bench`` fixture."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def bench(request: pytest.FixtureRequest):
    name = request.module.BENCH
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location(f"{name}_under_test", REPO / "benchmarks" / f"{name}.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
