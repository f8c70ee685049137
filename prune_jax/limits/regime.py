"""Is a predicted limit in the regime the theory describes? Diagnostics and plain warnings.

The prediction ``s = F(R(s))`` (SPEC 2.3) describes weights that l1 training has already put
close to their sparse support: pruning them then moves the model a distance ``R`` that the
quadratic model of the loss still describes. Three measurements say how far a run is from
that regime, and why a gap between predicted and actual limits may be large:

- ``near_zero_fraction``: the fraction of prunable weights that l1 has put (almost) at zero.
  When it is well below the predicted sparsity, the pruned weights are not at their sparse
  support and ``R(s*)`` is decided by weights that still carry signal.
- ``critical_mass``: the spectral mass near the critical curvature ``2 eps / R(s*)^2``, where
  ``f(lambda) = 2 eps / (R^2 |lambda| + 2 eps)`` turns from 1 to 0. For an SLQ quadrature it
  is the weight of the nodes that bracket the critical curvature (per probe, the nearest node
  below and above it, in ``|theta|``): one node spacing either way. When a large share of
  the mass sits there, the Gauss quadrature decides ``F`` with few, coarse nodes. For exact
  eigenvalues it is the mass of the transition band ``f`` in ``[0.1, 0.9]``.
- ``sensitivity``: ``d s* / d log eps`` (central difference over ``eps * exp(+-0.1)``), and
  ``eps_shift``: how far ``s*`` moves across the measured spread of ``eps``.

:func:`training_check` then holds the prediction against one-shot magnitude pruning on the
training data, the data its Hessian and ``eps`` come from, before any test data is read:
whether the loss leaves the sub-level set earlier than predicted (the quadratic model fails),
whether the accuracy falls inside it (``eps`` is loose), and whether the test loss sits so
far above the training loss, in units of ``eps``, that a training-set prediction may not
carry over to the test set (an interpolating model).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from prune_jax.limits.predict import SparsityLimit, predict_sparsity_limit
from prune_jax.tree import PyTree, prunable_leaves
from prune_jax.validate import check_fraction, check_positive

__all__ = ["Regime", "TrainingCheck", "regime_diagnostics", "training_check"]

_LOG_STEP = 0.1  # central difference step in log eps


class Regime(NamedTuple):
    """Regime diagnostics of one predicted limit (SPEC 2.3; see the module docstring).

    Attributes:
        near_zero_fraction: prunable weights with ``|w| <= near_zero_tol * max |w|``.
        critical_curvature: ``2 eps / R(s*)^2``.
        critical_mass: spectral mass next to the critical curvature (module docstring).
        sensitivity: ``d s* / d log eps``.
        eps_shift: ``|sensitivity| * log1p(eps_spread / eps)``, the change of ``s*`` across
            one standard deviation of ``eps`` over shuffles.
        warnings: plain-language reasons why the prediction may be unreliable (empty when
            the run is in the regime).
    """

    near_zero_fraction: float
    critical_curvature: float
    critical_mass: float
    sensitivity: float
    eps_shift: float
    warnings: tuple[str, ...]


def _bracket_mass(nodes: np.ndarray, weights: np.ndarray, critical: float) -> float:
    """Mean over probes of the weight of the nodes bracketing ``critical`` in ``|theta|``."""
    curv = np.abs(np.atleast_2d(nodes))
    w = np.atleast_2d(weights)
    masses = []
    for c, t in zip(curv, w, strict=True):
        below, above = c[c <= critical], c[c > critical]
        hits = np.zeros_like(c, dtype=bool)
        if below.size:
            hits |= c == below.max()
        if above.size:
            hits |= c == above.min()
        masses.append(float(np.sum(t[hits]) / np.sum(t)))
    return float(np.mean(masses))


def _band_mass(eigenvalues: np.ndarray, critical: float) -> float:
    curv = np.abs(np.asarray(eigenvalues, np.float64))
    return float(np.mean((curv >= critical / 9.0) & (curv <= 9.0 * critical)))


def regime_diagnostics(params: PyTree, spectrum: Any, eps: float, limit: SparsityLimit, *,
                       eps_spread: float = 0.0, prunable: Any = None, zero_mass: float = 0.0,
                       near_zero_tol: float = 1e-3, max_gap: float = 0.02,
                       max_critical_mass: float = 0.25) -> Regime:
    """Regime diagnostics of ``limit = predict_sparsity_limit(params, spectrum, eps)`` (SPEC 2.3).

    Args:
        params: the parameters the limit was predicted for.
        spectrum: the same spectrum (eigenvalues, or an SLQ result with ``.nodes``/``.weights``).
        eps: the same loss tolerance.
        limit: the :class:`SparsityLimit` to diagnose.
        eps_spread: standard deviation of ``eps`` across shuffles
            (:attr:`prune_jax.LossTolerance.spread`), ``>= 0``.
        prunable: which leaves are prunable (default: Dense/Conv kernels).
        zero_mass: the zero-eigenvalue atom the limit was predicted with.
        near_zero_tol: weights with ``|w| <= near_zero_tol * max |w|`` count as near zero.
        max_gap: the accuracy asked of the prediction (a sparsity difference); warnings fire
            when a diagnostic alone could move ``s*`` by more, or when l1 has left more than
            this fraction of the predicted sparsity away from zero.
        max_critical_mass: quadrature mass next to the critical curvature above which the
            quadrature is flagged as coarse.

    Returns:
        :class:`Regime`.

    Example:
        >>> w = jnp.concatenate([jnp.zeros(90), jnp.ones(10)]).reshape(10, 10)
        >>> params = {"Dense_0": {"kernel": w}}           # l1 has zeroed 90% of the weights
        >>> spec = jnp.concatenate([jnp.zeros(90), jnp.full(10, 100.0)])
        >>> lim = predict_sparsity_limit(params, spec, eps=0.05)
        >>> reg = regime_diagnostics(params, spec, 0.05, lim)
        >>> round(lim.sparsity, 2), reg.near_zero_fraction, reg.warnings
        (0.91, 0.9, ())
    """
    eps = check_positive(eps, "eps")
    eps_spread = check_positive(eps_spread, "eps_spread", allow_zero=True)
    near_zero_tol = check_fraction(near_zero_tol, "near_zero_tol")
    mags = np.concatenate([np.abs(np.asarray(x, np.float64)).ravel()
                           for x in prunable_leaves(params, prunable)])
    near_zero = float(np.mean(mags <= near_zero_tol * mags.max()))
    critical = 2.0 * eps / max(limit.distance, 1e-300) ** 2
    if hasattr(spectrum, "nodes") and hasattr(spectrum, "weights"):
        mass = _bracket_mass(np.asarray(spectrum.nodes), np.asarray(spectrum.weights), critical)
        quadrature = True
    else:
        mass = _band_mass(np.asarray(spectrum), critical)
        quadrature = False
    up, down = (predict_sparsity_limit(params, spectrum, eps * math.exp(d), prunable=prunable,
                                       zero_mass=zero_mass, num_curve=2).sparsity
                for d in (_LOG_STEP, -_LOG_STEP))
    sensitivity = (up - down) / (2 * _LOG_STEP)
    shift = abs(sensitivity) * math.log1p(eps_spread / eps)

    warnings = []
    s = limit.sparsity
    if near_zero < s - max_gap:
        warnings.append(
            f"weak l1: only {near_zero:.1%} of the prunable weights are near zero, but the "
            f"prediction removes {s:.1%}; the pruned weights are not at their sparse support "
            "(the regime the theory describes), so the quadratic model is used far from "
            "where it holds. Train with a larger l1 budget lr*l1*steps/(1-momentum).")
    if shift > max_gap / 2:
        warnings.append(
            f"eps-sensitive: s* moves by {sensitivity:+.3f} per e-fold of eps, and eps varies "
            f"by {eps_spread / eps:.0%} across shuffles (s* +-{shift:.3f}).")
    if quadrature and mass > max_critical_mass:
        warnings.append(
            f"coarse quadrature: {mass:.0%} of the SLQ mass sits on the nodes next to the "
            f"critical curvature 2 eps / R^2 = {critical:.3g}, where F is decided; compare "
            "with the exact spectrum (--spectrum exact, D up to ~2e4) or use more Lanczos steps.")
    return Regime(near_zero, critical, mass, float(sensitivity), float(shift), tuple(warnings))


class TrainingCheck(NamedTuple):
    """A predicted limit against one-shot magnitude pruning on the training data.

    Attributes:
        loss_limit: the last sparsity before the training loss exceeds its dense value by
            more than ``eps``: the theory's own criterion, on the data its Hessian came from.
        accuracy_limit: the last sparsity before the training accuracy first drops.
        generalisation_gap: ``(dense test loss - dense training loss) / eps``.
        warnings: plain-language reasons why the test-set limit may differ (empty if none).
    """

    loss_limit: float
    accuracy_limit: float
    generalisation_gap: float
    warnings: tuple[str, ...]


def training_check(predicted: float, *, loss_limit: float, accuracy_limit: float,
                   train_loss: float, test_loss: float, eps: float, max_gap: float = 0.02,
                   max_generalisation_gap: float = 50.0) -> TrainingCheck:
    """Check a predicted sparsity against magnitude pruning on the training data (SPEC 2.3).

    Args:
        predicted: the predicted limit ``s*``.
        loss_limit: the last swept sparsity at which the training loss of the globally
            magnitude-pruned model is still within ``eps`` of the dense training loss.
        accuracy_limit: the last swept sparsity before the training accuracy first drops
            (flagged when it is more than ``max_gap`` below ``predicted`` and below
            ``loss_limit``: the accuracy falls while the loss is still within ``eps``).
        train_loss: the dense model's training loss (the loss ``eps`` is measured on).
        test_loss: the dense model's test loss.
        eps: the loss tolerance of the prediction.
        max_gap: the accuracy asked of the prediction (a sparsity difference).
        max_generalisation_gap: the test-minus-training loss, in units of ``eps``, above which
            the model is flagged as interpolating. The digits and MNIST-1D calibration runs
            that agree within 0.02 stay below 30; cnn_small on digits at the default l1
            budget sits at 144 to 224.

    Example:
        >>> training_check(0.95, loss_limit=0.90, accuracy_limit=0.95, train_loss=0.05,
        ...                test_loss=0.1, eps=0.01).loss_limit
        0.9
    """
    eps = check_positive(eps, "eps")
    gap = (test_loss - train_loss) / eps
    warnings = []
    if predicted - loss_limit > max_gap:
        warnings.append(
            f"quadratic model off on the training data: one-shot magnitude pruning raises the "
            f"training loss by more than eps from s = {loss_limit:.3f} on, "
            f"{predicted - loss_limit:.3f} below the prediction; the pruned direction is more "
            "curved than the width argument assumes, or the loss is not quadratic that far out.")
    if predicted - accuracy_limit > max_gap and accuracy_limit < loss_limit:
        warnings.append(
            f"loose eps: the training accuracy already drops at s = {accuracy_limit:.3f}, "
            f"{predicted - accuracy_limit:.3f} below the prediction, while the training loss is "
            f"still within eps = {eps:.3g}; the loss criterion of the theory admits an accuracy "
            "loss, so the accuracy readings of the actual limit come out lower.")
    if gap > max_generalisation_gap:
        warnings.append(
            f"interpolating model: the dense test loss exceeds the training loss by {gap:.0f} "
            f"eps (eps = {eps:.3g}, the batch-to-batch spread of a training loss of "
            f"{train_loss:.3g}); the prediction describes the training data (training-loss "
            f"reading {loss_limit:.3f}) and the test loss responds to pruning on a scale eps "
            "does not resolve. Train with a larger l1 budget, or read the limit on the "
            "training data.")
    return TrainingCheck(float(loss_limit), float(accuracy_limit), float(gap), tuple(warnings))
