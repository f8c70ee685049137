"""Limit solver (SPEC 2.3): exact fixed point vs the reference code's gridded approach.

    python benchmarks/bench_limit_solver.py [--size N] [--repeats 3]

Inputs (synthetic, the same for both): ``N`` float32 prunable weights (Laplace, as after l1
training) in five Dense kernels, and an SLQ-shaped quadrature (``probes x steps`` Ritz nodes:
a bulk near 0 of both signs plus outliers; Dirichlet weights per probe).

- ``prune_jax``: :func:`prune_jax.limits.predict_sparsity_limit` (one sort, float64
  cumulative squares, quadrature ``F`` on the nodes, integer bisection).
- reference approach, re-implemented naively in numpy: Gaussian-kernel density of the nodes
  on a 100,000-point grid with variance ``1e-10 * range``; ``F`` on that grid for every
  integer ``R = 0..int(sum of per-tensor norms)``; for sparsity ``i/1000`` the removed
  weights' norm ``R`` rounded to an integer, and the grid point where ``|F(R) - s|`` is
  smallest. The reference re-sorts all weights for each of its 1000 levels; here it sorts
  once, so its time is a lower bound.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from prune_jax.limits import predict_sparsity_limit, projected_width_fraction


class Quadrature(NamedTuple):
    nodes: np.ndarray
    weights: np.ndarray
    dim: int


def make_inputs(size: int, probes: int, steps: int, seed: int) -> tuple[dict, Quadrature]:
    rng = np.random.default_rng(seed)
    rows = [size // 5 // 500] * 4
    rows.append(size // 500 - sum(rows))
    params = {f"Dense_{i}": {"kernel": jnp.asarray(rng.laplace(0, 0.02, (r, 500)), jnp.float32),
                             "bias": jnp.zeros(500)} for i, r in enumerate(rows)}
    bulk = rng.normal(0, 1, (probes, steps)) * 10.0 ** rng.uniform(-4, -1, (probes, steps))
    outliers = rng.uniform(1, 40, (probes, steps))
    nodes = np.where(rng.random((probes, steps)) < 0.08, outliers, bulk)
    weights = rng.dirichlet(np.full(steps, 0.3), size=probes)
    return params, Quadrature(np.sort(nodes, axis=1), weights, 500 * sum(rows))


def reference_limit(params: dict, quad: Quadrature, eps: float, grid_points: int = 100_000,
                    levels: int = 1000) -> float:
    """The reference pipeline (density_plot.py + cal_rate.py), naive numpy, one sort."""
    nodes, weights = quad.nodes, quad.weights
    lo, hi = nodes.min(axis=1).mean() - 0.01, nodes.max(axis=1).mean() + 0.01
    grid = np.linspace(lo, hi, grid_points)
    var = 1e-10 * max(1.0, hi - lo)
    density = np.zeros(grid_points)
    for s in range(0, grid_points, 2000):  # kernel sum, chunked over the grid
        diff = grid[s:s + 2000, None, None] - nodes[None]
        kern = np.exp(-diff ** 2 / (2 * var)) / math.sqrt(2 * math.pi * var)
        density[s:s + 2000] = np.sum(kern * weights, axis=2).mean(axis=1)
    density /= density.sum() * (grid[1] - grid[0])
    keep = density > 0
    dens, lam = density[keep], np.abs(grid[keep])
    leaves = [np.asarray(v) for layer in params.values() for v in layer.values()]
    norm_sum = sum(float(np.linalg.norm(x)) for x in leaves)
    gw = np.array([np.sum(dens * (2 * eps / lam) / (r ** 2 + 2 * eps / lam)) / dens.sum()
                   for r in range(int(norm_sum) + 1)])
    mags = np.sort(np.concatenate([np.abs(np.asarray(p["kernel"])).ravel()
                                   for p in params.values()]))
    cum = np.concatenate([[0.0], np.cumsum(mags.astype(np.float64) ** 2)])
    s = np.arange(levels) / levels
    count = np.maximum(np.ceil(s * mags.size).astype(np.int64), 1)
    radius = np.rint(np.sqrt(cum[count])).astype(np.int64)
    return float(np.argmin(np.abs(gw[radius] - s)) / levels)


def grid_only_limit(params: dict, quad: Quadrature, eps: float, levels: int = 1000) -> float:
    """Reference 0.1% grid and integer R, but the exact quadrature F (isolates the grid)."""
    mags = np.sort(np.concatenate([np.abs(np.asarray(p["kernel"])).ravel()
                                   for p in params.values()]))
    cum = np.concatenate([[0.0], np.cumsum(mags.astype(np.float64) ** 2)])
    s = np.arange(levels) / levels
    radius = np.rint(np.sqrt(cum[np.maximum(np.ceil(s * mags.size).astype(np.int64), 1)]))
    return float(np.argmin(np.abs(projected_width_fraction(quad, radius, eps) - s)) / levels)


class Timing(NamedTuple):
    first: float
    median: float
    result: object


def timed(fn, repeats: int) -> Timing:
    times, out = [], None
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return Timing(times[0], float(np.median(times)), out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=25_000_000, help="prunable weights D_p")
    parser.add_argument("--probes", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--eps", type=float, default=1e-2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    params, quad = make_inputs(args.size, args.probes, args.steps, args.seed)
    ours_run = timed(lambda: predict_sparsity_limit(params, quad, args.eps), args.repeats)
    ref_run = timed(lambda: reference_limit(params, quad, args.eps), 1)
    grid_s = grid_only_limit(params, quad, args.eps)
    ours, ours_t, ref, ref_t = ours_run.result, ours_run.median, ref_run.result, ref_run.median

    print(f"D_p = {ours.num_prunable:,} prunable weights, SLQ {args.probes} x {args.steps}, "
          f"eps = {args.eps:g}")
    print(f"{'':34s}{'time [s]':>10s}{'sparsity':>12s}")
    print(f"{'prune_jax (exact fixed point)':34s}{ours_t:10.3f}{ours.sparsity:12.6f}"
          f"   (median of {args.repeats}; first call {ours_run.first:.3f} s)")
    print(f"{'reference approach (numpy)':34s}{ref_t:10.3f}{ref:12.6f}")
    print(f"{'ref. grid + integer R, exact F':34s}{'':10s}{grid_s:12.6f}")
    print(f"speed-up: {ref_t / ours_t:.1f}x; |difference| of the answers: "
          f"{abs(ours.sparsity - ref):.6f} (grid alone: {abs(ours.sparsity - grid_s):.6f})")


if __name__ == "__main__":
    main()
