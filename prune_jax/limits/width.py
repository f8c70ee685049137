"""Gaussian widths of loss sub-level sets (SPEC section 2.1-2.2).

Host-side float64 numpy, on purpose: the inputs are one-dimensional (semi-axes, eigenvalues,
quadrature nodes), the exact width is a 1-D integral whose cost is one pass over the axes,
and the limit solver (:mod:`prune_jax.limits.predict`) compares ``F(R)`` with ``k / D_p`` for
``D_p ~ 1e7``, below float32 resolution. Nothing here is traced; every public function
validates its arguments and raises ``ValueError``/``TypeError`` naming the bad one.

Spectra are duck-typed: an array of eigenvalues, or any object with ``.nodes`` and
``.weights`` of equal shape ``(num_probes, num_steps)`` whose weight rows sum to 1 (the SLQ
result of :func:`prune_jax.curvature.slq`, SPEC 1.3). Neither is ever put on a grid.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from prune_jax.validate import check_fraction, check_positive

__all__ = ["SpectralMeasure", "ellipsoid_gaussian_width", "projected_width_fraction",
           "spectral_measure", "trace_width_bound"]

# Width integral: binned Taylor expansion of the log1p sum, trapezoid rule in u = log t.
_LOG_BIN = 1.0 / 16.0   # bin width in log(r_i^2 / max r^2); |y| <= e^(1/32) - 1 = 0.032
_ORDER = 7              # terms of log1p(a y): truncation <= 0.032^8 / 8 = 1.3e-13 per axis
_NUM_BINS = int(800 / _LOG_BIN)   # covers log x down to -800 (float64 underflows at -745)
_STEP = 0.25            # trapezoid step in u: error ~ exp(-pi^2 / STEP) ~ 1e-17
_U_LO, _U_HI = -25.0, 40.0        # range of u + log(sum x); tails beyond are summed exactly
_CHUNK = 1 << 20        # axes per pass (bounds temporaries for D up to 1e8 and beyond)
_GRID_FLOATS = 1 << 22  # distances x nodes evaluated per block in the width fraction


class SpectralMeasure(NamedTuple):
    """A discrete spectral measure ``sum_k weights_k delta(lambda - nodes_k)`` of total mass 1
    (SPEC 2.2), built by :func:`spectral_measure`; float64 host arrays.

    Attributes:
        nodes: ``(n,)`` eigenvalues or Ritz values (the last node is the zero atom).
        weights: ``(n,)`` non-negative weights summing to 1.
    """

    nodes: np.ndarray
    weights: np.ndarray


class _BinnedSquares(NamedTuple):
    """Squared semi-axes ``x_i`` grouped in log bins: centres ``c_b``, counts, and moments
    ``sum_{i in b} y_i^k`` (k = 1..ORDER) of the relative offsets ``y_i = x_i / c_b - 1``."""

    centres: np.ndarray
    counts: np.ndarray
    moments: np.ndarray


# --------------------------------------------------------------------------- validation

def _real_array(x: Any, name: str) -> np.ndarray:
    a = np.asarray(x)
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
    return a


def _check_distance(distance: Any) -> np.ndarray:
    r = _real_array(distance, "distance").astype(np.float64)
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError("distance must be finite and >= 0 (an l2 norm R)")
    return r


def spectral_measure(spectrum: Any, zero_mass: float = 0.0) -> SpectralMeasure:
    """Normalise a spectrum to a :class:`~prune_jax.limits.SpectralMeasure` with an atom of
    mass ``zero_mass`` at 0 (SPEC 1.3, 2.2), validating it once.

    ``spectrum`` is an array of exact eigenvalues (each gets weight ``(1 - zero_mass) / D``),
    an SLQ result with ``.nodes``/``.weights`` of shape ``(num_probes, num_steps)`` whose rows
    sum to 1 (node ``k`` of probe ``l`` gets ``(1 - zero_mass) tau_k^(l) / num_probes``), or a
    :class:`~prune_jax.limits.SpectralMeasure` (returned as is when ``zero_mass`` is 0).

    Example:
        >>> m = spectral_measure([1.0, 3.0], zero_mass=0.5)
        >>> m.nodes.tolist(), m.weights.tolist()
        ([1.0, 3.0, 0.0], [0.25, 0.25, 0.5])
    """
    z = check_fraction(zero_mass, "zero_mass", closed=True)
    if isinstance(spectrum, SpectralMeasure) and z == 0.0:
        return spectrum
    if hasattr(spectrum, "nodes") and hasattr(spectrum, "weights"):
        nodes = _real_array(spectrum.nodes, "spectrum.nodes").astype(np.float64)
        weights = _real_array(spectrum.weights, "spectrum.weights").astype(np.float64)
        if nodes.shape != weights.shape or nodes.ndim not in (1, 2) or nodes.size == 0:
            raise ValueError("spectrum.nodes and spectrum.weights must have the same non-empty "
                             f"shape (num_probes, num_steps); got {nodes.shape}, {weights.shape}")
        nodes, weights = np.atleast_2d(nodes), np.atleast_2d(weights)
        if not (np.all(np.isfinite(nodes)) and np.all(np.isfinite(weights))):
            raise ValueError("spectrum contains NaN or Inf nodes or weights")
        rows = weights.sum(axis=1, keepdims=True)
        if np.any(weights < -1e-12) or not np.allclose(rows, 1.0, rtol=0, atol=1e-6):
            raise ValueError("spectrum.weights must be >= 0 with rows summing to 1 "
                             f"(row sums {rows.ravel()[:4]}...)")
        weights = np.clip(weights, 0.0, None) / rows / nodes.shape[0]
    else:
        nodes = _real_array(spectrum, "spectrum").astype(np.float64)
        if nodes.size == 0 or not np.all(np.isfinite(nodes)):
            raise ValueError("spectrum must be a non-empty array of finite eigenvalues "
                             "(or an SLQ result with .nodes/.weights)")
        weights = np.full(nodes.shape, 1.0 / nodes.size)
    nodes, weights = nodes.ravel(), (1.0 - z) * weights.ravel()
    return SpectralMeasure(np.append(nodes, 0.0), np.append(weights, z))


# --------------------------------------------------------------------------- ellipsoid width

def _bin_squares(axes: np.ndarray, r_max: float) -> _BinnedSquares:
    """One chunked pass over ``axes``: log-bin ``x = (r / r_max)^2`` and accumulate moments."""
    counts = np.zeros(_NUM_BINS)
    moments = np.zeros((_ORDER, _NUM_BINS))
    flat = axes.reshape(-1)
    for start in range(0, flat.size, _CHUNK):
        x = np.square(flat[start:start + _CHUNK].astype(np.float64) / r_max)
        x = x[x > 0]  # zero axes (and those below r_max * 1e-162) contribute nothing
        j = np.minimum(np.floor(-np.log(x) / _LOG_BIN).astype(np.intp), _NUM_BINS - 1)
        y = x * np.exp((j + 0.5) * _LOG_BIN) - 1.0
        counts += np.bincount(j, minlength=_NUM_BINS)
        power = y.copy()
        for k in range(_ORDER):
            moments[k] += np.bincount(j, weights=power, minlength=_NUM_BINS)
            power *= y
    used = counts > 0
    centres = np.exp(-(np.flatnonzero(used) + 0.5) * _LOG_BIN)
    return _BinnedSquares(centres, counts[used], moments[:, used])


def _half_log_det(bins: _BinnedSquares, t: np.ndarray) -> np.ndarray:
    """``S(t) = 1/2 sum_i log1p(2 t x_i)`` for a vector ``t``, from the binned moments.

    Per axis ``log1p(2 t x) = log1p(2 t c) + log1p(a y)`` with ``a = 2tc / (1 + 2tc)`` in
    ``[0, 1)``, and ``log1p(a y)`` is its alternating series truncated after ``_ORDER`` terms.
    """
    two_tc = 2.0 * t[:, None] * bins.centres
    a = two_tc / (1.0 + two_tc)
    total = np.log1p(two_tc) @ bins.counts
    a_power = np.ones_like(a)
    for k in range(1, _ORDER + 1):
        a_power *= a
        total += ((-1.0) ** (k + 1) / k) * (a_power @ bins.moments[k - 1])
    return 0.5 * total


def ellipsoid_gaussian_width(semi_axes: Any) -> float:
    """Exact Gaussian width ``w(E) = E ||r * g||_2`` of the ellipsoid ``E(r)`` (SPEC 2.2).

    Evaluates ``w = 1/(2 sqrt(pi)) int_0^inf (1 - prod_i (1 + 2 t r_i^2)^(-1/2)) t^(-3/2) dt``
    in float64 on the host. The product is ``exp(-S(t))`` with ``S`` a sum of ``log1p`` terms,
    computed in one chunked pass over the axes (memory O(chunk), any ``D``): the squared axes
    are grouped in log bins of relative width 6% and each ``log1p`` is expanded exactly around
    its bin centre (truncation below 2e-13 relative, uniformly in ``t``). The integral is taken
    over ``u = log t`` with the trapezoid rule (step 0.25): the integrand is analytic in a
    strip and decays like ``exp(-|u| / 2)``, so the rule converges geometrically; the two
    tails beyond the window are added as exact geometric series. Relative error ~1e-12 for
    axes spanning 1e-8..1e8 and ``D`` up to 1e8 (cost: a few passes over the axes).

    Conventions: zero axes contribute nothing; any infinite axis gives ``inf``; an empty or
    all-zero input gives 0. Bounds: ``sqrt(2/pi) ||r|| <= w <= ||r||`` and
    ``||r||^2 - max r_i^2 <= w^2``; ``D = 1`` gives ``r sqrt(2/pi)``.

    Args:
        semi_axes: array-like of semi-axes ``r_i >= 0`` (any shape; flattened).

    Returns:
        The width as a Python float.

    Example:
        >>> round(ellipsoid_gaussian_width([2.0]), 12)          # 2 * sqrt(2/pi)
        1.595769121606
    """
    r = _real_array(semi_axes, "semi_axes")
    if r.size == 0:
        return 0.0
    r_max, r_min = float(np.max(r)), float(np.min(r))
    if math.isnan(r_max) or math.isnan(r_min) or r_min < 0:
        raise ValueError("semi_axes must be >= 0 and not NaN")
    if math.isinf(r_max):
        return math.inf
    if r_max == 0.0:
        return 0.0
    bins = _bin_squares(r, r_max)
    total = float(bins.centres @ bins.counts + bins.centres @ bins.moments[0])  # sum x_i
    u = np.arange(_U_LO, _U_HI + _STEP / 2, _STEP) - math.log(total)
    t = np.exp(u)
    body = -np.expm1(-_half_log_det(bins, t)) * np.exp(-u / 2)
    geometric = _STEP * math.exp(-_STEP / 2) / -math.expm1(-_STEP / 2)
    below = total * math.exp(u[0] / 2) * geometric   # 1 - e^(-S) ~ t sum x for t -> 0
    above = math.exp(-u[-1] / 2) * geometric          # 1 - e^(-S) -> 1 for t -> inf
    integral = _STEP * float(np.sum(body)) + below + above
    return r_max * integral / (2.0 * math.sqrt(math.pi))


# --------------------------------------------------------------------------- projected width

def _fraction(quad: SpectralMeasure, distance: np.ndarray, eps: float) -> np.ndarray:
    """``sum_k w_k 2 eps / (R^2 |theta_k| + 2 eps)`` for every ``R`` in ``distance``."""
    r = distance.astype(np.float64).reshape(-1, 1)
    curv = np.abs(quad.nodes)
    out = np.empty(r.shape[0])
    block = max(1, _GRID_FLOATS // curv.size)
    # Divided by the same row sum of the weights (total 1 up to rounding), so that R = 0 or
    # an all-zero spectrum gives exactly 1 and F never exceeds 1.
    total = np.sum(np.ones((1, curv.size)) * quad.weights, axis=1)
    with np.errstate(over="ignore"):  # R^2 |lambda| -> inf gives the exact limit 0
        for s in range(0, r.shape[0], block):
            rb = r[s:s + block]  # R (R |lambda|): never inf * 0 for finite R
            terms = (2.0 * eps) / (rb * (rb * curv) + 2.0 * eps)
            out[s:s + block] = np.sum(terms * quad.weights, axis=1) / total
    return out.reshape(distance.shape)


def projected_width_fraction(spectrum: Any, distance: Any, eps: float, *,
                             zero_mass: float = 0.0) -> np.ndarray:
    """Normalised squared width of the projected sub-level set, ``F(R)`` (SPEC 2.2, 2.3).

    ``F(R) = (1/D) sum_i r_i^2 / (R^2 + r_i^2)`` with ``r_i^2 = 2 eps / |lambda_i|``
    (convexified: ``|lambda|``), written overflow-free as ``2 eps / (R^2 |lambda_i| + 2 eps)``,
    so ``lambda_i = 0`` (an infinite axis) contributes exactly 1. ``F`` is the predicted
    sparsity (fraction removed) that a pruning distance ``R`` still allows.

    The spectral measure is ``zero_mass * delta_0 + (1 - zero_mass) * Q`` where ``Q`` is
    the uniform measure on the given eigenvalues, or for an SLQ result the quadrature
    ``(1/n_v) sum_l sum_k tau_k^(l) delta(theta_k^(l))`` (rows renormalised to sum 1). So
    ``zero_mass`` is the fraction of eigenvalues treated as exact zeros on top of ``Q``
    (as the reference code adds its estimated zero mass); with it,
    ``F = zero_mass + (1 - zero_mass) * Q[2 eps / (R^2 |lambda| + 2 eps)]``.

    Limits: ``F(0) = 1``; ``R^2 >> r_i^2`` gives ``2 eps mean(1/|lambda|) / R^2``.

    Args:
        spectrum: eigenvalues (array), an object with ``.nodes``/``.weights``, or a
            :class:`~prune_jax.limits.SpectralMeasure`.
        distance: ``R >= 0``, scalar or array (vectorised).
        eps: loss tolerance ``> 0``.
        zero_mass: fraction in ``[0, 1]`` of eigenvalues set to exactly 0.

    Returns:
        float64 array with the shape of ``distance``, values in ``[0, 1]``.

    Example:
        >>> projected_width_fraction([0.0, 2.0], 1.0, eps=1.0)  # (1 + 1/2) / 2
        array(0.75)
    """
    eps = check_positive(eps, "eps")
    return _fraction(spectral_measure(spectrum, zero_mass), _check_distance(distance), eps)


def trace_width_bound(trace_abs: float, dim: int, distance: Any, eps: float) -> np.ndarray:
    """Jensen lower bound on ``F(R)`` from the trace alone (SPEC 2.2, trace form).

    ``F(R) >= 2 eps D / (2 eps D + R^2 tr|H|)`` because ``x -> 1 / (1 + x)`` is convex.

    Args:
        trace_abs: ``tr|H| = sum_i |lambda_i| >= 0``.
        dim: the dimension ``D >= 1``.
        distance: ``R >= 0``, scalar or array.
        eps: loss tolerance ``> 0``.

    Returns:
        float64 array with the shape of ``distance``.

    Example:
        >>> trace_width_bound(4.0, 2, 1.0, eps=1.0)   # 4 / (4 + 4)
        array(0.5)
    """
    eps = check_positive(eps, "eps")
    tr = float(trace_abs)
    if not (math.isfinite(tr) and tr >= 0):
        raise ValueError(f"trace_abs must be finite and >= 0, got {trace_abs!r}")
    if isinstance(dim, bool) or not float(dim).is_integer() or int(dim) < 1:
        raise ValueError(f"dim must be a positive integer, got {dim!r}")
    r = _check_distance(distance)
    scaled = 2.0 * eps * int(dim)
    with np.errstate(over="ignore"):
        return np.asarray(scaled / (scaled + r * (r * tr)))
