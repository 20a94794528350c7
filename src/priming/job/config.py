"""The settings of one ``priming prime`` run: :class:`PrimeConfig` and :func:`load_config`.

Every field is declared once, with its default and its help text in the field's
metadata; the ``prime`` command builds its options from these fields
(:func:`cli_options`), TOML run files use the same names, and :meth:`PrimeConfig.problems`
validates them in one place, reporting every problem at once.

This module imports only the standard library and :mod:`priming.pool`'s choice tuples (a
module without imports): the CLI reads it to build ``--help``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from priming.errors import ConfigError
from priming.exec import EXECUTORS
from priming.pool import AMBIGUOUS_POLICIES, POOL_SCORES, RECALL_METHODS, SEARCH_MODES

__all__ = ["PrimeConfig", "load_config", "cli_options", "OptionSpec", "PATH_FIELDS"]

# The valid choices of the head's ``empty_class`` (validated here, listed in --help): the
# same as priming.heads.primed.EMPTY_CLASS_CHOICES (a test checks), kept here because
# importing priming.heads would make ``priming --help`` load scikit-learn.
EMPTY_CLASS = ("text", "zero")
#: the executors the caption search may use (priming.exec registers them; cheap to import)
EXECUTOR_NAMES = tuple(EXECUTORS.names())

# Settings that name input files or folders of the run (resolved against a TOML file's folder).
INPUT_FIELDS = ("classes", "corpus", "shots", "eval", "unlabelled", "descriptions")
PATH_FIELDS = (*INPUT_FIELDS, "out", "cache_dir")


def _opt(
    default: Any,
    help: str,
    cli: str = "value",
    *,
    type: Any = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A config field with its help text; ``cli`` says how the option is spelled on the
    command line — ``value`` (``--x V``), ``switch`` (``--x`` sets True), ``bool``
    (``--x true|false``), ``negate`` (``--no-x`` sets False), ``append`` (repeatable),
    ``none`` (config only); ``type`` converts a command-line value; ``choices`` are the
    valid values (checked by :meth:`PrimeConfig.problems`, listed in the help)."""
    meta = {"help": help, "cli": cli, "type": type, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class PrimeConfig:
    """Settings of one ``priming prime`` run (field names = TOML keys = CLI options)."""

    model: str | None = _opt(None, "encoder, e.g. open_clip:ViT-B-16/laion2b_s34b_b88k")
    classes: str | None = _opt(None, "class-name file (one per line, '|' between synonyms)")
    corpus: str | None = _opt(None, "corpus folder (priming corpus build), with embeddings")
    out: str | None = _opt(None, "run folder to write")
    shots: str | None = _opt(None, "labelled few-shot data (folder, manifest or embeddings)")
    eval: str | None = _opt(None, "labelled evaluation data (also guards the pool against leakage)")
    unlabelled: str | None = _opt(None, "unlabelled target data for --transductive")
    transductive: bool = _opt(
        False, "narrow the pool to the k nearest items of each unlabelled/eval sample", "switch"
    )
    guided: bool = _opt(
        False, "narrow the pool to each shot's k nearest items of its class", "switch"
    )
    transductive_k: int = _opt(10, "neighbours per sample", type=int)
    head: str = _opt("neural-priming", "imprinting preset for the pool/shot part")
    n_proxies: int | None = _opt(None, "proxies per class for multi-proxy presets", type=int)
    compare: list[str] = _opt(
        [],
        "also fit and evaluate this head (repeatable): an imprinting preset (a primed head), "
        "or a registered head kind such as tip-adapter, gda, proker, transclip, zlap, tda",
        "append",
    )
    alpha: Any = _opt("schedule", "text-head weight: a number in [0,1], 'schedule' or 'auto'")
    alpha_holdout: float = _opt(
        0.2, "share of pool rows held out to choose alpha='auto' without shots", type=float
    )
    empty_class: str = _opt("text", "score of a class with no items", choices=EMPTY_CLASS)
    templates: str | None = _opt(
        None, "template set name or file (default: imagenet7; identity for text models)"
    )
    descriptions: str | None = _opt(None, "CuPL-style JSON class -> sentences")
    per_class: int | None = _opt(1000, "cap per class", type=int)
    recall: str = _opt("search", "how to find pool items", choices=RECALL_METHODS)
    search_mode: str = _opt("phrase", "caption search mode", choices=SEARCH_MODES)
    search_limit: int | None = _opt(None, "stop searching after N hits per class", type=int)
    ambiguous: str = _opt("drop", "rows matching several classes", choices=AMBIGUOUS_POLICIES)
    nsfw: bool = _opt(True, "drop NSFW-flagged rows", "bool")
    dedup_threshold: float | None = _opt(0.995, "near-duplicate cosine", type=float)
    leakage_threshold: float = _opt(0.95, "test-leakage cosine", type=float)
    agreement: bool = _opt(True, "zero-shot agreement filter", "bool")
    min_probability: float | None = _opt(None, "minimum zero-shot probability", type=float)
    score: str = _opt("zero-shot", "ranking for the cap", choices=POOL_SCORES)
    balance: bool = _opt(False, "equal counts per class", "switch")
    cache_dir: str | None = _opt(None, "embedding cache (default ~/.cache/priming/embeddings)")
    batch_size: int = _opt(64, "encoding batch size", type=int)
    device: str | None = _opt(None, "cpu, cuda[:N], mps")
    seed: int = _opt(0, "random seed", type=int)
    executor: str = _opt(
        "local",
        "where the caption search over corpus shards runs (ray: on a Ray cluster)",
        choices=EXECUTOR_NAMES,
    )
    ray_address: str | None = _opt(None, "with executor ray: the cluster to join (default: local)")
    overwrite: bool = _opt(False, "replace --out when it holds an earlier run", "switch")
    progress: bool = _opt(True, "draw no progress bars", "negate")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str = "config") -> PrimeConfig:
        """Build and validate a config; every problem is reported in one ConfigError."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: expected a table of settings, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        errors = []
        clean = {}
        for k, v in data.items():
            key = str(k).replace("-", "_")
            if key not in names:
                errors.append(f"unknown setting {k!r} (valid: {', '.join(sorted(names))})")
            else:
                clean[key] = v
        if isinstance(clean.get("compare"), str):
            clean["compare"] = [clean["compare"]]
        cfg = cls(**clean)
        errors += cfg.problems()
        if errors:
            raise ConfigError(f"{source}: {len(errors)} problem(s):\n  - " + "\n  - ".join(errors))
        return cfg

    def problems(self) -> list[str]:
        """Every problem of this config (empty when valid); normalises ``alpha``."""
        from priming.heads.alpha import check_alpha

        e: list[str] = []
        for req in ("model", "classes", "corpus", "out"):
            if not getattr(self, req):
                e.append(f"{req} is required")
        e += self._path_problems()
        e += self._type_problems()
        if self.ray_address and self.executor != "ray":
            e.append("ray_address needs executor 'ray'")
        try:
            self.alpha = check_alpha(self.alpha)
        except ConfigError as exc:
            e.append(str(exc))
        e += self._range_problems()
        if self.transductive and not (self.eval or self.unlabelled):
            e.append("transductive needs unlabelled data: give eval or unlabelled")
        if self.guided and not self.shots:
            e.append("guided (few-shot-guided narrowing) needs shots")
        return e

    def _path_problems(self) -> list[str]:
        e: list[str] = []
        for p in INPUT_FIELDS:
            v = getattr(self, p)
            if v is not None and not isinstance(v, str):
                e.append(f"{p} must be a path string, got {v!r}")
            elif v and not Path(v).exists():
                e.append(f"{p}: {v!r} does not exist")
        if self.out is not None and not isinstance(self.out, str):
            e.append(f"out must be a folder path string, got {self.out!r}")
        elif self.out:
            o = Path(self.out)
            if o.exists() and not o.is_dir():
                e.append(f"out: {self.out!r} exists and is not a folder")
            else:
                blocker = next((a for a in o.parents if a.exists()), None)
                if blocker is not None and not blocker.is_dir():
                    e.append(f"out: {self.out!r} cannot be created: {str(blocker)!r} is a file")
        for s in ("model", "cache_dir", "device"):
            v = getattr(self, s)
            if v is not None and not isinstance(v, str):
                e.append(f"{s} must be a string, got {v!r}")
        if self.templates and not isinstance(self.templates, str):
            e.append(f"templates must be a set name or a file path, got {self.templates!r}")
        elif self.templates:
            from priming.heads import TEMPLATE_SETS

            t = self.templates
            if t not in TEMPLATE_SETS and "{}" not in t and not Path(t).is_file():
                e.append(
                    f"templates {t!r} is neither a built-in set ({', '.join(TEMPLATE_SETS.names())}) "
                    "nor an existing file"
                )
        return e

    def _type_problems(self) -> list[str]:
        from priming.heads import PRESETS

        e: list[str] = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.metadata.get("cli") in ("switch", "bool", "negate") and not isinstance(v, bool):
                e.append(f"{f.name} must be true or false, got {v!r}")
        if not isinstance(self.compare, list):
            e.append(f"compare must be a list of head presets, got {self.compare!r}")
        if not isinstance(self.head, str) or self.head not in PRESETS:
            e.append(f"head preset {self.head!r} is unknown; valid: {', '.join(sorted(PRESETS))}")
        kinds = compare_kinds()
        for h in self.compare if isinstance(self.compare, list) else []:
            if not isinstance(h, str) or (h not in PRESETS and h not in kinds):
                e.append(
                    f"compare: head preset {h!r} is unknown, and no registered head kind either; "
                    f"presets: {', '.join(sorted(PRESETS))}; head kinds: {', '.join(kinds)}"
                )
        for f in dataclasses.fields(self):
            ch = f.metadata.get("choices")
            if ch and getattr(self, f.name) not in ch:
                e.append(f"{f.name} must be one of {', '.join(ch)}; got {getattr(self, f.name)!r}")
        return e

    def _range_problems(self) -> list[str]:
        import math

        e: list[str] = []
        for name, none_ok in (
            ("transductive_k", False),
            ("batch_size", False),
            ("per_class", True),
            ("search_limit", True),
            ("n_proxies", True),
        ):
            v = getattr(self, name)
            if v is None and none_ok:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                e.append(
                    f"{name} must be a positive integer{' or omitted' if none_ok else ''}, got {v!r}"
                )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            e.append(f"seed must be a non-negative integer, got {self.seed!r}")
        for name, lo, hi, none_ok in (
            ("dedup_threshold", -1, 1, True),
            ("leakage_threshold", -1, 1, False),
            ("min_probability", 0, 1, True),
            ("alpha_holdout", 0.01, 0.9, False),
        ):
            v = getattr(self, name)
            if v is None and none_ok:
                continue
            if (
                not isinstance(v, (int, float))
                or isinstance(v, bool)
                or not math.isfinite(v)
                or not lo <= v <= hi
            ):
                e.append(f"{name} must be a number in [{lo}, {hi}], got {v!r}")
        return e

    def input_paths(self) -> dict[str, Path]:
        """The files and folders this run reads (setting name → path), for the guard that
        ``--overwrite`` never deletes an input."""
        out = {p: Path(getattr(self, p)) for p in INPUT_FIELDS if getattr(self, p)}
        if self.templates and Path(self.templates).exists():
            out["templates"] = Path(self.templates)
        if self.cache_dir:
            out["cache_dir"] = Path(self.cache_dir)
        return out

    def to_json(self) -> dict[str, Any]:
        """The settings as a JSON-able dict (the ``config`` entry of ``metrics.json``)."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class OptionSpec:
    """How one config field appears on the command line (see :func:`cli_options`)."""

    name: str
    flag: str
    kind: str
    help: str
    type: Any = None
    metavar: str | None = None


