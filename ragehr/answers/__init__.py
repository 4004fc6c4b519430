"""Answers computed from the record's structured events, for the questions whose answer is a
value, a date, a count, an extreme, a trend or a list (see :mod:`ragehr.answers.compute`).

Layer: above ``index``/``packing``/``retrieval``, below ``pipeline`` (which routes between
computed and generated answers: :mod:`ragehr.pipeline.ask`).

- :func:`compute`: question plan + record -> :class:`Computed` (events, figures) or
  :class:`Declined` (why not);
- :func:`chunks_for`: the chunks that hold the events an answer cites (packed first);
- :func:`word`: :class:`Computed` + packed evidence -> :class:`Worded` (cited sentences);
- :func:`series_svg` (:mod:`ragehr.answers.chart`): a series answer's chart as an SVG string.
"""

from ragehr.answers.compute import SHAPES, Computed, Declined, Part, compute
from ragehr.answers.evidence import chunks_for
from ragehr.answers.wording import DECLINE_PREFIX, Worded, decline_text, word

__all__ = [
    "DECLINE_PREFIX",
    "SHAPES",
    "Computed",
    "Declined",
    "Part",
    "Worded",
    "chunks_for",
    "compute",
    "decline_text",
    "word",
]
