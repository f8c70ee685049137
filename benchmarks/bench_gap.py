"""Benchmark: the solvers of the exponential-gap experiment side by side (SPEC 4).

1. Subset sum: the JAX meet-in-the-middle solver (float64, vmapped over a batch of instances)
   against numpy brute force (all 2^n subset sums) on the same instances: time ratio and
   agreement of the optimal residuals.
2. Sup error in d = 2: the exact kink sweep against the maximum over a 2^16-point grid of
   angles: time ratio, and the gap exact - grid (never negative; at most Lipschitz * pi / 2^16),
   and against the grid with every kink angle added (corner maxima lie at kinks).

Run: ``python benchmarks/bench_gap.py`` (CPU, about a minute). Times are medians of repeated
calls after a warm-up call (which compiles); compile times are reported separately.
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

from prune_jax.slth.networks import Net
from prune_jax.slth.subset_sum import subset_sum
from prune_jax.slth.supnorm import sup_error_2d, sup_error_grid_2d

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


def main() -> None:
    console = Console(width=120)
    console.print(f"device: {jax.devices()[0].device_kind}, {os.cpu_count()} CPU cores visible")
    bench_subset_sum(console)
    bench_sup_2d(console)


if __name__ == "__main__":
    main()
