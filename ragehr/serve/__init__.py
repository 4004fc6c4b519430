"""``ragehr serve``: a small web page for asking a patient's record questions and reading the
answer beside its evidence and the patient's timeline, plus a JSON API.

- :mod:`ragehr.serve.core`: patients, caches, one question through the shared pipeline;
- :mod:`ragehr.serve.timeline`: the record's timeline as an SVG;
- :mod:`ragehr.serve.views`: the HTML;
- :mod:`ragehr.serve.app`: the FastAPI app (the only importer of FastAPI/Starlette/uvicorn
  besides :func:`serve` here).

Safe by default: it binds 127.0.0.1; on any other address it refuses to start without a token
(``--token`` or ``$RAGEHR_TOKEN``), and with one it requires it on every request. Without a
token it answers only requests addressed to a loopback name (against DNS rebinding).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any

from ragehr.errors import ConfigError

__all__ = ["is_loopback", "log_config", "resolve_token", "serve"]

TOKEN_ENV = "RAGEHR_TOKEN"
MIN_TOKEN_CHARS = 16


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, token: str | None) -> str | None:
    """The token the server requires (``token``, else ``$RAGEHR_TOKEN``), or ``None`` on a
    loopback address without one. A non-loopback address without a token is refused."""
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is not None:
        token = token.strip()
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"the token must be at least {MIN_TOKEN_CHARS} characters")
    if token is None and not is_loopback(host):
        raise ConfigError(
            f"--host {host} accepts connections from other machines: give --token (or set {TOKEN_ENV}) "
            "so that every request must carry it, or bind 127.0.0.1"
        )
    return token


def log_config(level: str = "INFO") -> dict[str, Any]:
    """uvicorn's logging, with its access log replaced by ragehr's own (method, path without
    the query, status, time: never patient ids, questions or tokens)."""
    fmt = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    handler = {"class": "logging.StreamHandler", "formatter": "plain", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": fmt},
        "handlers": {"stderr": handler},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "ragehr.serve": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }


def serve(
    options: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    debug: bool = False,
) -> None:
    """Run the web app until interrupted (``options``: a :class:`ragehr.serve.core.ServeOptions`)."""
    try:
        import uvicorn

        from ragehr.serve.app import create_app
    except ImportError as exc:
        raise ConfigError(
            f"ragehr serve needs the serve extra: pip install 'ragehr[serve]' ({exc.name} missing)"
        ) from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be between 0 and 65535, not {port}")
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise ConfigError("give both --ssl-certfile and --ssl-keyfile, or neither")
    token = resolve_token(host, token)
    from ragehr.index.store import check_index_dir

    check_index_dir(options.index_dir)  # a file given as --index-dir: refuse, never serve 0 patients
    app = create_app(options, token=token, loopback_only=token is None)
    n = len(app.app.state.service.manifests())
    scheme = "https" if ssl_certfile else "http"
    shown = f"[{host}]" if ":" in host else host
    print(
        f"ragehr: serving {n} indexed patient(s) from {options.index_dir} at {scheme}://{shown}:{port}/"
        + (" (token required)" if token else ""),
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=log_config("DEBUG" if debug else "INFO"),
        access_log=False,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        server_header=False,
        proxy_headers=False,
        h11_max_incomplete_event_size=64 * 1024,
    )