def cli_options() -> Iterator[OptionSpec]:
    """The ``prime`` command's options, one per :class:`PrimeConfig` field."""
    for f in dataclasses.fields(PrimeConfig):
        kind = f.metadata.get("cli", "value")
        if kind == "none":
            continue
        dashed = f.name.replace("_", "-")
        flag = f"--no-{dashed}" if kind == "negate" else f"--{dashed}"
        yield OptionSpec(f.name, flag, kind, _help(f), f.metadata.get("type"), _metavar(f))


def _metavar(f: dataclasses.Field) -> str | None:
    if f.metadata.get("choices"):
        return "|".join(f.metadata["choices"])
    if f.name in PATH_FIELDS:
        return "PATH"
    return {int: "N", float: "X"}.get(f.metadata.get("type"))


def _help(f: dataclasses.Field) -> str:
    """The field's help, with its choices and its default when it has one."""
    text = f.metadata.get("help", "")
    kind = f.metadata.get("cli", "value")
    if f.metadata.get("choices"):
        text += f" ({'|'.join(f.metadata['choices'])})"
    if kind in ("value", "bool") and f.default is not None and f.default is not dataclasses.MISSING:
        text += f"; default: {str(f.default).lower() if isinstance(f.default, bool) else f.default}"
    return text


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        import tomllib as toml
    except ImportError:  # Python 3.10
        from priming._optional import require

        toml = require("tomli", extra="cli")
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        return toml.loads(p.read_text(encoding="utf-8"))
    except (toml.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None


def _settings_table(data: dict[str, Any], source: str) -> dict[str, Any]:
    """The run's settings: the top-level keys, or those of a ``[prime]`` table — not both."""
    if "prime" not in data:
        return data
    table = data["prime"]
    if not isinstance(table, dict):
        raise ConfigError(f"{source}: 'prime' must be a table ([prime]), got {table!r}")
    others = [k for k in data if k != "prime"]
    if others:
        raise ConfigError(
            f"{source}: settings both at the top level ({', '.join(map(repr, others))}) and in "
            "a [prime] table; put them all in one place"
        )
    return dict(table)


def load_config(path: str | os.PathLike, overrides: Mapping[str, Any] | None = None) -> PrimeConfig:
    """Read a TOML run file (keys as in :class:`PrimeConfig`, at the top level or in one
    ``[prime]`` table), apply ``overrides`` (``None`` values ignored) and validate.
    Relative paths are resolved against the file's folder."""
    p = Path(path)
    source = f"config file {str(p)!r}"
    data = _settings_table(_read_toml(p), source)
    for k in PATH_FIELDS:
        v = data.get(k)
        if isinstance(v, str) and v and not Path(v).is_absolute():
            data[k] = str((p.parent / v).resolve())
    t = data.get("templates")
    if (
        isinstance(t, str)
        and ("/" in t or t.endswith((".txt", ".json")))
        and not Path(t).is_absolute()
    ):
        data["templates"] = str((p.parent / t).resolve())
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return PrimeConfig.from_mapping(data, source=source)


def compare_kinds() -> list[str]:
    """Registered head kinds ``--compare`` accepts besides the imprinting presets: every
    head of :data:`priming.heads.HEADS` except the primed head itself (a preset is one)."""
    from priming.heads import HEADS

    return sorted(k for k in HEADS.names() if k != "primed")
