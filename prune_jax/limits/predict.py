"""The predicted pruning limit: the exact solution of ``s = F(R(s))`` (SPEC section 2.3).

One host sort of the prunable magnitudes (:func:`prune_jax.ranking.rank_magnitudes`) gives
``R_k``, the l2 norm of the ``k`` smallest, from float64 prefix sums; ``g(k) = k / D_p -
F(R_k)`` is strictly increasing, so an integer bisection finds the crossing. The comparison of
``k / D_p`` with ``F`` is in float64 (needed once ``D_p > 1e7``). Arrays that span other
processes' devices are gathered to every host by the ranking (the result is the same
everywhere).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from prune_jax import ranking
from prune_jax.limits.width import SpectralMeasure, projected_width_fraction, spectral_measure
from prune_jax.tree import PyTree, check_finite, check_floating, prunable_leaves
from prune_jax.validate import check_int, check_no_explicit_mesh, check_positive

__all__ = ["SparsityLimit", "predict_sparsity_limit"]


class SparsityLimit(NamedTuple):
    """Solution of ``s = F(R(s))`` (SPEC 2.3) and the curves behind it.

    Attributes:
        sparsity: predicted maximal sparsity ``s*`` (fraction of prunable weights removed).
        density: minimal density ``1 - s*`` (fraction kept).
        distance: ``R(s*)``, l2 norm of the ``num_pruned`` smallest prunable weights.
        num_pruned: ``floor(s* D_p)``.
        num_prunable: ``D_p``.
        eps: the loss tolerance used.
        curve_sparsity: sparsity grid ``linspace(0, 1, num_curve)``.
        curve_width_fraction: ``F(R(s))`` on that grid (the right-hand side).
    """

    sparsity: float
    density: float
    distance: float
    num_pruned: int
    num_prunable: int
    eps: float
    curve_sparsity: np.ndarray
    curve_width_fraction: np.ndarray


def _width_at(measure: SpectralMeasure, ranked: ranking.MagnitudeRanking, k: Any,
              eps: float) -> np.ndarray:
    """``F(R_k)`` for integer counts ``k``."""
    return projected_width_fraction(measure, ranking.prefix_norms(ranked, k), eps)


def _crossing(measure: SpectralMeasure, ranked: ranking.MagnitudeRanking, eps: float,
              grid_k: np.ndarray, grid_f: np.ndarray) -> tuple[int, float]:
    """Smallest ``k`` with ``g(k) = k / D_p - F(R_k) >= 0``, and ``F(R_{k-1})``.

    ``g`` is strictly increasing, ``g(0) = -1`` and ``g(D_p) >= 0``; the curve values
    bracket the root and an integer bisection narrows the bracket to one step.
    """
    n = int(ranked.magnitudes.size)
    first = int(np.argmax(grid_k / n - grid_f >= 0))   # exists: g(D_p) = 1 - F >= 0
    lo, hi, f_lo = int(grid_k[first - 1]), int(grid_k[first]), float(grid_f[first - 1])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        f_mid = float(_width_at(measure, ranked, np.array(mid), eps))
        if mid / n - f_mid >= 0:
            hi = mid
        else:
            lo, f_lo = mid, f_mid
    return hi, f_lo


def _check_dimension(spectrum: Any, num_prunable: int) -> None:
    """The spectrum must be that of the Hessian over exactly the ``D_p`` prunable weights."""
    if hasattr(spectrum, "nodes"):
        dim = getattr(spectrum, "dim", None)
        what = "spectrum.dim"
    else:
        dim, what = int(np.size(spectrum)), "the number of eigenvalues in spectrum"
    if dim is not None and int(dim) != num_prunable:
        raise ValueError(
            f"{what} is {int(dim):,}, but params has D_p = {num_prunable:,} prunable weights: "
            "take the Hessian with respect to exactly the prunable weights (split them off "
            "with prune_jax.tree.partition(params, prune_jax.tree.prunable_tree(params))), or "
            "pass the matching prunable=")


def predict_sparsity_limit(params: PyTree, spectrum: Any, eps: float, *,
                           prunable: Any = None, zero_mass: float = 0.0,
                           num_curve: int = 512) -> SparsityLimit:
    """Predicted maximal sparsity ``s*`` solving ``s = F(R(s))`` (SPEC 2.3).

    ``R(s)`` is the l2 norm of the ``floor(s D_p)`` smallest-magnitude prunable weights (what
    global one-shot magnitude pruning to sparsity ``s`` removes) and ``F`` is
    :func:`projected_width_fraction` of ``spectrum`` (with ``zero_mass``). The left side
    increases and ``F(R(s))`` does not, so the crossing is unique. It is found exactly: with
    ``R_k`` from the sorted cumulative squares, ``g(k) = k/D_p - F(R_k)`` is strictly
    increasing and integer bisection gives the smallest ``k*`` with ``g(k*) >= 0``. On
    ``[(k*-1)/D_p, k*/D_p)`` the right side is the constant ``F(R_{k*-1}) > (k*-1)/D_p``, so

    ``s* = min(F(R_{k*-1}), k*/D_p)``:

    the exact solution inside that step when ``F(R_{k*-1}) < k*/D_p``, else the step edge
    ``k*/D_p`` where the right side jumps below the diagonal.

    Sharded and multi-host parameters (``docs/scaling.md``): the prunable leaves are read
    on the host (gathered to every process when they span other processes' devices), so every
    process gets the same :class:`SparsityLimit`.

    Args:
        params: model parameters (pytree); its prunable leaves must be finite and floating
            (the other leaves are not read).
        spectrum: all ``D_p`` Hessian eigenvalues (array) or an SLQ result with
            ``.nodes``/``.weights`` and ``.dim == D_p``: the Hessian with respect to the
            prunable weights (a different dimension is an error).
        eps: loss tolerance ``> 0`` (e.g. ``loss_tolerance(...).std``).
        prunable: which leaves are prunable (see :func:`prune_jax.tree.prunable_tree`);
            default: Dense/Conv kernels.
        zero_mass: fraction in ``[0, 1]`` of eigenvalues treated as exact zeros.
        num_curve: points of the plotting curves (``>= 2``).

    Returns:
        :class:`SparsityLimit`.

    Example:
        >>> params = {"Dense_0": {"kernel": jnp.array([[0.1, -0.2], [0.3, 2.0]])}}
        >>> lim = predict_sparsity_limit(params, jnp.array([0.0, 1.0, 4.0, 9.0]), eps=0.05)
        >>> round(lim.sparsity, 4), lim.num_pruned   # F(R_2) = 0.5455 < 3/4: inside the step
        (0.5455, 2)
    """
    eps = check_positive(eps, "eps")
    measure = spectral_measure(spectrum, zero_mass)
    num_curve = check_int(num_curve, "num_curve", low=2)
    check_no_explicit_mesh(params, "params")
    leaves = prunable_leaves(params, prunable)
    check_floating(leaves, "params")
    n = sum(int(np.prod(np.shape(x), dtype=np.int64)) for x in leaves)
    if n == 0:
        raise ValueError("params has no prunable weights (all prunable leaves are empty)")
    _check_dimension(spectrum, n)
    ranked = ranking.rank_magnitudes(leaves, with_order=False)
    if not np.isfinite(ranked.magnitudes[-1]):  # NaN sorts last and Inf is the maximum
        check_finite(params, "params")
    if not np.isfinite(ranking.prefix_norms(ranked, n)):
        raise ValueError("params: the l2 norm of the prunable weights overflows float64")
    curve_s = np.linspace(0.0, 1.0, num_curve)
    grid_k = np.minimum(np.floor(curve_s * n).astype(np.int64), n)
    grid_f = _width_at(measure, ranked, grid_k, eps)
    k_star, f_before = _crossing(measure, ranked, eps, grid_k, grid_f)
    sparsity = min(f_before, k_star / n)
    pruned = k_star - 1 if f_before < k_star / n else k_star
    return SparsityLimit(
        sparsity=float(sparsity), density=float(1.0 - sparsity),
        distance=float(ranking.prefix_norms(ranked, pruned)), num_pruned=int(pruned),
        num_prunable=int(n), eps=eps, curve_sparsity=curve_s, curve_width_fraction=grid_f)
