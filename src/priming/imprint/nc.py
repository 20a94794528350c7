"""Neural-collapse measure NC1 = tr(Sigma_W Sigma_B^+) / C."""

from __future__ import annotations

import numpy as np

from priming.imprint.validation import as_float_matrix, check_choice

__all__ = ["nc1", "NC1_VARIANTS"]

NC1_VARIANTS = ("textbook", "reference")


def nc1(X: np.ndarray, y: np.ndarray, variant: str = "textbook") -> float:
    """NC1 of embeddings ``X`` with labels ``y`` (any hashable labels).

    ``Sigma_W`` is the within-class covariance averaged over all rows,
    ``Sigma_B`` the covariance of the class means around the global mean (average over
    classes), ``+`` the Moore-Penrose pseudo-inverse.

    ``variant='reference'`` reproduces the IMPRINT reference code, which centres each row
    by ``mu_c - mu_G`` instead of ``mu_c`` (so its ``Sigma_W`` carries an extra
    ``mu_G mu_G^T`` term) and averages the per-class covariances with equal class
    weights. Published IMPRINT NC1 values use that variant.
    """
    check_choice(variant, "variant", NC1_VARIANTS)
    X = as_float_matrix(X, "X", dtype=np.float64)
    classes, yi = np.unique(np.asarray(y), return_inverse=True)
    C = classes.size
    counts = np.bincount(yi, minlength=C)
    means = np.zeros((C, X.shape[1]))
    np.add.at(means, yi, X)
    means /= counts[:, None]
    mu_g = X.mean(axis=0)
    centre = means[yi] - (mu_g if variant == "reference" else 0.0)
    Z = X - centre
    if variant == "reference":
        w = 1.0 / (counts[yi] * C)
    else:
        w = np.full(X.shape[0], 1.0 / X.shape[0])
    sigma_w = (Z * w[:, None]).T @ Z
    B = means - mu_g
    sigma_b = B.T @ B / C
    return float(np.trace(sigma_w @ np.linalg.pinv(sigma_b, hermitian=True)) / C)
