"""Composing the layers: retrieval + packing + prompt + generation (``ask``), and the packed
context alone (``build_context``). The only layer that knows all the others."""
