"""PyHessian's three calls vs prune_jax, end to end, compilation included, with accuracy.

    python benchmarks/bench_spectrum.py --json spectrum.json   # both models, ~25 min on 2 cores

Two model sizes in one run (``--model SIZES:EXAMPLES``, repeatable; default
``64,512,512,10:8192`` (D = 301,066) and ``64,32,10:1797`` (D = 2,410)).

The same tanh MLP in torch and Flax (identical weights), the same data (N(0, 1) inputs with
random labels; ``--examples`` in one batch, PyHessian's ``data=`` path, which builds the
gradient graph once and reuses it for every product), the same mean cross-entropy. prune_jax
is used the way a new user writes it, a closure over the data and the parameters::

    mv = lambda v: pj.hvp(loss, params, v)          # loss closes over x, y

Two comparisons, alternated in one process (``--repeats`` rounds, medians), every prune_jax
run after ``jax.clear_caches()`` so that its compilation is timed every time:

* defaults: PyHessian ``eigenvalues()``, ``trace()``, ``density()`` at its default
  tolerances vs ``pj.estimate_spectrum(mv, params, key=...)`` at its defaults;
* equal work, 50 products each: PyHessian ``eigenvalues(maxIter=50, tol=-1)``,
  ``trace(maxIter=50, tol=-inf)``, ``density(iter=50, n_v=1)`` vs ``top_eigenvalues(mv,
  num_steps=50)``, ``hutchinson_trace(mv, num_probes=50)``, ``slq(mv, num_probes=1,
  num_steps=50)``.

Accuracy of both sides against independent references (not timed): the dense Hessian's
``eigh`` when ``D <= --dense-max``, otherwise a ``--ref-steps`` Lanczos run for the top
eigenvalue and ``--ref-probes`` Hutchinson probes for the trace and ``(1/D) tr H^2`` (the
second moment of the spectral density). PyHessian's ``density()`` calls ``torch.eig``, which
torch removed: it runs with ``torch.eig`` bound to an ``eigh`` adapter (its ``T`` is
symmetric), nothing else changed.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_models import make_mlp, synthetic_data
from _harness import alternate, finish, load_average, median, parser, print_table, start
from pyhessian import hessian

import prune_jax as pj

GOAL_DEFAULTS, GOAL_EQUAL = 3.0, 1.3
TASKS = ("top", "trace", "density")


# --------------------------------------------------------------------------- PyHessian

@contextlib.contextmanager
def _pyhessian_patched(counter: list[int]) -> Iterator[None]:
    """``torch.eig`` -> ``eigh`` adapter, and a product counter."""
    module = sys.modules["pyhessian.hessian"]
    product = module.hessian_vector_product

    def counted(*args: Any, **kwargs: Any) -> Any:
        counter[0] += 1
        return product(*args, **kwargs)

    def eig(a: torch.Tensor, eigenvectors: bool = False) -> tuple[torch.Tensor, ...]:
        values, vectors = torch.linalg.eigh(a)
        pairs = torch.stack([values, torch.zeros_like(values)], dim=1)
        return pairs, (vectors if eigenvectors else torch.empty(0))

    saved = getattr(torch, "eig", None)
    module.hessian_vector_product, torch.eig = counted, eig
    try:
        yield
    finally:
        module.hessian_vector_product, torch.eig = product, saved


def run_pyhessian(twin: Any, x: np.ndarray, y: np.ndarray, equal: int | None,
                  seed: int) -> dict[str, Any]:
    """PyHessian's three calls (defaults, or ``equal`` products each), timed."""
    counter = [0]
    out: dict[str, Any] = {}
    with _pyhessian_patched(counter):
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        twin.torch_model.zero_grad(set_to_none=True)
        hess = hessian(twin.torch_model, torch.nn.CrossEntropyLoss(),
                       data=(torch.from_numpy(x), torch.from_numpy(y)), cuda=False)
        eigs, _ = (hess.eigenvalues() if equal is None
                   else hess.eigenvalues(maxIter=equal, tol=-1.0))
        t2 = time.perf_counter()
        out["products_top"] = counter[0]
        samples = hess.trace() if equal is None else hess.trace(maxIter=equal,
                                                                 tol=float("-inf"))
        t3 = time.perf_counter()
        nodes, weights = hess.density() if equal is None else hess.density(iter=equal, n_v=1)
        t4 = time.perf_counter()
    s = np.asarray(samples, np.float64)
    out.update(t_top=t2 - t0, t_trace=t3 - t2, t_density=t4 - t3, total=t4 - t0,
               top=float(eigs[0]), trace=float(np.mean(s)),
               trace_se=float(np.std(s, ddof=1) / np.sqrt(s.size)) if s.size > 1 else np.nan,
               nodes=np.asarray(nodes, np.float64), weights=np.asarray(weights, np.float64),
               products=counter[0])
    return out


