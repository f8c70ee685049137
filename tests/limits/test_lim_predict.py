"""Predicted pruning limit (SPEC 2.3) against a brute-force scan; loss tolerance."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prune_jax.limits import predict_sparsity_limit


class FakeSLQ(NamedTuple):
    nodes: np.ndarray
    weights: np.ndarray
    dim: int


def _quadrature(lams: np.ndarray, dim: int) -> FakeSLQ:
    """The uniform measure on ``lams`` as a one-probe quadrature of dimension ``dim``."""
    return FakeSLQ(lams[None], np.full((1, lams.size), 1 / lams.size), dim)


def _params(seed: int, zeros: float = 0.0, rows: int = 30) -> dict:
    rng = np.random.default_rng(seed)
    k0 = rng.laplace(0, 0.05, (rows, 20))
    k1 = rng.laplace(0, 0.2, (20, 7))
    k0[rng.random(k0.shape) < zeros] = 0.0
    return {"Dense_0": {"kernel": jnp.asarray(k0, jnp.float32), "bias": jnp.ones(20)},
            "Dense_1": {"kernel": jnp.asarray(k1, jnp.float32), "bias": 5 * jnp.ones(7)}}


def _brute_force(params: dict, lams: np.ndarray, eps: float, zero_mass: float = 0.0):
    """Scan g(k) = k/n - F(R_k) over every k with independent numpy code."""
    w = np.concatenate([np.asarray(params[layer]["kernel"], np.float64).ravel()
                        for layer in sorted(params)])
    sq = np.sort(w ** 2)
    n = sq.size
    radii = np.sqrt(np.concatenate([[0.0], np.cumsum(sq)]))      # R_k, k = 0..n
    r2 = np.where(lams == 0, np.inf, 2 * eps / np.abs(np.where(lams == 0, 1, lams)))
    with np.errstate(invalid="ignore"):
        ratio = np.where(np.isinf(r2)[None, :], 1.0, r2 / (radii[:, None] ** 2 + r2))
    f = zero_mass + (1 - zero_mass) * ratio.mean(axis=1)         # F(R_k)
    k = int(np.flatnonzero(np.arange(n + 1) / n - f >= 0)[0])
    s = min(f[k - 1], k / n)
    pruned = k - 1 if f[k - 1] < k / n else k
    return s, pruned, radii[pruned], f


def _lams(seed: int, d: int = 740) -> np.ndarray:
    """``d`` eigenvalues (default: D_p of ``_params`` with 30 rows)."""
    rng = np.random.default_rng(seed)
    lams = rng.lognormal(-1.0, 2.5, d) * np.where(rng.random(d) < 0.1, -1, 1)
    lams[: d // 10] = 0.0
    return lams


@pytest.mark.parametrize(("seed", "eps", "zero_mass"), [
    (0, 1e-3, 0.0), (1, 1e-2, 0.0), (2, 1e-1, 0.0), (3, 1e-2, 0.25), (4, 1.0, 0.0),
    (5, 1e-5, 0.0), (6, 3e-2, 0.6),
])
def test_matches_brute_force_scan(seed, eps, zero_mass):
    params, lams = _params(seed), _lams(seed)
    lim = predict_sparsity_limit(params, lams, eps, zero_mass=zero_mass)
    s, pruned, radius, _ = _brute_force(params, lams, eps, zero_mass)
    assert lim.sparsity == pytest.approx(s, rel=1e-12)
    assert lim.density == pytest.approx(1 - s, rel=1e-12, abs=1e-15)
    assert lim.num_pruned == pruned and lim.num_prunable == 30 * 20 + 20 * 7
    assert lim.distance == pytest.approx(radius, rel=1e-6)
    assert lim.eps == eps


@pytest.mark.parametrize("eps", [1e-4, 3e-3, 0.1])
def test_matches_brute_force_across_many_blocks(eps):
    params, lams = _params(20, rows=1003), _lams(20, d=200)  # D_p = 20200: ten 2048-blocks
    lim = predict_sparsity_limit(params, _quadrature(lams, 20200), eps)
    s, pruned, radius, f = _brute_force(params, lams, eps)
    assert lim.sparsity == pytest.approx(s, rel=1e-12)
    assert lim.num_pruned == pruned and lim.distance == pytest.approx(radius, rel=1e-6)
    k = np.floor(lim.curve_sparsity * lim.num_prunable).astype(int)
    np.testing.assert_allclose(lim.curve_width_fraction, f[k], rtol=1e-6)


def test_solution_is_the_crossing_and_curves_are_consistent():
    params, lams = _params(7), _lams(7)
    lim = predict_sparsity_limit(params, lams, 2e-2, num_curve=300)
    _, _, _, f = _brute_force(params, lams, 2e-2)
    n = lim.num_prunable
    k = np.floor(lim.curve_sparsity * n).astype(int)
    np.testing.assert_allclose(lim.curve_width_fraction, f[k], rtol=1e-6)
    assert lim.curve_sparsity.shape == (300,) and lim.curve_sparsity[[0, -1]].tolist() == [0, 1]
    above = lim.curve_width_fraction > lim.curve_sparsity
    assert np.all(above[lim.curve_sparsity < lim.sparsity])
    assert not np.any(above[lim.curve_sparsity > lim.sparsity])


def test_slq_like_spectrum_and_prunable_selection():
    params = _params(8)
    lams = _lams(8)
    q = FakeSLQ(lams.reshape(4, 185), np.full((4, 185), 1 / 185), 740)
    lim = predict_sparsity_limit(params, q, 0.01)
    assert lim.sparsity == pytest.approx(_brute_force(params, lams, 0.01)[0], rel=1e-12)
    # biases are not prunable by default: changing them changes nothing
    other = jax.tree.map(lambda x: x, params)
    other["Dense_0"]["bias"] = -100.0 * jnp.ones(20)
    again = predict_sparsity_limit(other, q, 0.01)
    assert (again.sparsity, again.num_pruned, again.distance) == (
        lim.sparsity, lim.num_pruned, lim.distance)
    only0 = predict_sparsity_limit(params, q._replace(dim=600), 0.01,
                                   prunable=lambda name, x: name == "Dense_0/kernel")
    assert only0.num_prunable == 600


def test_exact_zero_weights_are_pruned_for_free():
    params = _params(9, zeros=0.5)
    num_zero = int(np.sum(np.asarray(params["Dense_0"]["kernel"]) == 0))
    lim = predict_sparsity_limit(params, _lams(9), 1e-6)
    assert lim.num_pruned >= num_zero


def test_extreme_spectra():
    params = _params(10)
    flat = predict_sparsity_limit(params, np.zeros(740), 1e-3)  # F = 1 everywhere
    assert (flat.sparsity, flat.density) == (1.0, 0.0)
    sharp = predict_sparsity_limit(params, np.full(740, 1e12), 1e-9)  # F(R_1) ~ 0
    assert sharp.sparsity == pytest.approx(1 / 740) and sharp.num_pruned == 1
    single = predict_sparsity_limit({"Dense_0": {"kernel": jnp.ones((1, 1))}}, np.ones(1), 0.1)
    assert (single.sparsity, single.num_pruned, single.distance) == (1.0, 1, 1.0)


def test_float64_params_agree_with_float32():
    params = _params(11)
    p64 = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    a = predict_sparsity_limit(params, _lams(11), 0.01)
    b = predict_sparsity_limit(p64, _lams(11), 0.01)
    assert a.sparsity == pytest.approx(b.sparsity, rel=1e-6)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"eps": 0.0}, "eps"), ({"eps": float("nan")}, "eps"), ({"zero_mass": 2.0}, "zero_mass"),
    ({"spectrum": np.array([np.inf])}, "spectrum"), ({"num_curve": 1}, "num_curve"),
    ({"prunable": lambda name, x: False}, "prunable"),
])
def test_bad_arguments_raise_naming_them(kwargs, name):
    args = {"params": _params(12), "spectrum": _lams(12), "eps": 0.1} | kwargs
    params, spectrum, eps = args.pop("params"), args.pop("spectrum"), args.pop("eps")
    with pytest.raises(ValueError, match=name):
        predict_sparsity_limit(params, spectrum, eps, **args)


def test_non_finite_params_raise():
    params = _params(13)
    params["Dense_1"]["kernel"] = params["Dense_1"]["kernel"].at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="params"):
        predict_sparsity_limit(params, _lams(13), 0.1)


def test_spectrum_dimension_must_be_the_number_of_prunable_weights():
    params = _params(14)
    with pytest.raises(ValueError, match=r"number of eigenvalues in spectrum is 10, but params "
                                         r"has D_p = 740"):
        predict_sparsity_limit(params, np.ones(10), 0.1)
    with pytest.raises(ValueError, match=r"spectrum.dim is 800, but params has D_p = 740"):
        predict_sparsity_limit(params, _quadrature(np.ones(10), 800), 0.1)
    # biases in the Hessian (D = D_p + 27) are a mistake that the check catches
    with pytest.raises(ValueError, match="prunable"):
        predict_sparsity_limit(params, np.ones(767), 0.1)
