"""Sup-norm error ``sup_{||x|| <= 1} |f(x) - g(x)|`` of a pruned network (SPEC 4).

By positive homogeneity of bias-free ReLU networks the sup over the unit ball equals the sup
over the unit sphere. What each estimator GUARANTEES:

* :func:`sup_error_2d` -- EXACT in d = 2 (up to float rounding). On the circle every function
  is linear in ``x`` between consecutive kinks (angles ``atan2(u_i) +- pi/2``; with the output
  ReLU also the zero crossings of ``g``), and ``max |<v, x>|`` over an arc is attained at an end
  point or at ``+-v/|v|`` when that direction lies on the arc.
* :func:`sup_error_grid_2d` -- LOWER estimate (a uniform grid of angles); below the exact value
  by at most ``Lipschitz * pi / n_points``.
* :func:`sup_error_search` -- LOWER estimate in any d: dense sphere samples, the exact maximum
  on every coordinate-pair great circle (the input families of the paper's proof), refined by
  monotone projected ascent. Every value is attained at a reported point, so it never exceeds
  the true sup.

Upper bounds on the sup in d > 2 come only from analytic certificates (``prune_jax.slth.pensia``).
"""

from __future__ import annotations

import dataclasses
import itertools
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prune_jax.slth.networks import Net, residual
from prune_jax.tree import Array
from prune_jax.validate import check_int, check_shape

__all__ = ["Candidates", "SupEstimate", "SupResult", "SupSearch", "arc_maxima_2d", "sup_error",
           "sup_error_2d", "sup_error_2d_batch", "sup_error_grid_2d", "sup_error_search",
           "worst_points"]

_TWO_PI = 2.0 * np.pi
_CHUNK = 16  # networks per call of the batched kernel: one compiled shape per width bucket
_ANGLES = 0.5 * 0.4 ** np.arange(12)  # geodesic step lengths tried per ascent step


class SupResult(NamedTuple):
    """``value`` = ``|f - g|`` at the unit vector ``point`` (d,)."""

    value: Array
    point: Array


class Candidates(NamedTuple):
    """Points of the sphere (k, d) with their ``|f - g|`` values (k,), largest first."""

    values: Array
    points: Array


class SupEstimate(NamedTuple):
    """A sup-norm error with its guarantee: ``exact`` is True in d = 2, else a lower estimate."""

    value: float
    point: np.ndarray
    exact: bool


@dataclasses.dataclass(frozen=True)
class SupSearch:
    """Options of the d > 2 lower estimate :func:`sup_error_search` (SPEC 4)."""

    n_samples: int = 4096
    coordinate_circles: bool = True
    ascent_starts: int = 32
    ascent_steps: int = 48

    def __post_init__(self) -> None:
        check_int(self.n_samples, "n_samples", low=1)
        check_int(self.ascent_starts, "ascent_starts", low=1)
        check_int(self.ascent_steps, "ascent_steps", low=0)


def bucket(n: int, smallest: int = 8) -> int:
    """Next power of two >= max(n, smallest): padded sizes keep the compiled shapes few."""
    return max(smallest, 1 << (int(n) - 1).bit_length())


def _unit(theta: Array) -> Array:
    return jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)


def _arc_max(lo: Array, hi: Array, v: Array) -> tuple[Array, Array]:
    """``max_{theta in [lo, hi]} |<v, e(theta)>|`` and a maximising angle (batched)."""
    psi = jnp.arctan2(v[..., 1], v[..., 0])
    offset = jnp.minimum(jnp.mod(psi - lo, _TWO_PI), jnp.mod(psi + np.pi - lo, _TWO_PI))
    inside = offset <= hi - lo
    values = jnp.stack([jnp.abs(jnp.sum(v * _unit(lo), -1)), jnp.abs(jnp.sum(v * _unit(hi), -1)),
                        jnp.where(inside, jnp.linalg.norm(v, axis=-1), -1.0)], axis=-1)
    angles = jnp.stack([lo, hi, lo + offset], axis=-1)
    best = jnp.argmax(values, axis=-1)[..., None]
    return (jnp.take_along_axis(values, best, -1)[..., 0],
            jnp.take_along_axis(angles, best, -1)[..., 0])


