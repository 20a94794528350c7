"""Argument types shared by the sub-commands."""

from __future__ import annotations

import argparse
import os

from priming.errors import ConfigError


def positive_int(text: str) -> int:
    """argparse ``type=``: an integer >= 1, else a usage error naming the value."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def boolean(text: str) -> bool:
    """argparse ``type=``: true/false (also yes/no, on/off, 1/0), else a usage error."""
    v = text.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_executor_options(p: argparse.ArgumentParser, what: str) -> None:
    """``--executor`` (a name from :data:`priming.exec.EXECUTORS`) and ``--ray-address``."""
    from priming.exec import EXECUTORS

    p.add_argument(
        "--executor",
        choices=EXECUTORS.names(),
        default=None,
        help=f"where {what} runs: local (default: in-process pools), inline, or ray",
    )
    p.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="with --executor ray: the cluster to join (default: RAY_ADDRESS, a Ray already "
        "running in this process, else a local one started for this command)",
    )


def executor_spec(args: argparse.Namespace) -> str | None:
    """What to pass as ``executor=``: the ``--executor`` name. ``--ray-address`` is handed
    to the Ray backend through ``RAY_ADDRESS`` (this process only), which it joins."""
    address = getattr(args, "ray_address", None)
    executor = getattr(args, "executor", None)
    if address:
        if executor != "ray":
            raise ConfigError("--ray-address needs --executor ray")
        os.environ["RAY_ADDRESS"] = address
    return executor