# --------------------------------------------------------------------------- prune_jax

def run_prune_jax(loss: Any, params: Any, equal: int | None, seed: int) -> dict[str, Any]:
    """The closure form, compilation included; defaults (one call) or ``equal`` each."""
    jax.clear_caches()
    key = jax.random.key(seed)
    t0 = time.perf_counter()
    mv = lambda v: pj.hvp(loss, params, v)
    if equal is None:
        s = pj.estimate_spectrum(mv, params, key=key)
        t = time.perf_counter() - t0
        top, tr, q = s.top, s.trace, s.quadrature
        times = {"t_top": float("nan"), "t_trace": float("nan"), "t_density": float("nan")}
        products = (32 + 3 * 16 + 1 + tr.samples.size - 3)
    else:
        top = pj.top_eigenvalues(mv, params, key=key, k=1, num_steps=equal)
        t1 = time.perf_counter()
        tr = pj.hutchinson_trace(mv, params, key=key, num_probes=equal)
        t2 = time.perf_counter()
        q = pj.slq(mv, params, key=key, num_probes=1, num_steps=equal)
        t = time.perf_counter() - t0
        times = {"t_top": t1 - t0, "t_trace": t2 - t1, "t_density": t0 + t - t2}
        products = 3 * equal + 1
    return {**times, "total": t, "top": float(top.eigenvalues[0]),
            "top_residual": float(top.residuals[0]), "trace": tr.estimate,
            "trace_se": tr.stderr, "nodes": q.nodes, "weights": q.weights,
            "products": products}


# --------------------------------------------------------------------------- references

def references(loss: Any, params: Any, dim: int, args: Any) -> dict[str, float]:
    """Top eigenvalue, trace and (1/D) tr H^2: dense ``eigh``, or long runs (not timed)."""
    op = pj.hvp_operator(loss, params)
    if dim <= args.dense_max:
        lam = pj.curvature.exact_eigenvalues(op, params)
        return {"top": float(lam[-1]), "trace": float(np.sum(lam)), "trace_se": 0.0,
                "m2": float(np.mean(lam ** 2)), "m2_se": 0.0, "how": "dense eigh"}
    top = pj.top_eigenvalues(op, params, key=jax.random.key(99), k=1,
                             num_steps=args.ref_steps)
    flat, unravel = pj.tree.ravel(params)

    @jax.jit
    def one(key: jax.Array) -> jax.Array:
        z = jax.random.rademacher(key, flat.shape, flat.dtype)
        hz = pj.tree.ravel(op(unravel(z)))[0]
        return jnp.stack([jnp.vdot(z, hz), jnp.vdot(hz, hz)])

    vals = np.array([np.asarray(one(k)) for k in jax.random.split(jax.random.key(98),
                                                                   args.ref_probes)])
    se = vals.std(0, ddof=1) / np.sqrt(len(vals))
    return {"top": float(top.eigenvalues[0]), "top_residual": float(top.residuals[0]),
            "trace": float(vals[:, 0].mean()), "trace_se": float(se[0]),
            "m2": float(vals[:, 1].mean() / dim), "m2_se": float(se[1] / dim),
            "how": f"Lanczos {args.ref_steps} steps, {args.ref_probes} Hutchinson probes"}


def accuracy(res: dict[str, Any], ref: dict[str, float], dim: int) -> dict[str, float]:
    """Errors against the reference (relative; the trace also in standard errors)."""
    nodes, weights = res["nodes"], res["weights"]
    m2 = float(np.mean(np.sum(weights * nodes ** 2, axis=-1)))
    se = np.hypot(res["trace_se"], ref["trace_se"])
    return {"top_rel_err": abs(res["top"] - ref["top"]) / abs(ref["top"]),
            "trace_rel_err": abs(res["trace"] - ref["trace"]) / abs(ref["trace"]),
            "trace_rel_se": res["trace_se"] / abs(res["trace"]),
            "trace_err_in_se": abs(res["trace"] - ref["trace"]) / se if se > 0 else np.nan,
            "density_m2_rel_err": abs(m2 - ref["m2"]) / ref["m2"],
            "density_probes": int(nodes.shape[0]) if nodes.ndim == 2 else 1}


# --------------------------------------------------------------------------- main

DEFAULT_MODELS = ("64,512,512,10:8192", "64,32,10:1797")


