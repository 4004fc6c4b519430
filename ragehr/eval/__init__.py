"""Evaluation: datasets, metrics, the ablation runner and reports."""
