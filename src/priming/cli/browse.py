"""``priming browse PATH``: a local read-only web app over a run, pool or corpus folder."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "browse",
        help="browse a run, pool or corpus folder in a local web app",
        description="Serve a read-only web app over PATH: a run folder written by "
        "`priming prime` (classes, pool per filter step, alpha, accuracy, misclassified "
        "items), a pool folder, or a corpus folder (caption search). Bound to "
        "localhost unless --host says otherwise; stop it with Ctrl-C.",
    )
    p.add_argument("path", help="run folder, pool folder or corpus folder")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765)")
    p.add_argument(
        "--image-root",
        action="append",
        default=[],
        metavar="DIR",
        help="another folder local images may be shown from (repeatable)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import signal

    from priming.browse.server import make_server
    from priming.errors import ConfigError

    if not 0 < args.port < 65536:
        raise ConfigError(f"--port must lie in 1..65535, got {args.port}")
    server = make_server(args.path, host=args.host, port=args.port, image_roots=args.image_root)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"priming browse: serving {args.path} at http://{shown}:{args.port}/ (Ctrl-C stops)",
        flush=True,
    )
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal with the
    # handler found at start: make SIGTERM end like Ctrl-C, and both end the command cleanly
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started:  # the port was taken: uvicorn logged why
        raise ConfigError(f"could not listen on {args.host}:{args.port}")
    print("priming browse: stopped", flush=True)
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt
