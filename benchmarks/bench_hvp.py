"""Hessian-vector products: HVP time / gradient time, and prune_jax vs torch double backward.

    python benchmarks/bench_hvp.py [--threads N] [--repeats 30] [--budget 30]
                                   [--mlp-batch 256] [--cnn-batch 128] [--models mlp,cnn]

Two models on random data of fixed shapes (the same weights and data in JAX and torch):

* MLP 784-512-256-10 (535,818 parameters), batch 256 of MNIST-shaped vectors;
* CNN ``[Conv3x3-BN-ReLU-MaxPool] x2, Conv3x3-BN-ReLU, GAP, Dense`` (32-64-128 channels,
  94,762 parameters) with BatchNorm in inference mode, batch 128 of CIFAR-shaped images.

Contenders, timed interleaved in one run (medians of ``--repeats`` rounds, after warm-up; a
contender whose samples exceed ``--budget`` seconds stops after 2 samples):

* ``jax grad``: ``jax.jit(jax.grad(loss))(params, batch)``;
* ``prune_jax hvp``: the public single product ``hvp(loss_on_batch, params, v)`` (``hvp``
  takes no batch argument, so the one-batch loss closes over the batch; one closure, compiled
  once), forward-over-reverse ``jvp`` of ``grad``, with its per-call argument checks;
* ``prune_jax hvp_operator``: one product of ``hvp_operator(loss, params, batch[None])``, the
  documented one-batch form (the batch is a jit argument; a ``lax.scan`` over one batch);
* ``prune_jax hvp_operator amortised``: ``hvp_operator(..., linearize=True)``: the gradient is
  linearised once (its one-off cost is printed) and each product runs only the tangent pass,
  as inside Lanczos / Hutchinson;
* ``inline jvp(grad)`` / ``inline linearized``: the same two computations written inline with
  ``jax.jvp`` / ``jax.linearize`` (parameters and batch as jit arguments, no ``lax.scan``),
  as references for the toolkit's overhead;
* ``torch grad``: ``torch.autograd.grad(loss, params)``;
* ``torch HVP``: PyHessian's double backward from scratch: ``grads = autograd.grad(loss, params,
  create_graph=True)`` then ``autograd.grad(grads, params, grad_outputs=v)``;
* ``torch HVP amortised``: PyHessian's single-batch form: ``grads`` built once with
  ``create_graph=True``, each product ``autograd.grad(grads, params, grad_outputs=v,
  retain_graph=True)`` (only the second backward pass).

Threads: by default XLA's CPU backend and torch both use all cores; ``--threads N`` gives
both N threads (see ``_harness.configure_threads``). The products of all forms are
checked against torch's (max |a - b| / max |b| is printed).
Goals (CPU): HVP/grad <= 1.6 (MLP), <= 2.0 (CNN); amortised HVP/grad <= 1.25 (MLP);
torch/prune_jax >= 1.3 (single product) and >= 1.6 (amortised).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from jax.tree_util import Partial

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_models import (
    Twin,
    make_cnn,
    make_mlp,
    max_rel_diff,
    synthetic_data,
    torch_grad,
    torch_hvp,
    torch_hvp_amortised,
)
from _harness import (
    finish,
    fmt_ms,
    interleaved,
    load_average,
    median,
    paired_ratio,
    parser,
    print_table,
    start,
)

from prune_jax.curvature import hvp, hvp_operator

GOALS = {"MLP": (1.6, 1.25), "CNN": (2.0, None)}
TORCH_GOALS = (1.3, 1.6)


def bench_model(twin: Twin, batch_size: int, repeats: int, budget_s: float) -> dict[str, Any]:
    """Time all contenders on one twin; return raw times, agreement and one-off costs."""
    x, y = synthetic_data(batch_size, twin.input_shape, twin.num_classes, seed=1)
    loss = twin.jax_loss()
    batch = (jnp.asarray(x), jnp.asarray(y))
    batches = jax.tree.map(lambda a: a[None], batch)
    params = twin.params
    keys = jax.random.split(jax.random.key(7), len(jax.tree.leaves(params)))
    v = jax.tree.unflatten(jax.tree.structure(params), [
        jax.random.normal(k, p.shape, p.dtype) for k, p in zip(keys, jax.tree.leaves(params),
                                                               strict=True)])

    grad_fn = jax.jit(jax.grad(loss))
    loss_on_batch = lambda p: loss(p, batch)  # one object: hvp compiles once per loss_fn
    op = hvp_operator(loss, params, batches)
    one_off: dict[str, float] = {}
    for name, make in (("hvp_operator(linearize=True)",
                        lambda: hvp_operator(loss, params, batches, linearize=True)),
                       ("jax.linearize inline", lambda: lin_inline(loss, params, batch))):
        start = time.perf_counter()
        jax.block_until_ready(make())
        one_off[name + " first call"] = time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready(make())
        one_off[name] = time.perf_counter() - start

    @jax.jit
    def raw_hvp(p: Any, b: Any, t: Any) -> Any:
        return jax.jvp(lambda q: jax.grad(loss)(q, b), (p,), (t,))[1]

    op_lin = hvp_operator(loss, params, batches, linearize=True)
    f_lin = lin_inline(loss, params, batch)

    xt, yt = twin.torch_batch(x, y)
    vt = twin.to_torch(v)
    torch_amort = torch_hvp_amortised(twin, xt, yt)

    hv_torch = twin.from_torch(torch_hvp(twin, xt, yt, vt))
    agree = {
        "hvp": max_rel_diff(hvp(loss_on_batch, params, v), hv_torch),
        "hvp_operator": max_rel_diff(op(v), hv_torch),
        "linearized": max_rel_diff(op_lin(v), hv_torch),
        "torch amortised": max_rel_diff(twin.from_torch(torch_amort(vt)), hv_torch),
        "grad": max_rel_diff(grad_fn(params, batch), twin.from_torch(torch_grad(twin, xt, yt))),
    }

    fns = {
        "jax grad": lambda: grad_fn(params, batch),
        "prune_jax hvp": lambda: hvp(loss_on_batch, params, v),
        "prune_jax hvp_operator": lambda: op(v),
        "prune_jax hvp_operator amortised": lambda: op_lin(v),
        "inline jvp(grad)": lambda: raw_hvp(params, batch, v),
        "inline linearized": lambda: apply_linear(f_lin, v),
        "torch grad": lambda: torch_grad(twin, xt, yt),
        "torch HVP": lambda: torch_hvp(twin, xt, yt, vt),
        "torch HVP amortised": lambda: torch_amort(vt),
    }
    flops = {
        "grad": xla_flops(grad_fn, params, batch),
        "hvp": xla_flops(raw_hvp, params, batch, v),
        "tangent": xla_flops(apply_linear, f_lin, v),
    }
    load_before = load_average()
    times = interleaved(fns, repeats, warmup=1, budget_s=budget_s)
    return {"times": times, "agree": agree, "one_off": one_off, "flops": flops,
            "load": (load_before, load_average())}


def xla_flops(fn: Any, *args: Any) -> float:
    """Floating-point operations of ``fn(*args)`` by XLA's cost analysis of the compiled program
    (the arithmetic a time ratio cannot beat when both programs run at the same efficiency)."""
    return float(fn.lower(*args).compile().cost_analysis()["flops"])


@jax.jit(static_argnums=0)
def lin_inline(loss: Any, params: Any, batch: Any) -> Partial:
    """``jax.linearize`` of the gradient at ``params`` (inline reference, no ``lax.scan``)."""
    return jax.linearize(lambda p: jax.grad(loss)(p, batch), params)[1]


@jax.jit
def apply_linear(f_jvp: Partial, v: Any) -> Any:
    """Apply a linearised gradient (tangent pass only)."""
    return f_jvp(v)


def report(twin: Twin, batch_size: int, res: dict[str, Any]) -> list[str]:
    """Print the tables of one model; return one-line goal verdicts."""
    t = res["times"]
    kind = "MLP" if twin.name.startswith("MLP") else "CNN"
    rows = [[k, fmt_ms(median(v)), fmt_ms(min(v)), len(v)] for k, v in t.items()]
    print_table(f"{twin.name} ({twin.num_params:,} params), batch {batch_size}; load "
                f"{res['load'][0]} -> {res['load'][1]}",
                ["contender", "median ms", "min ms", "samples"], rows)
    print("one-off linearisation: " + ", ".join(f"{k} {fmt_ms(s)} ms"
                                                for k, s in res["one_off"].items()))
    single, amort = GOALS[kind]

    def verdict(value: float, goal: float | None, upper: bool) -> str:
        if goal is None:
            return "-"
        ok = value <= goal if upper else value >= goal
        return f"{'<=' if upper else '>='} {goal}: {'met' if ok else 'MISSED'}"

    r = lambda a, b: paired_ratio(t[a], t[b])
    specs = [
        ("prune_jax hvp / jax grad", r("prune_jax hvp", "jax grad"), single, True),
        ("prune_jax hvp_operator / jax grad", r("prune_jax hvp_operator", "jax grad"), single,
         True),
        ("prune_jax amortised / jax grad", r("prune_jax hvp_operator amortised", "jax grad"),
         amort, True),
        ("inline jvp(grad) / jax grad", r("inline jvp(grad)", "jax grad"), None, True),
        ("inline linearized / jax grad", r("inline linearized", "jax grad"), None, True),
        ("torch HVP / torch grad", r("torch HVP", "torch grad"), None, True),
        ("torch amortised / torch grad", r("torch HVP amortised", "torch grad"), None, True),
        ("torch grad / jax grad", r("torch grad", "jax grad"), None, True),
        ("speed-up: torch HVP / prune_jax hvp", r("torch HVP", "prune_jax hvp"),
         TORCH_GOALS[0], False),
        ("speed-up: torch HVP / prune_jax hvp_operator", r("torch HVP", "prune_jax hvp_operator"),
         TORCH_GOALS[0], False),
        ("speed-up: torch amortised / prune_jax amortised",
         r("torch HVP amortised", "prune_jax hvp_operator amortised"), TORCH_GOALS[1], False),
        ("speed-up: torch amortised / inline linearized",
         r("torch HVP amortised", "inline linearized"), None, False),
    ]
    ratio_rows = [[name, f"{value:.3f}", verdict(value, goal, upper)]
                  for name, value, goal, upper in specs]
    print_table(f"{twin.name}: ratios (median of per-round ratios)", ["ratio", "value", "goal"],
                ratio_rows)
    print("agreement with torch double backward (max |a-b| / max |b|): " + ", ".join(
        f"{k} {v:.1e}" for k, v in res["agree"].items()))
    f = res["flops"]
    print(f"arithmetic (XLA cost analysis): grad {f['grad'] / 1e6:.1f} MFLOP, jvp(grad) "
          f"{f['hvp'] / 1e6:.1f} MFLOP ({f['hvp'] / f['grad']:.3f}x grad), linearized tangent "
          f"{f['tangent'] / 1e6:.1f} MFLOP ({f['tangent'] / f['grad']:.3f}x grad)")
    return [f"{kind}: {row[0]} = {row[1]} ({row[2]})" for row in ratio_rows if row[2] != "-"]


def main(argv: list[str] | None = None) -> None:
    """Parse flags, run the benchmark, print tables."""
    ap = parser(__doc__)
    ap.set_defaults(repeats=30)
    ap.add_argument("--budget", type=float, default=30.0,
                    help="seconds of timed calls after which a (slow) contender stops")
    ap.add_argument("--mlp-batch", type=int, default=256)
    ap.add_argument("--cnn-batch", type=int, default=128)
    ap.add_argument("--mlp-sizes", default="784,512,256,10", help="input,hidden...,classes")
    ap.add_argument("--cnn-channels", default="32,64,128")
    ap.add_argument("--models", default="mlp,cnn", help="comma-separated subset of mlp,cnn")
    ap.add_argument("--activation", default="relu", choices=("relu", "tanh"), help="MLP")
    args = ap.parse_args(argv)
    record = start(args)
    verdicts: list[str] = []
    models = args.models.split(",")
    twins = []
    if "mlp" in models:
        twins.append((make_mlp(tuple(int(s) for s in args.mlp_sizes.split(",")),
                               activation=args.activation), args.mlp_batch))
    if "cnn" in models:
        twins.append((make_cnn(tuple(int(s) for s in args.cnn_channels.split(","))),
                      args.cnn_batch))
    for twin, batch_size in twins:
        res = bench_model(twin, batch_size, args.repeats, args.budget)
        verdicts += report(twin, batch_size, res)
    print("\nGoals:\n  " + "\n  ".join(verdicts))
    record["verdicts"] = verdicts
    finish(args, record)


if __name__ == "__main__":
    main()
