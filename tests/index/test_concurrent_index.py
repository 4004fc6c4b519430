"""Two `ragehr index` processes at once, sharing one embedding cache."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from ragehr.embeddings.cache import EmbeddingCache, text_hash
from ragehr.embeddings.hashing import HashingEmbedder
from ragehr.index.store import open_index
from ragehr.retrieval.dense import DenseIndex

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "fixtures" / "medalign" / "EHR_sample.xml"


def test_two_index_processes_share_one_embedding_cache(tmp_path: Path, caplog) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("index:\n  embedder: hashing\n  chunking:\n    max_tokens: 64\n")
    cache = tmp_path / "shared-cache"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ragehr.cli",
                "index",
                str(SAMPLE),
                "--index-dir",
                str(tmp_path / f"idx{i}"),
                "--cache-dir",
                str(cache),
                "--config",
                str(cfg),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    emb = HashingEmbedder()
    caplog.set_level(logging.WARNING, logger="ragehr.embeddings.cache")
    shared = EmbeddingCache(cache)
    for i in range(2):
        stored = open_index(tmp_path / f"idx{i}", stored_id := _only_patient(tmp_path / f"idx{i}"))
        texts = [c.text for c in stored.chunks]
        expected = emb.embed(texts)
        dense = DenseIndex.load(stored.folder / "dense")
        np.testing.assert_allclose(dense.vectors, expected, atol=1e-6)
        found = shared.lookup(emb.model_id, [text_hash(t) for t in texts])
        assert len(found) == len(set(texts)), stored_id
        for t, row in zip(texts, expected):
            np.testing.assert_allclose(found[text_hash(t)], row, atol=1e-6)
    assert "ignored" not in caplog.text  # every shard either process wrote loads whole


def _only_patient(index_dir: Path) -> str:
    from ragehr.index.store import list_manifests

    [m] = list_manifests(index_dir)
    return m.patient_id
