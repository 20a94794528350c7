"""Presampling: Weibull outlier filtering and few-shot subsampling of each class's rows."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import numpy as np

from priming.errors import ConfigError
from priming.imprint.validation import check_int, check_random_state

__all__ = ["Presample", "parse_presample", "weibull_mask", "presample"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Presample:
    """A parsed presampling spec: Weibull quantiles and/or a few-shot row count."""

    weibull: tuple[float, float] | None = None
    n_samples: int | None = None

    def to_dict(self) -> dict:
        return {
            "weibull": list(self.weibull) if self.weibull else None,
            "n_samples": self.n_samples,
        }


_SPEC_HELP = (
    "expected None, 'weibull(q_lo,q_hi)', 'fewshot(n)', 'weibull(q_lo,q_hi)+fewshot(n)', "
    "or a dict {'weibull': (q_lo, q_hi) or None, 'n_samples': int or None}"
)


def _check_weibull(q: object) -> tuple[float, float] | None:
    if q is None:
        return None
    try:
        lo, hi = (float(v) for v in q)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ConfigError(f"presample weibull={q!r} is not valid; expected (q_lo, q_hi)") from None
    if not (0.0 <= lo < hi <= 1.0):
        raise ConfigError(
            f"presample weibull=({lo}, {hi}) is not valid; need 0 <= q_lo < q_hi <= 1"
        )
    return (lo, hi)


def parse_presample(spec: object) -> Presample | None:
    """Parse the ``presample`` parameter of a head (see :data:`_SPEC_HELP`)."""
    if spec is None:
        return None
    if isinstance(spec, Presample):
        return spec
    if isinstance(spec, dict):
        unknown = set(spec) - {"weibull", "n_samples"}
        if unknown:
            raise ConfigError(f"presample has unknown keys {sorted(unknown)}; {_SPEC_HELP}")
        return Presample(
            _check_weibull(spec.get("weibull")),
            check_int(spec.get("n_samples"), "presample n_samples", allow_none=True),
        )
    if isinstance(spec, str):
        weib, n = None, None
        for part in spec.replace(" ", "").split("+"):
            m = re.fullmatch(r"weibull\(([^,]+),([^)]+)\)", part)
            f = re.fullmatch(r"fewshot\((\d+)\)", part)
            if m and weib is None:
                try:
                    weib = _check_weibull((m.group(1), m.group(2)))
                except ConfigError:
                    raise
            elif f and n is None:
                n = check_int(int(f.group(1)), "presample fewshot n")
            else:
                raise ConfigError(f"presample={spec!r} is not valid; {_SPEC_HELP}")
        return Presample(weib, n)
    raise ConfigError(f"presample={spec!r} is not valid; {_SPEC_HELP}")


def weibull_mask(X: np.ndarray, q_lo: float, q_hi: float) -> np.ndarray:
    """Rows of one class whose distance to the class mean lies in the fitted Weibull's
    ``[q_lo, q_hi]`` quantile range (3-parameter ``scipy.stats.weibull_min`` fit).

    Classes with fewer than 3 rows, a failed fit, or nothing left are kept whole.
    """
    from scipy import stats

    X = np.asarray(X, dtype=np.float64)
    if X.shape[0] < 3:
        return np.ones(X.shape[0], dtype=bool)
    d = np.linalg.norm(X - X.mean(axis=0), axis=1)
    if np.ptp(d) == 0:
        return np.ones(X.shape[0], dtype=bool)
    try:
        with np.errstate(all="ignore"):
            params = stats.weibull_min.fit(d)
            lo, hi = stats.weibull_min.ppf([q_lo, q_hi], *params)
    except (ValueError, RuntimeError, FloatingPointError) as exc:  # pragma: no cover
        log.warning("Weibull fit failed (%s); keeping all rows of the class", exc)
        return np.ones(X.shape[0], dtype=bool)
    keep = (d >= lo) & (d <= hi)
    if not keep.any():
        log.warning("Weibull presampling removed every row of a class; keeping all rows")
        return np.ones(X.shape[0], dtype=bool)
    return keep


def presample(
    X: np.ndarray, y: np.ndarray, spec: object, *, random_state: object = None
) -> tuple[np.ndarray, np.ndarray]:
    """Apply a presampling spec to rows ``X`` with class indices ``y``; returns new arrays.

    Weibull filtering runs per class (a scipy fit each); the few-shot subsample then
    keeps ``n_samples`` random rows per class (all if fewer); every class draws from
    the same random sequence, so the choice depends only on the class's own rows.
    """
    p = parse_presample(spec)
    X = np.asarray(X)
    y = np.asarray(y)
    if p is None:
        return X.copy(), y.copy()
    keep = np.ones(X.shape[0], dtype=bool)
    if p.weibull is not None:
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            keep[rows] = weibull_mask(X[rows], *p.weibull)
    if p.n_samples is not None:
        from priming.imprint.generators import class_uniforms

        seed = int(check_random_state(random_state).integers(2**63 - 1))
        idx = np.flatnonzero(keep)
        key = class_uniforms(y[idx], seed)
        order = np.lexsort((key, y[idx]))
        ys = y[idx][order]
        first = np.searchsorted(ys, ys, side="left")
        rank = np.arange(ys.size) - first
        sel = np.zeros(X.shape[0], dtype=bool)
        sel[idx[order[rank < p.n_samples]]] = True
        keep = sel
    return X[keep], y[keep]
