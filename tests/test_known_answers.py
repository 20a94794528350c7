"""Known answers for METHODS §2 details that the existing tests did not pin down."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from priming.eval.stats import _wilcoxon_pratt, holm
from priming.imprint import least_squares_weights, nc1
from priming.imprint.normalize import quantile_targets


def test_nc1_reference_weights_classes_equally_with_unequal_class_sizes():
    # classes of 2 and 4 rows in 1-D, so every term can be written out by hand
    X = np.array([[0.0], [2.0], [4.0], [6.0], [8.0], [10.0]])
    y = np.array([0, 0, 1, 1, 1, 1])
    mu = np.array([1.0, 7.0])  # class means
    mu_g = 5.0  # global mean over rows
    sw_text = (1 + 1 + 9 + 1 + 1 + 9) / 6
    sb = ((mu[0] - mu_g) ** 2 + (mu[1] - mu_g) ** 2) / 2  # (16 + 4) / 2 = 10
    assert nc1(X, y) == pytest.approx(sw_text / sb / 2)
    # reference: per-class covariance of (x - mu_c + mu_G), classes weighted equally
    cov0 = ((-1 + 5) ** 2 + (1 + 5) ** 2) / 2  # (16 + 36) / 2 = 26
    cov1 = ((-3 + 5) ** 2 + (-1 + 5) ** 2 + (1 + 5) ** 2 + (3 + 5) ** 2) / 4  # 120 / 4 = 30
    assert nc1(X, y, variant="reference") == pytest.approx((cov0 + cov1) / 2 / sb / 2)


def test_least_squares_orientation_and_scaling_by_hand():
    # X^T X / N = I (orthonormal design, scaled), so W = M / (C (1 + lambda))
    X = np.sqrt(2.0) * np.array([[1.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 1])
    lam = 0.5
    W = least_squares_weights(X, y, 2, lam)  # rows = classes
    np.testing.assert_allclose(W, X / (2 * (1 + lam)))
    # non-isotropic second moment: diag(a, b) -> W_c = M_c / diag / C
    X = np.array([[2.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 1, 0, 1])
    W = least_squares_weights(X, y, 2, lam)
    second = np.array([4 * 2 / 4, 1 * 2 / 4])  # diagonal of X^T X / N
    np.testing.assert_allclose(W, np.array([[2.0, 0.0], [0.0, 1.0]]) / (second + lam) / 2)


def test_quantile_targets_are_at_j_plus_half_over_d():
    # reference 0..100 (uniform grid): the (j + 1/2)/D quantiles are exactly 100 (j + 1/2)/D
    ref = np.arange(101.0)
    for D in (1, 3, 7, 10):
        np.testing.assert_allclose(quantile_targets(ref, D), 100 * (np.arange(D) + 0.5) / D)


def test_wilcoxon_uses_pratt_zero_handling():
    # three zero differences, mixed signs (integers, so the differences are exact)
    a = np.arange(10.0)
    b = a + np.array([0, 0, 0, 1, 2, -3, 4, 5, 6, 7.0])
    pratt = sps.wilcoxon(a, b, zero_method="pratt").pvalue
    wilcox = sps.wilcoxon(a, b, zero_method="wilcox").pvalue
    assert pratt != pytest.approx(wilcox)  # the zero handling matters for these data
    assert _wilcoxon_pratt(a, b) == pytest.approx(pratt)
    assert _wilcoxon_pratt(a, a.copy()) == 1.0


def test_holm_step_down_is_monotone_and_capped():
    # sorted .001 .01 .02 .03 -> x4 x3 x2 x1 = .004 .03 .04 .03 -> monotone .004 .03 .04 .04
    np.testing.assert_allclose(holm([0.03, 0.001, 0.02, 0.01]), [0.04, 0.004, 0.04, 0.03])
    np.testing.assert_allclose(holm([0.6, 0.7]), [1.0, 1.0])
