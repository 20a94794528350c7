"""Serve the browser app with uvicorn (one process, no workers, no reload)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from priming._optional import require
from priming.browse.app import create_app

__all__ = ["LOCAL_HOSTS", "allowed_hosts", "make_server", "serve"]

log = logging.getLogger(__name__)
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")


def allowed_hosts(host: str) -> list[str] | None:
    """``Host`` headers answered when bound to ``host``: the loopback names when it is
    local (a page on another site cannot reach the app through DNS rebinding); any
    when bound to all interfaces, where the user chose to expose it."""
    if host in ("0.0.0.0", "::", ""):
        return None
    return sorted(set(LOCAL_HOSTS) | {host})


def make_server(
    path: str | Path,
    host: str = "127.0.0.1",
    port: int = 8765,
    image_roots: Sequence[str | Path] = (),
    log_level: str = "warning",
):
    """A ``uvicorn.Server`` over the app for ``path`` (opened now: a bad folder fails
    here, before anything binds); call its ``run()``."""
    uvicorn = require("uvicorn", "browse")
    app = create_app(path, image_roots=image_roots, allowed_hosts=allowed_hosts(host))
    config = uvicorn.Config(
        app, host=host, port=int(port), log_level=log_level, workers=1, access_log=False
    )
    return uvicorn.Server(config)


def serve(path: str | Path, host: str = "127.0.0.1", port: int = 8765, **kw) -> None:
    """Serve ``path`` until interrupted (Ctrl-C or SIGTERM end it cleanly)."""
    make_server(path, host=host, port=port, **kw).run()
