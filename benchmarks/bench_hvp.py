"""Hessian-vector products: HVP time / gradient time, and prune_jax vs torch double backward.

    python benchmarks/bench_hvp.py [--repeats 30] [--mlp-batch 256] [--cnn-batch 128]
                                   [--models mlp,cnn]

Two models on random data of fixed shapes (the same weights and data in JAX and torch):

* MLP 784-512-256-10 (535,818 parameters), batch 256 of MNIST-shaped vectors;
* CNN ``[Conv3x3-BN-ReLU-MaxPool] x2, Conv3x3-BN-ReLU, GAP, Dense`` (32-64-128 channels,
  94,762 parameters) with BatchNorm in inference mode, batch 128 of CIFAR-shaped images.

Contenders, timed interleaved in one run (medians of ``--repeats`` rounds, after warm-up):

* ``jax grad``: ``jax.jit(jax.grad(loss))(params, batch)``;
* ``prune_jax HVP``: one product of ``hvp_operator(loss, params, batch[None])`` (forward-over-
  reverse ``jvp`` of ``grad``: every product redoes the forward and backward pass);
* ``prune_jax HVP amortised``: ``hvp_operator(..., linearize=True)``: the gradient is
  linearised once (not timed per product; its one-off cost is printed) and each product runs
  only the tangent pass, as inside Lanczos / Hutchinson;
* ``raw jax HVP``: an inline ``jax.jit`` of ``jax.jvp(jax.grad(...))`` (toolkit overhead check);
* ``torch grad``: ``torch.autograd.grad(loss, params)``;
* ``torch HVP``: PyHessian's double backward from scratch: ``grads = autograd.grad(loss, params,
  create_graph=True)`` then ``autograd.grad(grads, params, grad_outputs=v)``;
* ``torch HVP amortised``: PyHessian's single-batch form: ``grads`` built once with
  ``create_graph=True``, each product ``autograd.grad(grads, params, grad_outputs=v,
  retain_graph=True)`` (only the second backward pass).

torch uses as many intra-op threads as there are cores (XLA's CPU backend uses all cores).
Goals (CPU): HVP/grad <= 1.6 (MLP), <= 2.0 (CNN); amortised HVP/grad <= 1.25 (MLP);
torch/prune_jax >= 1.3 (single product) and >= 1.6 (amortised).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_models import (  # noqa: E402
    Twin,
    fmt_ms,
    interleaved,
    load_average,
    machine_header,
    make_cnn,
    make_mlp,
    max_rel_diff,
    median,
    paired_ratio,
    print_table,
    set_torch_threads,
    synthetic_data,
    torch_grad,
    torch_hvp,
    torch_hvp_amortised,
)

from prune_jax.curvature import hvp_operator  # noqa: E402

GOALS = {"MLP": (1.6, 1.25), "CNN": (2.0, None)}
TORCH_GOALS = (1.3, 1.6)


def bench_model(twin: Twin, batch_size: int, repeats: int) -> dict[str, Any]:
    """Time all contenders on one twin; return medians, ratios and agreement figures."""
    x, y = synthetic_data(batch_size, twin.input_shape, twin.num_classes, seed=1)
    loss = twin.jax_loss()
    batch = (jnp.asarray(x), jnp.asarray(y))
    batches = jax.tree.map(lambda a: a[None], batch)
    params = twin.params
    v = jax.tree.map(lambda p, k: jax.random.normal(k, p.shape, p.dtype), params,
                     jax.tree.unflatten(jax.tree.structure(params),
                                        list(jax.random.split(jax.random.key(7),
                                                              len(jax.tree.leaves(params))))))

    grad_fn = jax.jit(jax.grad(loss))
    op = hvp_operator(loss, params, batches)
    jax.block_until_ready(op(v))  # compile
    start = time.perf_counter()
    op_lin = jax.block_until_ready(hvp_operator(loss, params, batches, linearize=True))
    first_lin = time.perf_counter() - start  # includes compilation of the linearisation
    start = time.perf_counter()
    op_lin = jax.block_until_ready(hvp_operator(loss, params, batches, linearize=True))
    lin_seconds = time.perf_counter() - start

    @jax.jit
    def raw_hvp(p: Any, b: Any, t: Any) -> Any:
        return jax.jvp(lambda q: jax.grad(loss)(q, b), (p,), (t,))[1]

    xt, yt = twin.torch_batch(x, y)
    vt = twin.to_torch(v)
    torch_amort = torch_hvp_amortised(twin, xt, yt)

    hv_jax = op(v)
    hv_lin = op_lin(v)
    hv_torch = twin.from_torch(torch_hvp(twin, xt, yt, vt))
    hv_torch_amort = twin.from_torch(torch_amort(vt))
    agree = {
        "prune_jax vs torch": max_rel_diff(hv_jax, hv_torch),
        "amortised vs torch": max_rel_diff(hv_lin, hv_torch),
        "torch amortised vs torch": max_rel_diff(hv_torch_amort, hv_torch),
        "grad": max_rel_diff(grad_fn(params, batch), twin.from_torch(torch_grad(twin, xt, yt))),
    }

    fns = {
        "jax grad": lambda: grad_fn(params, batch),
        "prune_jax HVP": lambda: op(v),
        "prune_jax HVP amortised": lambda: op_lin(v),
        "raw jax HVP": lambda: raw_hvp(params, batch, v),
        "torch grad": lambda: torch_grad(twin, xt, yt),
        "torch HVP": lambda: torch_hvp(twin, xt, yt, vt),
        "torch HVP amortised": lambda: torch_amort(vt),
    }
    load_before = load_average()
    times = interleaved(fns, repeats, warmup=2)
    return {"times": times, "agree": agree, "lin": lin_seconds, "first_lin": first_lin,
            "load": (load_before, load_average())}


def report(twin: Twin, batch_size: int, res: dict[str, Any]) -> list[str]:
    """Print the tables of one model; return one-line goal verdicts."""
    t = res["times"]
    med = {k: median(v) for k, v in t.items()}
    kind = "MLP" if twin.name.startswith("MLP") else "CNN"
    rows = [[k, fmt_ms(med[k]), f"{min(t[k]) * 1e3:.3g}"] for k in t]
    print_table(f"{twin.name} ({twin.num_params:,} params), batch {batch_size}; load "
                f"{res['load'][0]} -> {res['load'][1]}", ["contender", "median ms", "min ms"],
                rows)
    print(f"linearisation (one-off, prune_jax amortised): {fmt_ms(res['lin'])} ms warm, "
          f"{fmt_ms(res['first_lin'])} ms first call (with compilation)")
    single, amort = GOALS[kind]
    r_single = paired_ratio(t["prune_jax HVP"], t["jax grad"])
    r_amort = paired_ratio(t["prune_jax HVP amortised"], t["jax grad"])
    r_raw = paired_ratio(t["raw jax HVP"], t["jax grad"])
    r_torch = paired_ratio(t["torch HVP"], t["prune_jax HVP"])
    r_torch_amort = paired_ratio(t["torch HVP amortised"], t["prune_jax HVP amortised"])
    r_torch_grad = paired_ratio(t["torch HVP"], t["torch grad"])
    r_torch_vs_grad = paired_ratio(t["torch grad"], t["jax grad"])

    def verdict(value: float, goal: float | None, upper: bool) -> str:
        if goal is None:
            return "-"
        ok = value <= goal if upper else value >= goal
        return f"{'<=' if upper else '>='} {goal}: {'met' if ok else 'MISSED'}"

    ratio_rows = [
        ["prune_jax HVP / jax grad", f"{r_single:.3f}", verdict(r_single, single, True)],
        ["prune_jax amortised HVP / jax grad", f"{r_amort:.3f}", verdict(r_amort, amort, True)],
        ["raw jax HVP / jax grad", f"{r_raw:.3f}", "-"],
        ["torch HVP / torch grad", f"{r_torch_grad:.3f}", "-"],
        ["torch grad / jax grad", f"{r_torch_vs_grad:.3f}", "-"],
        ["torch HVP / prune_jax HVP (speed-up)", f"{r_torch:.3f}",
         verdict(r_torch, TORCH_GOALS[0], False)],
        ["torch amortised / prune_jax amortised (speed-up)", f"{r_torch_amort:.3f}",
         verdict(r_torch_amort, TORCH_GOALS[1], False)],
    ]
    print_table(f"{twin.name}: ratios (median of per-round ratios)", ["ratio", "value", "goal"],
                ratio_rows)
    print("agreement (max |a-b| / max |b|): " + ", ".join(
        f"{k} {v:.1e}" for k, v in res["agree"].items()))
    return [f"{kind}: {r[0]} = {r[1]} ({r[2]})" for r in ratio_rows if r[2] != "-"]


def main(argv: list[str] | None = None) -> None:
    """Parse flags, run the benchmark, print tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=30, help="interleaved timing rounds")
    ap.add_argument("--mlp-batch", type=int, default=256)
    ap.add_argument("--cnn-batch", type=int, default=128)
    ap.add_argument("--mlp-sizes", default="784,512,256,10", help="input,hidden...,classes")
    ap.add_argument("--cnn-channels", default="32,64,128")
    ap.add_argument("--models", default="mlp,cnn", help="comma-separated subset of mlp,cnn")
    args = ap.parse_args(argv)
    set_torch_threads()
    print(machine_header())
    verdicts: list[str] = []
    models = args.models.split(",")
    if "mlp" in models:
        twin = make_mlp(tuple(int(s) for s in args.mlp_sizes.split(",")))
        verdicts += report(twin, args.mlp_batch, bench_model(twin, args.mlp_batch, args.repeats))
    if "cnn" in models:
        twin = make_cnn(tuple(int(s) for s in args.cnn_channels.split(",")))
        verdicts += report(twin, args.cnn_batch, bench_model(twin, args.cnn_batch, args.repeats))
    print("\nGoals:\n  " + "\n  ".join(verdicts))
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
