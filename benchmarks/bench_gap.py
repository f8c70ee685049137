"""Benchmark: the solvers of the exponential-gap experiment side by side (SPEC 4).

1. Subset sum: the JAX meet-in-the-middle solver (float64, vmapped over a batch of instances)
   against numpy brute force (all 2^n subset sums) on the same instances: time ratio and
   agreement of the optimal residuals.
2. Sup error in d = 2: the exact kink sweep against the maximum over a 2^16-point grid of
   angles: time ratio, and the gap exact - grid (never negative; at most Lipschitz * pi / 2^16),
   and against the grid with every kink angle added (corner maxima lie at kinks).
3. Neuron bounds with the output ReLU, d = 2, on the sweep's pools (seeds 0 and 1 of
   ``prune-jax gap``): the LP bound, the MILP bound and, for N <= 12, brute force over all
   2^N subsets; seconds per call (one call each, after a warm-up call).

Run: ``python benchmarks/bench_gap.py`` (CPU, a few minutes: part 3 spends up to a minute per
MILP at N = 128). Times of parts 1-2 are medians of repeated calls after a warm-up call
(which compiles); compile times are reported separately.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax
import numpy as np
from rich.console import Console
from rich.table import Table

from prune_jax.slth.networks import Net, pool_prefix
from prune_jax.slth.neuron_lp import neuron_lp_bound_output_relu
from prune_jax.slth.neuron_milp import neuron_milp_bound_2d
from prune_jax.slth.neuron_subsets import brute_force_2d
from prune_jax.slth.subset_sum import subset_sum
from prune_jax.slth.supnorm import sup_error_2d, sup_error_grid_2d
from prune_jax.slth.sweep import make_problem

BATCH = 16


def _timed(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, float, Any]:
    """(first-call seconds, median seconds of ``repeats`` further calls, last result)."""
    t0 = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return first, float(np.median(times)), out


def _brute_force(values: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """|best residual| per instance by enumerating all 2^n subset sums (numpy, by doubling)."""
    best = np.empty(len(targets))
    for i, (v, t) in enumerate(zip(values, targets, strict=True)):
        sums = np.zeros(1)
        for item in v:
            sums = np.concatenate([sums, sums + item])
        best[i] = np.min(np.abs(sums - t))
    return best


def bench_subset_sum(console: Console) -> None:
    table = Table(title=f"Subset sum, {BATCH} instances of n items (float64)")
    for col in ("n", "MITM first call (compile) s", "MITM s", "brute force s", "ratio",
                "max |diff| of optimum"):
        table.add_column(col, justify="right")
    rng = np.random.default_rng(0)
    for n in (12, 16, 20, 24, 32, 40):
        values = rng.normal(size=(BATCH, n)) * rng.normal(size=(BATCH, n))
        targets = rng.uniform(-1, 1, size=BATCH)
        first, fast, res = _timed(lambda v=values, t=targets: subset_sum(v, t))
        if n <= 24:
            slow_t0 = time.perf_counter()
            brute = _brute_force(values, targets)
            slow = time.perf_counter() - slow_t0
            diff = np.max(np.abs(np.abs(res.residual) - brute))
            cells = [f"{slow:.3f}", f"{slow / fast:.1f}x", f"{diff:.1e}"]
        else:
            cells = ["-", "-", "- (brute force: 2^n sums)"]
        table.add_row(str(n), f"{first:.2f}", f"{fast:.4f}", *cells)
    console.print(table)


def _grid_with_kinks(w_star: np.ndarray, u: np.ndarray, c: np.ndarray) -> float:
    """numpy: max |f - g| over the 2^16 grid plus every kink angle (where corner maxima lie)."""
    phi = np.arctan2(np.r_[u[:, 1], w_star[1]], np.r_[u[:, 0], w_star[0]])
    theta = np.r_[np.arange(2**16) * (2 * np.pi / 2**16), phi + np.pi / 2, phi - np.pi / 2]
    x = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    r = np.maximum(x @ w_star, 0.0) - np.maximum(x @ u.T, 0.0) @ c
    return float(np.abs(r).max())


def bench_sup_2d(console: Console) -> None:
    table = Table(title="Sup error in d = 2: exact kink sweep vs 2^16-point grid")
    for col in ("N units", "exact s", "grid s", "grid / exact time", "exact - grid",
                "Lipschitz * pi / 2^16", "exact - (grid + kinks)"):
        table.add_column(col, justify="right")
    rng = np.random.default_rng(1)
    w_star = rng.normal(size=2)
    w_star /= np.linalg.norm(w_star)
    for n in (16, 64, 256, 1024):
        u = rng.normal(size=(n, 2))
        c = rng.normal(size=n) * (rng.random(n) < 0.5)
        net = Net(u, c)
        with jax.enable_x64(True):
            _, t_exact, exact = _timed(lambda nt=net: sup_error_2d(w_star, nt))
            _, t_grid, grid = _timed(lambda nt=net: sup_error_grid_2d(w_star, nt))
        gap = float(exact.value) - float(grid.value)
        lipschitz = 1.0 + float(np.abs(c) @ np.linalg.norm(u, axis=1))
        table.add_row(str(n), f"{t_exact:.4f}", f"{t_grid:.4f}", f"{t_grid / t_exact:.1f}x",
                      f"{gap:.2e}", f"{lipschitz * np.pi / 2**16:.2e}",
                      f"{float(exact.value) - _grid_with_kinks(w_star, u, c):.1e}")
    console.print(table)


def _sweep_problem(seed: int, size: int) -> Any:
    """The pool of ``prune-jax gap``'s seed ``seed`` in d = 2 (same key derivation)."""
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(0), 2), seed)
    return make_problem(jax.random.split(key, 5)[0], 2, size)


def bench_neuron_bounds(console: Console) -> None:
    table = Table(title="Neuron pruning of relu(g), d = 2: lower bounds on the best subset's "
                        "sup error (MILP: 6 solves of <= 10 s)")
    for col in ("seed", "N", "LP bound", "LP s", "MILP bound", "MILP s", "MILP exact",
                "best found", "brute force", "MILP / LP"):
        table.add_column(col, justify="right")
    neuron_milp_bound_2d(*_sweep_problem(0, 4), output_relu=True)  # warm-up (compiles)
    for seed in (0, 1):
        problem = _sweep_problem(seed, 128)
        for n in (8, 12, 16, 32, 64, 128):
            pool = pool_prefix(problem.pool, n)
            t0 = time.perf_counter()
            lp = neuron_lp_bound_output_relu(jax.random.key(0), problem.w_star, pool)
            t_lp = time.perf_counter() - t0
            t0 = time.perf_counter()
            milp = neuron_milp_bound_2d(problem.w_star, pool, output_relu=True)
            t_milp = time.perf_counter() - t0
            brute = (f"{brute_force_2d(problem.w_star, pool, True).error:.4g}" if n <= 12
                     else "-")
            table.add_row(str(seed), str(n), f"{lp.lower:.3g}", f"{t_lp:.1f}",
                          f"{milp.lower:.4g}", f"{t_milp:.1f}", "yes" if milp.optimal else "no",
                          f"{milp.subset.error:.4g}", brute, f"{milp.lower / lp.lower:.1f}x")
    console.print(table)


def main() -> None:
    console = Console(width=140)
    console.print(f"device: {jax.devices()[0].device_kind}, {os.cpu_count()} CPU cores visible")
    bench_subset_sum(console)
    bench_sup_2d(console)
    bench_neuron_bounds(console)


if __name__ == "__main__":
    main()
