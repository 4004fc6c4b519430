"""``ragehr serve`` (the page and JSON API) and ``ragehr doctor`` (what works on this machine)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ragehr.cli.common import (
    BackendOpt,
    ConfigOpt,
    IndexDirOpt,
    _state,
    app,
    handle_errors,
)


@app.command()
@handle_errors
def doctor(
    index_dir: IndexDirOpt = Path("indexes"),
    config: ConfigOpt = None,
    backends: Annotated[
        list[str] | None,
        typer.Option(
            "--backend",
            help="Probe only these backends (repeatable; default: the configured one, transformers and llamacpp).",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            min=5,
            help="Seconds each backend probe may take (the first transformers load converts the GGUF once).",
        ),
    ] = 300.0,
    no_embedder: Annotated[bool, typer.Option("--no-embedder", help="Skip loading the embedder.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """What works on this machine: versions, CPU, model files, the embedder, the index folder,
    a network endpoint if configured, and for each backend whether it loads and generates
    (in a child process) with its prefill and decode tokens/s. Exit 5 when the configured
    backend cannot generate."""
    from ragehr.doctor import run_doctor

    report = run_doctor(
        index_dir,
        config,
        backends=backends,
        timeout=timeout,
        embedder=not no_embedder,
        progress=None if as_json else (lambda line: typer.echo(f"... {line}", err=True)),
    )
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        _print_doctor(report)
    if not report["configured_backend_generates"]:
        typer.echo(f"ragehr: error: the configured backend ({report['configured_backend']}) cannot generate", err=True)
        raise typer.Exit(5)


def _print_doctor(rep: dict[str, Any]) -> None:
    def mb(n: int | None) -> str:
        return "-" if n is None else f"{n / 1e6:.1f} MB"

    v = rep["versions"]
    typer.echo("versions   " + ", ".join(f"{k} {val or 'not installed'}" for k, val in v.items()))
    c = rep["cpu"]
    amx = ",".join(c["amx"]) if c.get("amx") else "no"
    typer.echo(
        f"cpu        {c['machine']}, {c['cores_usable']} usable cores, avx2 {c['avx2']}, avx512 {c['avx512']}, amx {amx}"
    )
    for m in rep["models"]:
        where = m["path"] or m.get("error")
        typer.echo(f"model      {m['what']}: {where}" + (f" ({mb(m.get('bytes'))})" if m["path"] else ""))
    e = rep.get("embedder")
    if e:
        typer.echo(
            f"embedder   {e['spec']}: "
            + (f"{e['model_id']}, dimension {e['dim']}" if e["ok"] else f"FAILS: {e['error']}")
        )
    i = rep["index"]
    typer.echo(
        f"index dir  {i['path']}: "
        + (f"{i['patients']} patient(s)" if i["exists"] else "does not exist yet (ragehr index ...)")
    )
    n = rep["network_endpoint"]
    typer.echo(
        "network    "
        + (
            f"endpoint configured ({n['from']}): {n['base_url']}"
            if n["configured"]
            else "no endpoint configured (nothing leaves this machine)"
        )
    )
    for b in rep["backends"]:
        star = "*" if b["backend"] == rep["configured_backend"] else " "
        if b.get("generates"):
            speed = ""
            if b.get("prefill_tokens_per_s") is not None:
                speed = f", prefill {b['prefill_tokens_per_s']} tok/s, decode {b.get('decode_tokens_per_s')} tok/s"
            typer.echo(
                f"backend {star} {b['backend']:<12} OK   {b.get('model')} (load {b.get('load_seconds')} s{speed})"
            )
        elif b.get("generates") is None:
            typer.echo(f"backend {star} {b['backend']:<12} skip {b.get('skipped')}")
        else:
            typer.echo(f"backend {star} {b['backend']:<12} FAIL {b.get('error')}")
    typer.echo("(* = the configured backend)")


@app.command()
@handle_errors
def serve(
    index_dir: IndexDirOpt = Path("indexes"),
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; anything but loopback needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (0: any free one).")] = 8000,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="RAGEHR_TOKEN", help="Require this token on every request (header or login)."),
    ] = None,
    backend: BackendOpt = None,
    backends: Annotated[
        str | None, typer.Option("--backends", help="Comma-separated backends the page offers (default: all).")
    ] = None,
    model_path: Annotated[Path | None, typer.Option("--model-path", help="A GGUF file (local backend).")] = None,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="OpenAI-compatible server (openai backend).")
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Model name on that server.")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not read or write the generation cache.")] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, max=64, help="Questions answered at the same time.")] = 4,
    ssl_certfile: Annotated[
        Path | None, typer.Option("--ssl-certfile", help="Serve HTTPS with this certificate.")
    ] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option("--ssl-keyfile", help="... and this key.")] = None,
    config: ConfigOpt = None,
) -> None:
    """A web page to ask a patient's record questions and read the answer beside its evidence
    and timeline, plus a JSON API (POST /api/ask, GET /api/patients, GET /api/context)."""
    from ragehr.config import RagehrConfig
    from ragehr.llm.registry import BACKENDS
    from ragehr.serve import serve as run_server
    from ragehr.serve.core import ServeOptions

    cfg = RagehrConfig.from_file(config)
    offered = tuple(b.strip().lower() for b in backends.split(",") if b.strip()) if backends else BACKENDS
    options = ServeOptions(
        index_dir=index_dir,
        config=cfg,
        backend=backend,
        backends=offered,
        model_path=str(model_path) if model_path else None,
        base_url=base_url,
        model=model,
        cache_generations=not no_cache,
        workers=workers,
    )
    run_server(
        options,
        host=host,
        port=port,
        token=token,
        debug=_state["debug"],
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
    )
