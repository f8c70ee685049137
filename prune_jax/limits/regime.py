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
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from prune_jax.limits.predict import SparsityLimit, predict_sparsity_limit
from prune_jax.tree import PyTree, prunable_leaves
from prune_jax.validate import check_fraction, check_positive

__all__ = ["Regime", "regime_diagnostics"]

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