def bench_model(spec: str, args: Any, record: dict[str, Any]) -> dict[str, Any]:
    """Both comparisons on the model ``SIZES:EXAMPLES``; print its tables; its record."""
    sizes_text, examples = spec.split(":")
    sizes = tuple(int(s) for s in sizes_text.split(","))
    twin = make_mlp(sizes, seed=args.seed, activation=args.activation)
    x, y = synthetic_data(int(examples), (sizes[0],), sizes[-1], seed=args.seed + 1)
    params, batch_loss = twin.params, twin.jax_loss()
    xj, yj = jnp.asarray(x), jnp.asarray(y)

    def loss(p: Any) -> jax.Array:  # closes over the data, as a new user writes it
        return batch_loss(p, (xj, yj))

    dim = twin.num_params
    print(f"\n## {twin.name}: D = {dim:,}; {examples} examples in one batch")
    ref = references(loss, params, dim, args)
    print(f"reference ({ref['how']}): top {ref['top']:.6g}, trace {ref['trace']:.6g} +- "
          f"{ref['trace_se']:.2g}, (1/D) tr H^2 {ref['m2']:.4g}")
    runs = {"PyHessian defaults": lambda: run_pyhessian(twin, x, y, None, args.seed),
            "prune_jax estimate_spectrum": lambda: run_prune_jax(loss, params, None,
                                                                 args.seed),
            f"PyHessian {args.equal} each": lambda: run_pyhessian(twin, x, y, args.equal,
                                                                  args.seed),
            f"prune_jax {args.equal} each": lambda: run_prune_jax(loss, params, args.equal,
                                                                  args.seed)}
    load = load_average()
    results = alternate(runs, args.repeats)
    names = list(runs)
    med = {n: {k: median([r[k] for r in results[n]])
               for k in ("t_top", "t_trace", "t_density", "total")} for n in names}
    rows = [[n, *[f"{med[n][f't_{t}']:.2f}" for t in TASKS], f"{med[n]['total']:.2f}",
             str(results[n][-1]["products"])] for n in names]
    print_table(f"seconds end to end, compilation included (median of {args.repeats} rounds; "
                f"load {load} at the start, {load_average()} at the end)",
                ["run", *TASKS, "total", "products"], rows)
    ratios = {"defaults": med[names[0]]["total"] / med[names[1]]["total"],
              "equal": med[names[2]]["total"] / med[names[3]]["total"]}
    acc = {n: accuracy(results[n][-1], ref, dim) for n in names}
    cols = ["top_rel_err", "trace_rel_err", "trace_rel_se", "trace_err_in_se",
            "density_m2_rel_err", "density_probes"]
    print_table("accuracy against the reference (last round)", ["run", *cols],
                [[n, *[f"{acc[n][c]:.2g}" for c in cols]] for n in names])
    for label, goal in (("defaults", GOAL_DEFAULTS), ("equal", GOAL_EQUAL)):
        print(f"speed-up {label}: {ratios[label]:.2f}x (goal >= {goal}x: "
              f"{'met' if ratios[label] >= goal else 'MISSED'})")
    return dict(model=twin.name, dim=dim, examples=int(examples), reference=ref, medians=med,
                ratios=ratios, accuracy=acc, load_start=load,
                runs={n: [{k: v for k, v in r.items() if k not in ("nodes", "weights")}
                          for r in results[n]] for n in names})


def main(argv: list[str] | None = None) -> None:
    """Parse flags, run both comparisons alternately on each model, print the tables."""
    ap = parser(__doc__)
    ap.add_argument("--model", action="append", default=None,
                    help="MLP input,hidden...,classes:examples (repeatable; default: "
                         + " and ".join(DEFAULT_MODELS) + ")")
    ap.add_argument("--activation", default="tanh", choices=("tanh", "relu"))
    ap.add_argument("--equal", type=int, default=50, help="products per task, equal work")
    ap.add_argument("--dense-max", type=int, default=5000, help="largest D for dense eigh")
    ap.add_argument("--ref-steps", type=int, default=100)
    ap.add_argument("--ref-probes", type=int, default=300)
    ap.set_defaults(repeats=2)
    args = ap.parse_args(argv)
    record = start(args)
    record["models"] = [bench_model(spec, args, record)
                        for spec in (args.model or DEFAULT_MODELS)]
    print_table("speed-ups (PyHessian seconds / prune_jax seconds, end to end)",
                ["model", "D", "defaults", f"equal work ({args.equal} each)"],
                [[m["model"], f"{m['dim']:,}", f"{m['ratios']['defaults']:.2f}x",
                  f"{m['ratios']['equal']:.2f}x"] for m in record["models"]])
    finish(args, record)


if __name__ == "__main__":
    main()
