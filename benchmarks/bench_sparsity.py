"""Sparsity core (SPEC 3.1-3.2): PQ Index and global magnitude masks on N float32 weights.

    python benchmarks/bench_sparsity.py [--size N] [--repeats 11] [--no-sort]

Inputs: ``N`` (default 25,000,000) float32 weights, Laplace-distributed as after l1 training,
in four Dense kernels ``(rows, 500)`` of unequal sizes (a pytree, as the library sees a model;
two leaf sizes are not multiples of 32). Before 2026-12-02 the kernels were ``(rows, 512)``
plus one ``(n, 1)`` leaf: sizes favourable to the fused reductions, and a floor inflated by
about 1.6x by XLA:CPU's slow sum over the ``(n, 1)`` leaf (``RESULTS.md``).

Rows, each against the same arrays:

- floor: a jitted ``sum(|x|)`` over the leaves (one read of the data; the memory-bound floor);
- ``pq_index`` (p, q) = (0.5, 1) and (1, 2): the public function, host checks included;
- numpy PQ Index: the same formula with numpy (max-scaled, float32, per leaf);
- ``magnitude_mask`` at sparsity 0.5, global scope: the public function (exact selection by
  bracket refinement, deterministic ties; ``prune_jax/sparsity/_select.py``), then its jitted
  core alone (``kept_after_removal``: no host-side argument checks; the finiteness flag is
  counted by its first pass), with the number of passes over the weights it made; the same
  at sparsity 0.9 with a current mask (half of the weights already pruned); and at
  ``"layer"`` scope (each leaf one unit);
- the core forced onto the bisection path (the small-unit algorithm, 31+ counting passes;
  one timed run), for reference;
- numpy magnitude mask: ``np.argpartition`` over the concatenated magnitudes (introselect;
  exact count, ties in no particular order), global and per leaf;
- jitted ``jnp.sort`` mask: the obvious full-sort approach in JAX (``--no-sort`` skips it).

Each row prints the median wall time over ``--repeats`` runs after one warm-up call (the
compilation; its time is printed for ``magnitude_mask``), its ratio to the floor and to the
numpy version of the same computation. Every JAX row is timed alternately with the floor
(``paired``), and its ratio is taken to that floor's median: separately timed rows drifted
by up to 30% with the machine's load. The load average is printed at start and end.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from prune_jax.sparsity import magnitude_mask, pq_index
from prune_jax.sparsity._select import Refinement, kept_after_removal, refine_cut


def make_params(size: int, seed: int) -> dict:
    """Four Dense kernels ``(rows, 500)`` holding 45/30/20/5 % of ``size`` (rounded down to
    a multiple of 500) Laplace weights. Fan-out 500 is not a multiple of 32, and two of the
    four leaf sizes are not either: the fused reductions must handle tails without copies."""
    rng = np.random.default_rng(seed)
    rows = size // 500
    parts = [int(rows * f) for f in (0.45, 0.3, 0.2)]
    parts.append(rows - sum(parts))
    return {f"Dense_{i}": {"kernel": jnp.asarray(
        rng.laplace(0.0, 0.02, (r, 500)).astype(np.float32))} for i, r in enumerate(parts)}


def timed(fn: Callable[[], Any], repeats: int) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    return paired(fn, None, repeats)[0]


def paired(fn: Callable[[], Any], floor: Callable[[], Any] | None, repeats: int
           ) -> tuple[float, float]:
    """Median seconds of ``fn`` and of ``floor`` over ``repeats`` alternating calls, after
    one warm-up call of each: both medians come from the same stretch of machine load, so
    their ratio is steadier than a ratio of separately timed rows. ``floor=None``: ``fn``
    alone (the second median is NaN)."""
    calls = [fn] if floor is None else [fn, floor]
    for call in calls:
        jax.block_until_ready(call())
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, out in zip(calls, times, strict=True):
            start = time.perf_counter()
            jax.block_until_ready(call())
            out.append(time.perf_counter() - start)
    medians = [float(np.median(t)) for t in times]
    return medians[0], (medians[1] if floor is not None else float("nan"))


def numpy_pq_index(leaves: list[np.ndarray], p: float, q: float) -> float:
    top = max(float(np.max(np.abs(x))) for x in leaves)
    d = sum(x.size for x in leaves)
    s_p = sum(float(np.sum((np.abs(x) / top) ** p)) for x in leaves)
    s_q = sum(float(np.sum((np.abs(x) / top) ** q)) for x in leaves)
    return 1.0 - np.exp(np.log(s_p / d) / p - np.log(s_q / d) / q)


def numpy_mask(leaves: list[np.ndarray], sparsity: float) -> list[np.ndarray]:
    mags = np.concatenate([np.abs(x).ravel() for x in leaves])
    k = int(np.floor(sparsity * mags.size))
    keep = np.ones(mags.size, bool)
    keep[np.argpartition(mags, k)[:k]] = False
    return np.split(keep, np.cumsum([x.size for x in leaves])[:-1])


def numpy_layer_mask(leaves: list[np.ndarray], sparsity: float) -> list[np.ndarray]:
    return [numpy_mask([x], sparsity)[0] for x in leaves]


def numpy_masked_mask(leaves: list[np.ndarray], live: list[np.ndarray], sparsity: float
                      ) -> list[np.ndarray]:
    """Global mask with a current mask: pruned entries rank first (magnitude -1)."""
    mags = np.concatenate([np.where(m, np.abs(x), -1.0).ravel()
                           for x, m in zip(leaves, live, strict=True)])
    k = max(int(np.floor(sparsity * mags.size)), int((mags < 0).sum()))
    keep = np.ones(mags.size, bool)
    keep[np.argpartition(mags, k)[:k]] = False
    return np.split(keep, np.cumsum([x.size for x in leaves])[:-1])


def first_call(fn: Callable[[], Any]) -> float:
    """Seconds of one call (the first one: compilation included)."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    return time.perf_counter() - start


