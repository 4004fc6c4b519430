"""Retrievers over a patient's chunks: BM25, dense, and their fusion."""
