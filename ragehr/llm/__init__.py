"""Generation backends: the models that turn a packed prompt into an answer.

:class:`LLMBackend` is the small abstract class every backend implements; :func:`make_backend`
builds one by name (``fake``, ``extractive``, ``transformers``, ``llamacpp`` (alias ``local``),
``openai``). The backends live in their own modules and are imported only when built, so
importing this package loads neither llama.cpp nor transformers:

- :mod:`ragehr.llm.fake`: deterministic, no model; for tests and ``--backend fake``.
- :mod:`ragehr.llm.hf`: a GGUF or Hugging Face model run by transformers + torch (SmolLM2 by
  default): the default local backend, pure wheels.
- :mod:`ragehr.llm.local`: the same GGUF run in-process by llama.cpp (the ``local-fast``
  extra, built portably).
- :mod:`ragehr.llm.weights`: finding and reading GGUF files (no model library).
- :mod:`ragehr.llm.openai_compat`: any OpenAI-compatible HTTP server, standard library only.
- :mod:`ragehr.llm.cache`: a file cache around any backend, keyed on a hash of the request.

Nothing here downloads weights or reaches the network unless an ``openai`` backend with a
non-local ``base_url`` is built and asked to generate.
"""

from ragehr.llm.base import BackendError, LLMBackend
from ragehr.llm.registry import make_backend

__all__ = ["BackendError", "LLMBackend", "make_backend"]