@partial(jax.jit, static_argnames="k")
def sort_mask(leaves: list[jax.Array], k: int) -> list[jax.Array]:
    mags = jnp.concatenate([jnp.abs(x).ravel() for x in leaves])
    order = jnp.argsort(mags, stable=True)
    keep = jnp.ones(mags.size, bool).at[order[:k]].set(False)
    return jnp.split(keep, np.cumsum([x.size for x in leaves])[:-1])


@jax.jit
def floor_sum(leaves: list[jax.Array]) -> jax.Array:
    return sum(jnp.sum(jnp.abs(x)) for x in leaves)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=25_000_000)
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--no-sort", action="store_true", help="skip the jnp.sort row")
    args = parser.parse_args()

    params = make_params(args.size, seed=0)
    leaves = jax.tree.leaves(params)
    host = [np.asarray(x) for x in leaves]
    n = sum(x.size for x in leaves)
    print(f"{n:,} float32 weights in {len(leaves)} leaves; backend {jax.default_backend()}, "
          f"{jax.device_count()} device(s); load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    def floor() -> jax.Array:
        return floor_sum(leaves)

    def vs_floor(fn: Callable[[], Any], repeats: int = args.repeats) -> tuple[float, float]:
        """(median seconds, ratio to the floor timed alternately with it)."""
        got, base = paired(fn, floor, repeats)
        return got, got / base

    floor_s = timed(floor, args.repeats)
    # name, median seconds, ratio to the paired floor (None: not a JAX row), numpy seconds
    rows: list[tuple[str, float, float | None, float | None]] = [
        ("floor: jit sum(|x|)", floor_s, 1.0, None)]
    for p, q in ((0.5, 1.0), (1.0, 2.0)):
        ref = timed(lambda p=p, q=q: numpy_pq_index(host, p, q), args.repeats)
        got = vs_floor(lambda p=p, q=q: pq_index(params, p, q))
        np.testing.assert_allclose(float(pq_index(params, p, q)), numpy_pq_index(host, p, q),
                                   rtol=1e-4)
        rows += [(f"pq_index p={p} q={q}", *got, ref), (f"  numpy p={p} q={q}", ref, None, None)]

    sparsity = 0.5
    k = int(np.floor(sparsity * n))
    compile_s = first_call(lambda: magnitude_mask(params, sparsity))
    ref = ref_global = timed(lambda: numpy_mask(host, sparsity), max(1, args.repeats // 2))
    got = vs_floor(lambda: magnitude_mask(params, sparsity))
    kept = sum(int(np.sum(m)) for m in jax.tree.leaves(magnitude_mask(params, sparsity)))
    assert kept == n - k, kept
    at_least = [jnp.full((1,), k, jnp.int32)] * len(leaves)
    extra = [jnp.zeros((1,), jnp.int32)] * len(leaves)
    core = vs_floor(lambda: kept_after_removal(leaves, None, at_least, extra, scope="global"))
    flat = [x.reshape(-1) for x in leaves]
    passes = int(refine_cut(flat, None, jnp.int32(k), float_dtype=jnp.float32)[2])
    bisect = vs_floor(lambda: kept_after_removal(leaves, None, at_least, extra, scope="global",
                                                 config=Refinement(fast_min=2**31)), 1)
    rows += [("magnitude_mask global s=0.5", *got, ref),
             (f"  core only ({passes} passes)", *core, ref),
             ("  core on the bisection path", *bisect, ref),
             ("  numpy argpartition", ref, None, None)]

    rng = np.random.default_rng(1)
    mask = jax.tree.map(lambda x: jnp.asarray(rng.uniform(size=x.shape) < 0.5), params)
    host_live = [np.asarray(m) for m in jax.tree.leaves(mask)]
    ref = timed(lambda: numpy_masked_mask(host, host_live, 0.9), max(1, args.repeats // 2))
    got = vs_floor(lambda: magnitude_mask(params, 0.9, mask=mask))
    rows += [("magnitude_mask global s=0.9, mask", *got, ref),
             ("  numpy argpartition", ref, None, None)]

    ref = timed(lambda: numpy_layer_mask(host, sparsity), max(1, args.repeats // 2))
    got = vs_floor(lambda: magnitude_mask(params, sparsity, scope="layer"))
    rows += [("magnitude_mask layer s=0.5", *got, ref),
             ("  numpy argpartition per leaf", ref, None, None)]
    if not args.no_sort:
        rows.append(("  jit jnp.argsort mask (global)", *vs_floor(lambda: sort_mask(leaves, k), 1),
                     ref_global))

    print(f"\n{'computation':38s} {'median ms':>10s} {'x floor':>9s} {'x numpy':>9s}")
    for name, seconds, ratio, numpy_seconds in rows:
        vs_numpy = f"{seconds / numpy_seconds:9.2f}" if numpy_seconds else f"{'':9s}"
        vs = f"{ratio:9.2f}" if ratio is not None else f"{seconds / floor_s:9.1f}"
        print(f"{name:38s} {seconds * 1e3:10.1f} {vs} {vs_numpy}")
    print(f"\nx floor: each JAX row's median over the floor's median, the two timed "
          f"alternately in that row; numpy rows over the first floor row.\n"
          f"first magnitude_mask call (compilation included): {compile_s:.1f} s; floor "
          f"again {timed(floor, args.repeats) * 1e3:.1f} ms; load average "
          f"at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
