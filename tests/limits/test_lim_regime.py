"""Regime diagnostics and the training-data check: each warning fires exactly when its
condition holds, and the numbers are the quantities they name."""

from __future__ import annotations

import math

import numpy as np
import pytest

from prune_jax.limits import predict_sparsity_limit, regime_diagnostics, training_check


def _sparse_problem(near_zero: int, dim: int = 1000, seed: int = 0):
    """``near_zero`` weights at 1e-6, the rest O(1); a log-uniform positive spectrum."""
    rng = np.random.default_rng(seed)
    w = np.concatenate([np.full(near_zero, 1e-6), rng.uniform(0.5, 1.5, dim - near_zero)])
    spectrum = 10.0 ** rng.uniform(-6, 2, dim)
    return {"Dense_0": {"kernel": rng.permutation(w).reshape(dim // 10, 10)}}, spectrum


def test_near_zero_fraction_and_weak_l1_warning():
    params, spec = _sparse_problem(near_zero=900)
    lim = predict_sparsity_limit(params, spec, eps=1e-3)
    reg = regime_diagnostics(params, spec, 1e-3, lim)
    assert reg.near_zero_fraction == pytest.approx(0.9)
    assert reg.critical_curvature == pytest.approx(2e-3 / lim.distance ** 2)
    weak = [w for w in reg.warnings if w.startswith("weak l1")]
    assert bool(weak) == (0.9 < lim.sparsity - 0.02)
    params, spec = _sparse_problem(near_zero=100)
    lim = predict_sparsity_limit(params, spec, eps=1.0)
    reg = regime_diagnostics(params, spec, 1.0, lim)
    assert lim.sparsity > 0.3 and any(w.startswith("weak l1") for w in reg.warnings)


def test_sensitivity_is_the_central_difference_in_log_eps():
    params, spec = _sparse_problem(near_zero=500)
    eps, spread = 1e-2, 5e-3
    lim = predict_sparsity_limit(params, spec, eps)
    reg = regime_diagnostics(params, spec, eps, lim, eps_spread=spread)
    up, down = (predict_sparsity_limit(params, spec, eps * math.exp(d)).sparsity
                for d in (0.1, -0.1))
    assert reg.sensitivity == pytest.approx((up - down) / 0.2)
    assert reg.eps_shift == pytest.approx(abs(reg.sensitivity) * math.log1p(spread / eps))


def test_band_mass_of_exact_eigenvalues():
    """For exact eigenvalues the critical mass is the fraction within a factor 9 of the
    critical curvature."""
    params, spec = _sparse_problem(near_zero=900)
    lim = predict_sparsity_limit(params, spec, eps=1e-3)
    reg = regime_diagnostics(params, spec, 1e-3, lim)
    c = reg.critical_curvature
    assert reg.critical_mass == pytest.approx(np.mean((spec >= c / 9) & (spec <= 9 * c)))


@pytest.mark.parametrize("loss_limit, accuracy_limit, test_loss, expected", [
    (0.95, 0.95, 0.11, ()),
    (0.90, 0.95, 0.11, ("quadratic model off",)),
    (0.95, 0.90, 0.11, ("loose eps",)),
    (0.95, 0.95, 0.70, ("interpolating model",)),
    (0.85, 0.80, 0.70, ("quadratic model off", "loose eps", "interpolating model")),
    (0.80, 0.85, 0.11, ("quadratic model off",)),  # the loss left first: not a loose eps
])
def test_training_check_warns_exactly_when_its_condition_holds(loss_limit, accuracy_limit,
                                                               test_loss, expected):
    check = training_check(0.96, loss_limit=loss_limit, accuracy_limit=accuracy_limit,
                           train_loss=0.1, test_loss=test_loss, eps=0.01)
    assert check.generalisation_gap == pytest.approx((test_loss - 0.1) / 0.01)
    assert (check.loss_limit, check.accuracy_limit) == (loss_limit, accuracy_limit)
    assert len(check.warnings) == len(expected)
    assert all(w.startswith(e) for w, e in zip(check.warnings, expected, strict=True))


def test_training_check_rejects_a_non_positive_eps():
    with pytest.raises(ValueError, match="eps"):
        training_check(0.9, loss_limit=0.9, accuracy_limit=0.9, train_loss=0.1,
                       test_loss=0.2, eps=0.0)
