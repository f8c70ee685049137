"""Sparsity core (SPEC 3.1-3.2) as a user meets it: first call in a fresh process, then steady.

    python benchmarks/bench_sparsity.py [--sizes 8000000 25000000] [--repeats 7]

Inputs: ``N`` float32 weights, Laplace-distributed as after l1 training, in four Dense kernels
``(rows, 500)`` holding 45/30/20/5 % of them, plus their biases (a pytree, as the library sees
a model). Every row runs in its own fresh Python process (``subprocess``): it imports the
library, builds the arrays (``jax.Array``, on the default device), then times

- *first*: the first call, compilation and any one-time set-up included;
- *steady*: the median of ``--repeats`` further calls (each ends in ``block_until_ready``).

Each prune_jax row is printed beside a numpy peer measured the same way in the same run:

- masks: ``np.argpartition`` of the concatenated magnitudes (global) or of each leaf (layer):
  exactly ``floor(s * m)`` removed, but ties in no particular order (``magnitude_mask`` also
  fixes the ties by flat index); with a current mask, pruned entries get magnitude -1;
- ``pq_index``: numpy power sums of ``|w| / max |w|`` per leaf (float32), then the formula.

The ratios are prune_jax over numpy (below 1: faster than numpy). Load average (``uptime``)
is printed at the start and the end: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

CASES = ["mask global", "mask layer", "mask global, half pruned", "pq_index (0.5, 1)",
         "pq_index (1, 2)"]


def make_params(size: int, seed: int = 0) -> dict:
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = size // 500
    parts = [int(rows * f) for f in (0.45, 0.3, 0.2)]
    parts.append(rows - sum(parts))
    return {f"Dense_{i}": {"kernel": jnp.asarray(rng.laplace(0.0, 0.02, (r, 500))
                                                 .astype(np.float32)),
                           "bias": jnp.zeros(500, jnp.float32)} for i, r in enumerate(parts)}


def numpy_mask(kernels: list[Any], sparsity: float, live: list[Any] | None = None) -> list[Any]:
    import numpy as np

    mags = np.concatenate([np.abs(x).ravel() for x in kernels])
    if live is not None:
        mags[~np.concatenate([m.ravel() for m in live])] = -1.0
    k = max(int(np.floor(sparsity * mags.size)), int((mags < 0).sum()))
    keep = np.ones(mags.size, bool)
    keep[np.argpartition(mags, k)[:k]] = False
    return np.split(keep, np.cumsum([x.size for x in kernels])[:-1])


def numpy_pq_index(leaves: list[Any], p: float, q: float) -> float:
    import numpy as np

    top = max(float(np.max(np.abs(x))) for x in leaves)
    d = sum(x.size for x in leaves)
    s_p = sum(float(np.sum((np.abs(x) / top) ** p)) for x in leaves)
    s_q = sum(float(np.sum((np.abs(x) / top) ** q)) for x in leaves)
    return 1.0 - float(np.exp(np.log(s_p / d) / p - np.log(s_q / d) / q))


def calls(case: str, size: int) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """``(prune_jax call, numpy peer)`` for ``case`` on fresh arrays of ``size`` weights."""
    import jax
    import numpy as np

    import prune_jax as pj

    params = jax.block_until_ready(make_params(size))
    kernels = [params[k]["kernel"] for k in params]
    live = {k: {"kernel": np.random.default_rng(1).uniform(size=v["kernel"].shape) < 0.5,
                "bias": np.ones(500, bool)} for k, v in params.items()}
    host = [np.asarray(x) for x in jax.tree.leaves(params)]
    kernels_np = [np.asarray(x) for x in kernels]
    live_np = [live[k]["kernel"] for k in params]
    return {
        "mask global": (lambda: pj.magnitude_mask(params, 0.5),
                        lambda: numpy_mask(kernels_np, 0.5)),
        "mask layer": (lambda: pj.magnitude_mask(params, 0.5, scope="layer"),
                       lambda: [numpy_mask([x], 0.5)[0] for x in kernels_np]),
        "mask global, half pruned": (lambda: pj.magnitude_mask(params, 0.9, mask=live),
                                     lambda: numpy_mask(kernels_np, 0.9, live_np)),
        "pq_index (0.5, 1)": (lambda: pj.pq_index(params, 0.5, 1.0),
                              lambda: numpy_pq_index(host, 0.5, 1.0)),
        "pq_index (1, 2)": (lambda: pj.pq_index(params, 1.0, 2.0),
                            lambda: numpy_pq_index(host, 1.0, 2.0)),
    }[case]


def child(case: str, which: str, size: int, repeats: int) -> None:
    """One row in this (fresh) process: print ``{"import", "first", "steady"}`` as JSON."""
    start = time.perf_counter()
    import jax

    import prune_jax  # noqa: F401
    imported = time.perf_counter() - start
    fn = calls(case, size)[which == "numpy"]
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({"import": imported, "first": first, "steady": times[len(times) // 2]}))


def run(case: str, which: str, size: int, repeats: int) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--child", case, which, str(size), str(repeats)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, case, which, size, repeats = sys.argv
        child(case, which, int(size), int(repeats))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8_000_000, 25_000_000])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    header = (f"{'N':>11s}  {'computation':26s} {'first ms':>9s} {'numpy':>8s} {'ratio':>6s}"
              f" {'steady ms':>10s} {'numpy':>8s} {'ratio':>6s}")
    print(header)
    for size in args.sizes:
        for case in CASES:
            ours, peer = (run(case, w, size, args.repeats) for w in ("prune_jax", "numpy"))
            print(f"{size:11,d}  {case:26s} {ours['first'] * 1e3:9.0f} {peer['first'] * 1e3:8.0f}"
                  f" {ours['first'] / peer['first']:6.2f} {ours['steady'] * 1e3:10.1f}"
                  f" {peer['steady'] * 1e3:8.1f} {ours['steady'] / peer['steady']:6.2f}",
                  flush=True)
    print(f"first: one call in a fresh process (compilation included; the import of jax and "
          f"prune_jax, about {ours['import']:.1f} s, excluded); steady: median of "
          f"{args.repeats} more calls.\nload average at end "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