def _arc_maxima(w_star: Array, u: Array, c: Array, output_relu: bool) -> tuple[Array, Array]:
    """Per-arc maxima of ``|f - g|`` on the unit circle (2-d inputs); returns (values, angles)."""
    kinks = jnp.concatenate([jnp.arctan2(u[:, 1], u[:, 0]),
                             jnp.arctan2(w_star[1], w_star[0])[None]])
    kinks = jnp.mod(jnp.concatenate([kinks + np.pi / 2, kinks - np.pi / 2]), _TWO_PI)
    edges = jnp.sort(jnp.concatenate([kinks, jnp.array([0.0, _TWO_PI], kinks.dtype)]))
    lo, hi = edges[:-1], edges[1:]
    mid = _unit(0.5 * (lo + hi))
    active = (mid @ u.T > 0).astype(u.dtype)
    v_h = (active * c) @ u
    v_f = (mid @ w_star > 0).astype(u.dtype)[:, None] * w_star
    if not output_relu:
        return _arc_max(lo, hi, v_f - v_h)
    # relu(g) adds kinks where <v_h, x> = 0 inside an arc: split every arc in three.
    psi = jnp.arctan2(v_h[:, 1], v_h[:, 0])
    width = (hi - lo)[:, None]
    zeros = jnp.mod(jnp.stack([psi + np.pi / 2, psi - np.pi / 2], -1) - lo[:, None], _TWO_PI)
    cuts = jnp.sort(jnp.concatenate([jnp.zeros_like(width), jnp.minimum(zeros, width), width],
                                    -1), -1) + lo[:, None]
    sub_lo, sub_hi = cuts[:, :-1], cuts[:, 1:]
    on = (jnp.sum(_unit(0.5 * (sub_lo + sub_hi)) * v_h[:, None], -1) > 0).astype(u.dtype)
    v = v_f[:, None] - on[..., None] * v_h[:, None]
    values, angles = _arc_max(sub_lo, sub_hi, v)
    return values.ravel(), angles.ravel()


