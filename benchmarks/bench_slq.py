"""SLQ wall time vs (probes x steps x one HVP): the Lanczos overhead of prune_jax.

    python benchmarks/bench_slq.py [--sizes 784,128,10] [--batches 8] [--batch-size 256]
                                   [--probes 4] [--steps 50] [--repeats 5]

An MLP (random weights) on a multi-batch synthetic MNIST-shaped data set; the operator is the
exact data-set HVP ``hvp_operator(loss, params, batches)`` (one ``lax.scan`` over the batches),
plain and ``linearize=True``. For each operator form and with / without full
re-orthogonalisation, it times, interleaved in one run (medians, compilation excluded):

* ``HVP``: one product ``op(v)`` (a single vector);
* ``vmapped HVP``: ``probes`` products at once (``jax.vmap`` of the operator, as inside SLQ);
* ``SLQ``: the whole public call ``slq(op, params, key=..., num_probes, num_steps)``, including
  its host-side checks and the float64 ``eigh`` of the tridiagonal matrices.

Overheads reported: ``SLQ / (probes x steps x HVP) - 1`` (the goal: <= 25%; below 0 when the
vmapped products are cheaper per vector than single ones) and
``SLQ / (steps x vmapped HVP) - 1`` (the Lanczos work proper: the three-term recurrence,
re-orthogonalisation against the stored basis, the loop and the host side), and the extra
time of re-orthogonalisation relative to the same SLQ without it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_models import (
    fmt_ms,
    interleaved,
    load_average,
    machine_header,
    make_mlp,
    median,
    print_table,
    synthetic_data,
)

from prune_jax.curvature import hvp_operator, slq
from prune_jax.tree import tree_random_like

GOAL = 0.25


def main(argv: list[str] | None = None) -> None:
    """Parse flags, run the benchmark, print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="784,128,10", help="MLP input,hidden...,classes")
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--probes", type=int, default=4)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--forms", default="plain,linearized", help="operator forms to run")
    args = ap.parse_args(argv)
    print(machine_header())

    sizes = tuple(int(s) for s in args.sizes.split(","))
    twin = make_mlp(sizes)
    nb, bs = args.batches, args.batch_size
    x, y = synthetic_data(nb * bs, (sizes[0],), sizes[-1], seed=1)
    batches = (jnp.asarray(x.reshape(nb, bs, -1)), jnp.asarray(y.reshape(nb, bs)))
    loss, params = twin.jax_loss(), twin.params
    p, m = args.probes, args.steps
    print(f"{twin.name}: D = {twin.num_params:,}; {nb} batches x {bs}; SLQ {p} probes x {m} "
          f"steps")

    v = tree_random_like(jax.random.key(3), params)
    vs = jax.tree.map(lambda a: jnp.stack([a] * p), v)
    key = jax.random.key(0)
    fns: dict[str, Any] = {}
    for form in args.forms.split(","):
        op = hvp_operator(loss, params, batches, linearize=(form == "linearized"))
        vop = jax.jit(jax.vmap(lambda o, t: o(t), in_axes=(None, 0)))
        fns[f"{form}: HVP"] = lambda op=op: op(v)
        fns[f"{form}: vmapped HVP"] = lambda op=op, vop=vop: vop(op, vs)
        for reorth in (True, False):
            fns[f"{form}: SLQ reorth={reorth}"] = (
                lambda op=op, reorth=reorth: slq(op, params, key=key, num_probes=p, num_steps=m,
                                                 reorthogonalize=reorth).nodes)
    load_start = load_average()
    times = interleaved(fns, args.repeats, warmup=1)
    load_end = load_average()

    med = {k: median(t) for k, t in times.items()}
    rows = []
    for form in args.forms.split(","):
        t_hvp, t_vhvp = med[f"{form}: HVP"], med[f"{form}: vmapped HVP"]
        t_plain = med[f"{form}: SLQ reorth=False"]
        for reorth in (True, False):
            t_slq = med[f"{form}: SLQ reorth={reorth}"]
            over = t_slq / (p * m * t_hvp) - 1
            rows.append([form, "yes" if reorth else "no", fmt_ms(t_hvp), fmt_ms(t_vhvp),
                         f"{t_slq:.3f}", f"{p * m * t_hvp:.3f}", f"{over:+.1%}",
                         f"{t_slq / (m * t_vhvp) - 1:+.1%}",
                         f"{t_slq / t_plain - 1:+.1%}" if reorth else "-",
                         f"<= {GOAL:.0%}: {'met' if over <= GOAL else 'MISSED'}"])
    print_table(f"SLQ overhead (medians of {args.repeats} rounds; load {load_start} -> "
                f"{load_end})",
                ["operator", "reorth", "HVP ms", f"vmapped HVP x{p} ms", "SLQ s",
                 "probes x steps x HVP s", "overhead", "vs steps x vmapped HVP",
                 "reorth vs no reorth", "goal"], rows)
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
