"""Vocabularies for query expansion: see docs/vocabulary.md."""
