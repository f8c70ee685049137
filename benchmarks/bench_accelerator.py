"""Accelerator benchmark: ResNet18 curvature at CIFAR-10 scale (one script, one device run).

    python benchmarks/bench_accelerator.py                       # the full run (for a GPU)
    python benchmarks/bench_accelerator.py --quick               # a CPU smoke run (seconds)
    python benchmarks/bench_accelerator.py --json results.json   # also write the figures

Everything runs on ``jax.devices()[0]`` with synthetic CIFAR-shaped data held on the device
(N(0, 1) images, random labels; the curvature cost does not depend on the values), ResNet18
(CIFAR variant, BatchNorm in inference mode, the toolkit's default for curvature), float32.
Four measurements, each printed side by side with its peer from the same run:

1. gradient vs Hessian-vector product at batch ``--batch-size`` (default 512): ``jax.grad``,
   the single product ``hvp_operator(loss, params, batch[None])`` (jvp of grad) and its
   ``linearize=True`` form (tangent pass only); time ratios to the gradient (goal: HVP
   <= 2.5x a gradient), the FLOPs of each program from XLA's cost analysis and the achieved
   FLOP/s (FLOPs / median time);
2. one full-data-set HVP over ``--num-examples`` (default 50,000: 97 batches of 512 plus
   the remainder dropped) with the scanned data-set operator, and SLQ over the full data set
   (``--slq-probes`` x ``--slq-steps``, default 1 x 100): measured wall time, and the
   ratio SLQ / (probes x steps x one full HVP) (the Lanczos overhead). ``--slq-steps 0``
   skips the SLQ run and only projects it from the HVP time;
3. vmap-batched vs sequential probes on a subset of ``--probe-batches`` batches:
   ``slq(..., batch_size=P)`` vs ``slq(..., batch_size=1)`` (``--probe-count`` probes x
   ``--probe-steps`` steps); goal on a GPU: >= 2x throughput;
4. the machine and the software versions.

PyHessian on the same GPU needs a CUDA build of torch on the device machine; that comparison
stays in ``bench_spectrum.py`` (its twin MLP, ``cuda=False`` there). Flags, machine line and
JSON come from ``_harness.py``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import finish, parser, start

from prune_jax.curvature import hvp_operator, slq
from prune_jax.models import get_model, init_variables
from prune_jax.tree import tree_size

HVP_GOAL = 2.5
PROBES_GOAL = 2.0


def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(first call s, median of ``repeats`` further calls s), results blocked on."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return first, float(np.median(times))


def xla_flops(fn: Any, *args: Any) -> float:
    """FLOPs of the compiled program ``fn(*args)`` (XLA cost analysis; NaN if unavailable)."""
    cost = fn.lower(*args).compile().cost_analysis()
    return float(cost.get("flops", float("nan"))) if cost else float("nan")


def make_problem(model_name: str, num_examples: int, batch_size: int,
                 seed: int) -> tuple[Callable[..., jax.Array], Any, Any]:
    """(loss(params, batch), params, batches of shape (num_batches, batch_size, ...))."""
    model = get_model(model_name, num_classes=10)
    variables = init_variables(model, jax.random.key(seed), (32, 32, 3))
    params, stats = variables["params"], variables.get("batch_stats", {})
    num_batches = max(num_examples // batch_size, 1)
    kx, ky = jax.random.split(jax.random.key(seed + 1))
    x = jax.random.normal(kx, (num_batches, batch_size, 32, 32, 3), jnp.float32)
    y = jax.random.randint(ky, (num_batches, batch_size), 0, 10)

    def loss(p: Any, batch: tuple[jax.Array, jax.Array]) -> jax.Array:
        logits = model.apply({"params": p, "batch_stats": stats}, batch[0], train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch[1]).mean()

    return loss, params, (x, y)


def bench_products(loss: Any, params: Any, batches: Any, repeats: int) -> dict[str, Any]:
    """Measurement 1: gradient, single HVP and linearised HVP at one batch."""
    batch = jax.tree.map(lambda a: a[0], batches)
    one = jax.tree.map(lambda a: a[:1], batches)
    v = jax.tree.map(lambda p: jax.random.normal(jax.random.key(3), p.shape, p.dtype), params)
    grad = jax.jit(jax.grad(loss))
    op = hvp_operator(loss, params, one, linearize=False)
    start = time.perf_counter()
    op_lin = jax.block_until_ready(hvp_operator(loss, params, one, linearize=True))
    t_linearize = time.perf_counter() - start
    apply = jax.jit(lambda f, t: f(t))
    out: dict[str, Any] = {"linearize_first_call_s": t_linearize}
    for name, fn, flops in (
            ("grad", lambda: grad(params, batch), xla_flops(grad, params, batch)),
            ("hvp", lambda: apply(op, v), xla_flops(apply, op, v)),
            ("hvp_linearized", lambda: apply(op_lin, v), xla_flops(apply, op_lin, v))):
        first, med = timed(fn, repeats)
        out[name] = {"first_s": first, "median_s": med, "flops": flops,
                     "flop_per_s": flops / med}
    return out


def bench_dataset(loss: Any, params: Any, batches: Any, probes: int, steps: int,
                  repeats: int) -> dict[str, Any]:
    """Measurement 2: one full-data-set HVP, and SLQ over the full data set."""
    op = hvp_operator(loss, params, batches)
    v = jax.tree.map(jnp.ones_like, params)
    apply = jax.jit(lambda f, t: f(t))
    first, med = timed(lambda: apply(op, v), repeats)
    out: dict[str, Any] = {"hvp_first_s": first, "hvp_median_s": med}
    if steps > 0:
        start = time.perf_counter()
        quad = slq(op, params, key=jax.random.key(5), num_probes=probes, num_steps=steps)
        out["slq_s"] = time.perf_counter() - start
        out["slq_top_node"] = float(np.max(quad.nodes))
        out["slq_overhead"] = out["slq_s"] / (probes * steps * med) - 1.0
    out["slq_projected_s"] = probes * steps * med
    return out


def bench_probes(loss: Any, params: Any, batches: Any, count: int, steps: int,
                 repeats: int) -> dict[str, Any]:
    """Measurement 3: vmap-batched vs sequential SLQ probes on a subset of batches."""
    op = hvp_operator(loss, params, batches)
    out: dict[str, Any] = {}
    for name, chunk in (("batched", count), ("sequential", 1)):
        first, med = timed(lambda chunk=chunk: slq(op, params, key=jax.random.key(6),
                                                   num_probes=count, num_steps=steps,
                                                   batch_size=chunk).nodes, repeats)
        out[name] = {"first_s": first, "median_s": med, "probes_per_s": count / med}
    out["batched_over_sequential"] = (out["sequential"]["median_s"]
                                      / out["batched"]["median_s"])
    return out


def main(argv: list[str] | None = None) -> None:
    """Parse flags, run the four measurements, print (and optionally save) the figures."""
    ap = parser(__doc__)
    ap.set_defaults(repeats=5)
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--num-examples", type=int, default=50_000)
    ap.add_argument("--slq-probes", type=int, default=1)
    ap.add_argument("--slq-steps", type=int, default=100)
    ap.add_argument("--probe-batches", type=int, default=2)
    ap.add_argument("--probe-count", type=int, default=4)
    ap.add_argument("--probe-steps", type=int, default=20)
    ap.add_argument("--quick", action="store_true",
                    help="tiny smoke settings (one batch of 8, few steps) for a CPU")
    args = ap.parse_args(argv)
    if args.quick:
        # one batch: XLA:CPU runs convolutions inside a loop (the data-set scan) very slowly
        args.batch_size, args.num_examples, args.slq_steps = 8, 8, 3
        args.probe_batches, args.probe_count, args.probe_steps, args.repeats = 1, 2, 3, 1
    dev = jax.devices()[0]
    record = start(args)

    loss, params, batches = make_problem(args.model, args.num_examples, args.batch_size, 0)
    num_batches = int(batches[0].shape[0])
    print(f"D = {tree_size(params):,} parameters; {num_batches} batches x {args.batch_size} "
          f"= {num_batches * args.batch_size:,} examples on the device")

    prod = bench_products(loss, params, batches, args.repeats)
    g = prod["grad"]["median_s"]
    print(f"\n{'program':<16} {'median ms':>10} {'first ms':>10} {'/ grad':>7} "
          f"{'GFLOP':>8} {'TFLOP/s':>8}")
    for name in ("grad", "hvp", "hvp_linearized"):
        r = prod[name]
        print(f"{name:<16} {1e3 * r['median_s']:>10.2f} {1e3 * r['first_s']:>10.1f} "
              f"{r['median_s'] / g:>7.2f} {r['flops'] / 1e9:>8.1f} "
              f"{r['flop_per_s'] / 1e12:>8.2f}")
    hvp_ratio = prod["hvp"]["median_s"] / g
    print(f"HVP / grad = {hvp_ratio:.2f} (goal <= {HVP_GOAL}: "
          f"{'met' if hvp_ratio <= HVP_GOAL else 'MISSED'}); linearisation (once) "
          f"{prod['linearize_first_call_s']:.2f} s with compilation")

    data = bench_dataset(loss, params, batches, args.slq_probes, args.slq_steps, args.repeats)
    print(f"\nfull-data-set HVP ({num_batches} batches): {data['hvp_median_s']:.3f} s "
          f"(first call {data['hvp_first_s']:.1f} s)")
    if "slq_s" in data:
        print(f"SLQ {args.slq_probes} probe(s) x {args.slq_steps} steps over the full data "
              f"set: {data['slq_s']:.1f} s (= {data['slq_s'] / 60:.1f} min, compilation "
              f"included); Lanczos overhead vs probes x steps x HVP {data['slq_overhead']:+.1%}")
    print(f"projected SLQ from the HVP time: {data['slq_projected_s']:.1f} s")

    subset = jax.tree.map(lambda a: a[:args.probe_batches], batches)
    probes = bench_probes(loss, params, subset, args.probe_count, args.probe_steps,
                          args.repeats)
    ratio = probes["batched_over_sequential"]
    verdict = (f"goal >= {PROBES_GOAL}x: {'met' if ratio >= PROBES_GOAL else 'MISSED'}"
               if dev.platform == "gpu" else f"goal applies on a GPU; here {dev.platform}")
    print(f"\nprobes ({args.probe_count} x {args.probe_steps} steps, {args.probe_batches} "
          f"batches): batched {probes['batched']['probes_per_s']:.3g} probes/s, sequential "
          f"{probes['sequential']['probes_per_s']:.3g} probes/s, ratio {ratio:.2f} ({verdict})")

    record.update(products=prod, dataset=data, probes=probes)
    finish(args, record)


if __name__ == "__main__":
    main()