def _prepared(w_star: Array, net: Net, d: int | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate, then pad with zero units on the host (``u = 0``, ``c = 0`` change no value):
    the jitted kernels see a few bucketed widths instead of one shape per width."""
    check_shape(w_star, (d,), "w_star")
    dim = check_int(np.shape(w_star)[0], "d (len(w_star))", low=2)
    check_shape(net.u, (None, dim), "net.u")
    n = np.shape(net.u)[0]
    check_shape(net.c, (n,), "net.c")
    pad = bucket(n, smallest=16) - n
    return (np.asarray(w_star), np.pad(np.asarray(net.u), ((0, pad), (0, 0))),
            np.pad(np.asarray(net.c), (0, pad)))


def _host(tree: object) -> object:
    return jax.tree.map(np.asarray, tree)


@partial(jax.jit, static_argnames="output_relu")
def _arcs_2d(w_star: Array, u: Array, c: Array, output_relu: bool) -> Candidates:
    values, angles = _arc_maxima(w_star, u, c, output_relu)
    return Candidates(values, _unit(angles))


def arc_maxima_2d(w_star: Array, net: Net, output_relu: bool = False) -> Candidates:
    """EXACT maximum of ``|f - g|`` on every linear arc of the circle, d = 2 (unsorted)."""
    return _host(_arcs_2d(*_prepared(w_star, net, 2), output_relu))


def sup_error_2d(w_star: Array, net: Net, output_relu: bool = False) -> SupResult:
    """EXACT sup-norm error over the unit disc in d = 2 (SPEC 4), attained at ``point``."""
    arcs = arc_maxima_2d(w_star, net, output_relu)
    best = np.argmax(arcs.values)
    return SupResult(np.asarray(arcs.values[best]), arcs.points[best])


@partial(jax.jit, static_argnames="output_relu")
def _batch_2d(w_star: Array, u: Array, c: Array, output_relu: bool) -> Array:
    return jax.vmap(lambda ci: jnp.max(_arc_maxima(w_star, u, ci, output_relu)[0]))(c)


def sup_error_2d_batch(w_star: Array, u: Array, c: Array, output_relu: bool = False
                       ) -> np.ndarray:
    """EXACT sup errors (B,) of the networks ``Net(u, c[b])`` sharing hidden weights, d = 2.

    Vectorised over chunks of 16 networks (a host loop over chunks bounds the memory)."""
    check_shape(c, (None, np.shape(u)[0]), "c")
    c = np.asarray(c)
    n_nets = c.shape[0]
    w_star, u, _ = _prepared(w_star, Net(u, c[0]), 2)
    c = np.pad(c, ((0, -(-n_nets // _CHUNK) * _CHUNK - n_nets), (0, u.shape[0] - c.shape[1])))
    errors = [_batch_2d(w_star, u, chunk, output_relu) for chunk in np.split(c, len(c) // _CHUNK)]
    return np.concatenate([np.asarray(e) for e in errors])[:n_nets]


@partial(jax.jit, static_argnames=("output_relu", "n_points"))
def _grid_2d(w_star: Array, u: Array, c: Array, output_relu: bool, n_points: int) -> SupResult:
    x = _unit(jnp.arange(n_points, dtype=u.dtype) * (_TWO_PI / n_points))
    r = jnp.abs(residual(w_star, Net(u, c), x, output_relu))
    best = jnp.argmax(r)
    return SupResult(r[best], x[best])


def sup_error_grid_2d(w_star: Array, net: Net, output_relu: bool = False,
                      n_points: int = 2**16) -> SupResult:
    """LOWER estimate in d = 2: the maximum over ``n_points`` equally spaced angles (SPEC 4)."""
    check_int(n_points, "n_points", low=1)
    return _host(_grid_2d(*_prepared(w_star, net, 2), output_relu, n_points))


def _ascend(w_star: Array, net: Net, output_relu: bool, x0: Array, steps: int
            ) -> tuple[Array, Array]:
    """Monotone projected ascent of ``|f - g|`` on the sphere from ``x0``.

    Each step moves along the geodesic in the direction of the tangent (sub)gradient and keeps
    the best of a ladder of step lengths (or stays): the value never decreases, and smooth
    maxima are approached geometrically.
    """
    objective = lambda x: jnp.abs(residual(w_star, net, x, output_relu))
    angles = jnp.asarray(_ANGLES, x0.dtype)

    def step(carry: tuple[Array, Array], _: None) -> tuple[tuple[Array, Array], None]:
        x, value = carry
        g = jax.grad(objective)(x)
        g = g - jnp.dot(g, x) * x
        direction = g / jnp.maximum(jnp.linalg.norm(g), 1e-300)
        trial = jnp.cos(angles)[:, None] * x + jnp.sin(angles)[:, None] * direction
        trial = trial / jnp.linalg.norm(trial, axis=-1, keepdims=True)
        values = objective(trial)
        best = jnp.argmax(values)
        better = values[best] > value
        return (jnp.where(better, trial[best], x), jnp.where(better, values[best], value)), None

    (x, value), _ = jax.lax.scan(step, (x0, objective(x0)), None, length=steps)
    return value, x


@partial(jax.jit, static_argnames=("output_relu", "search", "k"))
def _search(key: Array, w_star: Array, u: Array, c: Array, output_relu: bool,
            search: SupSearch, k: int) -> Candidates:
    net, d = Net(u, c), w_star.shape[0]
    x = jax.random.normal(key, (search.n_samples, d), u.dtype)
    points = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    values = jnp.abs(residual(w_star, net, points, output_relu))

    def circle(pair: Array) -> tuple[Array, Array]:
        """Exact maximum on the great circle ``cos t e_j + sin t e_k``, ``pair = (j, k)``."""
        arc_values, angles = _arc_maxima(w_star[pair], u[:, pair], c, output_relu)
        best = jnp.argmax(arc_values)
        return arc_values[best], jnp.zeros((d,), w_star.dtype).at[pair].set(_unit(angles[best]))

    if search.coordinate_circles:
        pairs = np.array(list(itertools.combinations(range(d), 2)), dtype=np.int32)
        circle_values, circle_points = jax.vmap(circle)(jnp.asarray(pairs))
        values = jnp.concatenate([values, circle_values])
        points = jnp.concatenate([points, circle_points])
    _, start = jax.lax.top_k(values, min(search.ascent_starts, values.shape[0]))
    ascend = partial(_ascend, w_star, net, output_relu, steps=search.ascent_steps)
    refined_values, refined_points = jax.vmap(ascend)(points[start])
    values = jnp.concatenate([refined_values, values])
    points = jnp.concatenate([refined_points, points])
    top_values, top = jax.lax.top_k(values, min(k, values.shape[0]))
    return Candidates(top_values, points[top])


def sup_error_search(key: Array, w_star: Array, net: Net, output_relu: bool = False,
                     search: SupSearch = SupSearch(), k: int = 1) -> Candidates:
    """LOWER estimate of the sup-norm error in any d >= 2 (SPEC 4): the ``k`` best points found.

    Sphere samples, the exact maximum on each coordinate-pair great circle, then projected
    ascent from the ``search.ascent_starts`` best of those. Host arrays, largest first.
    """
    check_int(k, "k", low=1)
    found = _host(_search(key, *_prepared(w_star, net), output_relu, search, bucket(k)))
    return Candidates(found.values[:k], found.points[:k])


def worst_points(key: Array, w_star: Array, net: Net, output_relu: bool = False, k: int = 16,
                 search: SupSearch = SupSearch()) -> Candidates:
    """Up to ``k`` points where ``|f - g|`` is largest, largest first (cutting-plane oracle):
    the ``k`` worst arcs in d = 2 (EXACT; ``key`` unused), else :func:`sup_error_search`."""
    check_int(k, "k", low=1)
    if np.size(w_star) != 2:
        return sup_error_search(key, w_star, net, output_relu, search, k)
    arcs = arc_maxima_2d(w_star, net, output_relu)
    top = np.argsort(-arcs.values, kind="stable")[:k]  # ties: lower index first
    return Candidates(arcs.values[top], arcs.points[top])


def sup_error(key: Array, w_star: Array, net: Net, output_relu: bool = False,
              search: SupSearch = SupSearch()) -> SupEstimate:
    """Sup-norm error with its guarantee (SPEC 4): EXACT in d = 2, a LOWER estimate in d > 2."""
    worst = worst_points(key, w_star, net, output_relu, 1, search)
    return SupEstimate(float(worst.values[0]), np.asarray(worst.points[0]), np.size(w_star) == 2)
