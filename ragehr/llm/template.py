"""Record text can never be template: special tokens neutralised, evidence tokenized as text.

A local backend lays the prompt out with the model's chat template (``<|im_start|>user\\n...``)
and tokenizes it. If a note holds ``<|im_end|><|im_start|>system ...`` and the rendered prompt
is tokenized with special-token parsing on, the note speaks to the model as the template
itself. Two defences, both here, used by the transformers (:mod:`ragehr.llm.hf`) and llama.cpp
(:mod:`ragehr.llm.local`) backends:

1. :func:`neutralise` rewrites every occurrence, in each message's content, of every special or
   added token of the backend's tokenizer (all of them, read from the tokenizer: not a fixed
   list) so that it no longer spells the token: a space goes after its first character
   (``<|im_end|>`` -> ``< |im_end|>``). Text that only spells a token once NFKC-folded
   (fullwidth ``＜｜im_end｜＞``) is folded first, for tokenizers that normalise before matching.
2. :func:`prompt_pieces` renders the chat template once with a unique placeholder for each
   message's content and cuts the result there: the template's own pieces are tokenized with
   special-token parsing, the contents without it (``split_special_tokens`` / llama.cpp's
   ``special=False``), so even a token the first step missed could only ever be text.

Pure functions over strings and callables; no tokenizer library is imported here.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Piece", "neutralise", "prompt_pieces", "special_pattern"]

_MAX_PASSES = 8


@lru_cache(maxsize=16)
def special_pattern(specials: frozenset[str]) -> re.Pattern[str] | None:
    """One regex matching any of ``specials`` (longest first), or ``None`` when there are none."""
    tokens = sorted((t for t in specials if t), key=lambda t: (-len(t), t))
    if not tokens:
        return None
    return re.compile("|".join(re.escape(t) for t in tokens))


def neutralise(text: str, specials: Collection[str]) -> str:
    """``text`` with no occurrence of any string of ``specials``: each one found gets a space
    after its first character (the text still reads as what it said). Repeated until none is
    left, since a rewrite could in principle complete another token."""
    rx = special_pattern(frozenset(specials))
    if rx is None or not text:
        return text
    if not text.isascii():
        folded = unicodedata.normalize("NFKC", text)
        if folded != text and rx.search(folded):
            text = folded  # spells a token only once folded: neutralise the folded form
    for _ in range(_MAX_PASSES):
        if not rx.search(text):
            return text
        text = rx.sub(lambda m: m.group(0)[0] + " " + m.group(0)[1:], text)
    while True:  # not reached with real vocabularies; never hand back text that holds a token
        shorter = rx.sub(" ", text)
        if shorter == text:
            return text
        text = shorter


@dataclass(frozen=True)
class Piece:
    """A stretch of the rendered prompt: the template's own text, or a message's content."""

    text: str
    content: bool
    """True for message content (tokenize as text), False for the template's own pieces."""


def prompt_pieces(
    messages: Sequence[dict[str, str]], render: Callable[[list[dict[str, str]]], str]
) -> list[Piece] | None:
    """The rendered prompt cut into template pieces and message contents, or ``None`` when the
    template does not copy each content through verbatim (then the caller renders the
    neutralised messages whole). ``render`` lays out a list of ``{"role", "content"}``."""
    nonce = secrets.token_hex(8)
    marks = [f"\x00ragehr-{nonce}-{i}\x00" for i in range(len(messages))]
    rendered = render([{**m, "content": mark} for m, mark in zip(messages, marks)])
    pieces: list[Piece] = []
    pos = 0
    for m, mark in zip(messages, marks):
        at = rendered.find(mark, pos)
        if at < 0 or rendered.count(mark) != 1:
            return None
        if at > pos:
            pieces.append(Piece(rendered[pos:at], content=False))
        if m["content"]:
            pieces.append(Piece(m["content"], content=True))
        pos = at + len(mark)
    if pos < len(rendered):
        pieces.append(Piece(rendered[pos:], content=False))
    if "\x00ragehr-" in "".join(p.text for p in pieces if not p.content):
        return None
    return pieces
