"""vmap-batched SLQ probes vs sequential single-probe Lanczos runs (probe throughput).

    python benchmarks/bench_probes.py [--models 64-32-10,784-128-10] [--probes 8]
                                      [--steps 30] [--batches 2] [--batch-size 256]
                                      [--repeats 5]

For small MLPs (random weights, synthetic data, data-set operator ``hvp_operator(loss,
params, batches)``), the same work, ``probes`` Rademacher probes x ``steps`` re-orthogonalised
Lanczos steps followed by the float64 eigen-decomposition of each ``T``, done two ways:

* batched: one ``slq(op, params, key=..., num_probes=probes, num_steps=steps,
  batch_size=probes)`` call (all probes vmapped inside one compiled program);
* in-program sequence: ``slq(..., batch_size=1)`` (one compiled program, probes one after the
  other in a ``lax.map`` without ``vmap``: slq's default on CPU);
* sequential: a Python loop of ``probes`` calls of ``lanczos(op, z_l, steps)`` (one compiled
  program, reused for every probe) and ``tridiagonal_eigh``.

Prints probes/s for all three and the ratios batched / sequential and batched / in-program
sequence. The goal (>= 2x) is stated
for a GPU, where one probe cannot fill the device; on a CPU the ratio mostly reflects the
better arithmetic intensity of matrix-matrix products. Nothing here is device-specific: the
script runs on whatever ``jax.devices()[0]`` is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as H
from _bench_models import make_mlp, synthetic_data

from prune_jax.curvature import hvp_operator, lanczos, slq, tridiagonal_eigh
from prune_jax.tree import tree_random_like

GOAL_GPU = 2.0


def bench(sizes: tuple[int, ...], probes: int, steps: int, nb: int, bs: int,
          repeats: int) -> dict[str, Any]:
    """Times of the batched and sequential forms on one MLP; and a consistency check."""
    twin = make_mlp(sizes)
    x, y = synthetic_data(nb * bs, (sizes[0],), sizes[-1], seed=1)
    batches = (jnp.asarray(x.reshape(nb, bs, -1)), jnp.asarray(y.reshape(nb, bs)))
    params = twin.params
    op = hvp_operator(twin.jax_loss(), params, batches)
    key = jax.random.key(0)
    probe_keys = jax.random.split(key, probes)
    zs = [tree_random_like(k, params) for k in probe_keys]

    def batched() -> np.ndarray:
        return slq(op, params, key=key, num_probes=probes, num_steps=steps,
                   batch_size=probes).nodes

    def mapped() -> np.ndarray:
        return slq(op, params, key=key, num_probes=probes, num_steps=steps,
                   batch_size=1).nodes

    def sequential() -> np.ndarray:
        nodes = []
        for z in zs:
            res = lanczos(op, z, steps)
            nodes.append(tridiagonal_eigh(res.alphas, res.betas).values)
        return np.stack(nodes)

    top_b, top_s = float(np.max(batched())), float(np.max(sequential()))
    times = H.interleaved({"batched": batched, "mapped": mapped, "sequential": sequential},
                        repeats, warmup=1)
    return {"name": twin.name, "dim": twin.num_params, "times": times,
            "top": (top_b, top_s)}


def main(argv: list[str] | None = None) -> None:
    """Parse flags, run the benchmark, print the table."""
    ap = H.parser(__doc__)
    ap.set_defaults(repeats=5)
    ap.add_argument("--models", default="64-32-10,784-128-10",
                    help="comma-separated MLP sizes, layers joined by '-'")
    ap.add_argument("--probes", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batches", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    args = ap.parse_args(argv)
    record = H.start(args)
    rows = []
    load_start = H.load_average()
    for spec in args.models.split(","):
        sizes = tuple(int(s) for s in spec.split("-"))
        res = bench(sizes, args.probes, args.steps, args.batches, args.batch_size, args.repeats)
        t = res["times"]
        tb, tm, ts = H.median(t["batched"]), H.median(t["mapped"]), H.median(t["sequential"])
        ratio = H.paired_ratio(t["sequential"], t["batched"])
        ratio_m = H.paired_ratio(t["mapped"], t["batched"])
        rows.append([res["name"], f"{res['dim']:,}", f"{args.probes / tb:.3g}",
                     f"{args.probes / tm:.3g}", f"{args.probes / ts:.3g}", f"{ratio:.2f}",
                     f"{ratio_m:.2f}", f"{res['top'][0]:.5g} / {res['top'][1]:.5g}"])
    device = jax.devices()[0]
    H.print_table(f"probe throughput on {device.platform} ({device.device_kind}); "
                  f"{args.probes} probes x {args.steps} steps, {args.batches} batches x "
                  f"{args.batch_size}; medians of {args.repeats} rounds; load {load_start} -> "
                  f"{H.load_average()}",
                  ["model", "D", "batched probes/s", "in-program sequence probes/s",
                   "sequential probes/s", "batched / sequential", "batched / in-program",
                   "largest node batched / sequential"], rows)
    print(f"goal >= {GOAL_GPU}x applies on a GPU; on {device.platform} this is a report only.")
    record["rows"] = rows
    H.finish(args, record)


if __name__ == "__main__":
    main()
