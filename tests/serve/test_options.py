"""ServeOptions: backend aliases are offered under their canonical names."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragehr.errors import ConfigError
from ragehr.serve.core import ServeOptions


def test_aliases_are_offered_under_canonical_names(tmp_path: Path):
    o = ServeOptions(index_dir=tmp_path, backends=("local", "hf", "fake", "llamacpp"), backend="hf")
    o.check()
    assert o.backends == ("llamacpp", "transformers", "fake")
    assert o.default_backend == "transformers"


def test_an_unknown_backend_is_one_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown backend"):
        ServeOptions(index_dir=tmp_path, backends=("fake", "gpt-9000")).check()
