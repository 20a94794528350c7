"""The ``priming`` command line: one thin sub-command per user task.

Each sub-command lives in its own module under ``priming.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking
the parsed ``argparse.Namespace`` and returning an exit code). Modules are listed in
``COMMAND_MODULES``; their heavy imports happen inside ``func``, so ``priming --help``
stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from priming import __version__
from priming.errors import PrimingError

# Sub-command modules, in the order their commands appear in --help.
COMMAND_MODULES: list[str] = [
    "priming.cli.prime",
    "priming.cli.predict",
    "priming.cli.demo",
    "priming.cli.embed",
    "priming.cli.corpus",
    "priming.cli.sweep",
    "priming.cli.report",
    "priming.cli.reproduce",
    "priming.cli.browse",
]

log = logging.getLogger("priming")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="priming",
        description="Adapt a frozen foundation model to a classification task "
        "without gradient training (Neural Priming + IMPRINT).",
    )
    parser.add_argument("--version", action="version", version=f"priming {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit code (0 success, 2 usage or input error)."""
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except PrimingError as exc:
        print(f"priming {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # disk full, permission denied, ...: one line, not a traceback
        print(f"priming {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"priming {args.command}: interrupted", file=sys.stderr)
        return 130
