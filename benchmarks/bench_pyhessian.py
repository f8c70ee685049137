"""PyHessian (the installed package) vs prune_jax: top eigenvalue, trace, spectral density.

    python benchmarks/bench_pyhessian.py [--threads N] [--sizes 784,128,10] [--batches 4]
                                         [--batch-size 256] [--data synthetic|digits]
                                         [--trace-probes 30] [--slq-probes 2]
                                         [--slq-steps 100] [--repeats 2]

Same model (an MLP twin: identical weights in torch and Flax), same data (MNIST-shaped
synthetic N(0, 1) inputs with random labels, or sklearn's 8x8 digits), same loss (mean
cross-entropy, full data set = ``--batches`` batches of ``--batch-size``). With
``--batches 1`` PyHessian takes its single-batch path (``data=``: the gradient graph is built
once and reused by every product); otherwise its data-loader path (``dataloader=``, a list of
``(x, y)`` tensors: every product redoes forward, backward and double backward per batch).

The three tasks, at the same amount of work on both sides:

* top eigenvalue, at the same accuracy: PyHessian's power iteration with its defaults
  (``maxIter=100, tol=1e-3``) reaches some relative error against the reference value (a
  long Lanczos run, ``--ref-steps``). prune_jax's Lanczos gets the fewest steps whose *true
  residuals* certify that relative error (its own convergence certificate, searched on a
  ladder of step counts, the search not timed). The same task with PyHessian's product count
  (``num_steps`` = the products PyHessian used) is timed too, outside the total.
* trace: Hutchinson on both sides with ``--trace-probes`` Rademacher probes. PyHessian's
  ``trace(maxIter=N, tol=-inf)``: its default ``tol=1e-3`` stops as soon as the running mean
  moves by < 0.1% between two probes (after 2 probes in a trial run here), so the early stop
  is disabled to give both sides exactly N probes.
* density: SLQ on both sides, ``--slq-probes`` probes of ``--slq-steps`` Lanczos steps with
  full re-orthogonalisation. PyHessian's ``density()`` calls ``torch.eig``, which torch
  removed (1.9+); :class:`PyHessianShim` overrides ``density`` to run PyHessian's own method
  unchanged while ``torch.eig`` is temporarily bound to an adapter that calls
  ``torch.linalg.eigh`` on the (symmetric tridiagonal) ``T`` and returns the old
  ``(eigenvalues as (n, 2) real/imag, eigenvectors)`` layout. Nothing else is changed.

prune_jax runs with the data-set operator ``hvp_operator(loss, params, batches)`` in both of
its forms: plain (each product recomputes forward and backward per batch) and
``linearize=True`` (the gradient linearised once over all batches; its cost is counted once in
the end-to-end total). JAX times are warm (compilation excluded; the first-call times with
compilation are printed too); PyHessian and prune_jax are alternated over ``--repeats``
rounds and medians reported. Threads: both libraries use all cores by default; ``--threads N``
gives both N threads (on a loaded machine, ``--threads 1`` is the fair setting: torch's
OpenMP threads suffer far more than XLA's from being descheduled).
Goal: prune_jax >= 3x faster end to end.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import torch
from pyhessian import hessian

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _bench_models import (
    Twin,
    configure_threads,
    load_average,
    machine_header,
    make_mlp,
    median,
    print_table,
    synthetic_data,
)

from prune_jax.curvature import hutchinson_trace, hvp_operator, slq, top_eigenvalues

GOAL = 3.0


# --------------------------------------------------------------------------- PyHessian side

def _eig_adapter(a: torch.Tensor, eigenvectors: bool = False) -> tuple[torch.Tensor, ...]:
    """Old ``torch.eig`` layout from ``torch.linalg.eigh`` (valid for symmetric input)."""
    values, vectors = torch.linalg.eigh(a)
    pairs = torch.stack([values, torch.zeros_like(values)], dim=1)
    return pairs, (vectors if eigenvectors else torch.empty(0))


@contextlib.contextmanager
def _torch_eig_shim() -> Iterator[None]:
    """Temporarily bind ``torch.eig`` to :func:`_eig_adapter`."""
    saved = torch.eig
    torch.eig = _eig_adapter
    try:
        yield
    finally:
        torch.eig = saved


class PyHessianShim(hessian):
    """``pyhessian.hessian`` with two additions, its numerical methods untouched.

    * ``density`` runs the original method with ``torch.eig`` bound to an ``eigh`` adapter
      (``torch.eig`` was removed from torch; ``T`` is symmetric, so ``eigh`` is the right
      solver and gives the same eigenpairs).
    * Hessian-vector products are counted (``self.hvps``), to give prune_jax the same budget.
    """

    hvps = 0

    def dataloader_hv_product(self, v: list[torch.Tensor]) -> tuple[float, list[torch.Tensor]]:
        """PyHessian's data-loader product, counted."""
        self.hvps += 1
        return super().dataloader_hv_product(v)

    def density(self, iter: int = 100, n_v: int = 1) -> tuple[list, list]:
        """PyHessian's SLQ, with the ``torch.eig`` shim."""
        with _torch_eig_shim():
            return super().density(iter=iter, n_v=n_v)


@contextlib.contextmanager
def _count_single_batch_products(counter: PyHessianShim) -> Iterator[None]:
    """Count PyHessian's single-batch products (module-level ``hessian_vector_product``)."""
    module = sys.modules["pyhessian.hessian"]  # the package attribute is the class
    original = module.hessian_vector_product

    def counted(*args: Any, **kwargs: Any) -> Any:
        counter.hvps += 1
        return original(*args, **kwargs)

    module.hessian_vector_product = counted
    try:
        yield
    finally:
        module.hessian_vector_product = original


def make_pyhessian(twin: Twin, xs: list[torch.Tensor], ys: list[torch.Tensor]) -> PyHessianShim:
    """A PyHessian object on the data set (single-batch path when there is one batch)."""
    twin.torch_model.zero_grad(set_to_none=True)  # PyHessian accumulates into .grad
    criterion = torch.nn.CrossEntropyLoss()
    if len(xs) == 1:
        return PyHessianShim(twin.torch_model, criterion, data=(xs[0], ys[0]), cuda=False)
    return PyHessianShim(twin.torch_model, criterion, dataloader=list(zip(xs, ys, strict=True)),
                         cuda=False)


def run_pyhessian(twin: Twin, xs: list[torch.Tensor], ys: list[torch.Tensor], top_n: int,
                  trace_probes: int, slq_probes: int, slq_steps: int,
                  seed: int) -> dict[str, Any]:
    """All three PyHessian tasks with their timings and products used."""
    out: dict[str, Any] = {}
    start = time.perf_counter()
    hess = make_pyhessian(twin, xs, ys)
    out["t_setup"] = time.perf_counter() - start
    with _count_single_batch_products(hess):
        torch.manual_seed(seed)
        hess.hvps = 0
        start = time.perf_counter()
        eigs, _ = hess.eigenvalues(top_n=top_n)
        out["t_top"] = time.perf_counter() - start
        out["top"], out["top_hvps"] = eigs, hess.hvps
        torch.manual_seed(seed)
        start = time.perf_counter()
        samples = hess.trace(maxIter=trace_probes, tol=float("-inf"))
        out["t_trace"] = time.perf_counter() - start
        out["trace_samples"] = np.asarray(samples, dtype=np.float64)
        torch.manual_seed(seed)
        start = time.perf_counter()
        nodes, weights = hess.density(iter=slq_steps, n_v=slq_probes)
        out["t_density"] = time.perf_counter() - start
        out["nodes"], out["weights"] = np.asarray(nodes), np.asarray(weights)
    return out


# --------------------------------------------------------------------------- prune_jax side

def steps_for_accuracy(op: Any, params: Any, top_n: int, max_steps: int, rel_error: float,
                       seed: int) -> int:
    """Fewest Lanczos steps whose top Ritz pairs are *certified* to ``rel_error``.

    The certificate is prune_jax's own: every returned true residual ``||H y - theta y||``
    is at most ``rel_error * |theta|`` (some eigenvalue lies within the residual of theta;
    the actual error of an extremal Ritz value is usually far smaller). Searched over a
    coarse ladder of step counts up to ``max_steps`` (PyHessian's product count).
    """
    ladder = sorted({s for s in (2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, max_steps)
                     if top_n <= s <= max_steps})
    for steps in ladder:
        top = top_eigenvalues(op, params, key=jax.random.key(seed), k=top_n, num_steps=steps)
        if np.all(top.residuals <= rel_error * np.abs(top.eigenvalues)):
            return steps
    return max_steps


def run_prune_jax(make_op: Callable[[], Any], params: Any, top_n: int, top_steps: int,
                  trace_probes: int, slq_probes: int, slq_steps: int,
                  seed: int, top_steps_equal: int | None = None) -> dict[str, Any]:
    """All three prune_jax tasks on the operator ``make_op()``, with their timings.

    ``top_steps``: Lanczos steps of the timed top-eigenvalue task (the equal-accuracy
    count); ``top_steps_equal`` (optional): also time it with PyHessian's product count
    (``t_top_equal``, not part of the end-to-end total).
    """
    out: dict[str, Any] = {}
    key = jax.random.key(seed)
    start = time.perf_counter()
    op = jax.block_until_ready(make_op())
    out["t_setup"] = time.perf_counter() - start
    start = time.perf_counter()
    top = top_eigenvalues(op, params, key=key, k=top_n, num_steps=top_steps)
    jax.block_until_ready(top.eigenvectors)
    out["t_top"] = time.perf_counter() - start
    out["top"], out["top_res"] = top.eigenvalues, top.residuals
    if top_steps_equal is not None:
        start = time.perf_counter()
        top_eq = top_eigenvalues(op, params, key=key, k=top_n, num_steps=top_steps_equal)
        jax.block_until_ready(top_eq.eigenvectors)
        out["t_top_equal"] = time.perf_counter() - start
        out["top_equal"] = top_eq.eigenvalues
    start = time.perf_counter()
    tr = hutchinson_trace(op, params, key=key, num_probes=trace_probes)
    out["t_trace"] = time.perf_counter() - start
    out["trace_samples"] = tr.samples
    start = time.perf_counter()
    q = slq(op, params, key=key, num_probes=slq_probes, num_steps=slq_steps)
    out["t_density"] = time.perf_counter() - start
    out["nodes"], out["weights"] = q.nodes, q.weights
    return out


# --------------------------------------------------------------------------- data

def load_data(kind: str, num: int, sizes: tuple[int, ...],
              seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``num`` examples: synthetic N(0, 1) MNIST-shaped vectors, or standardised digits."""
    if kind == "synthetic":
        return synthetic_data(num, (sizes[0],), sizes[-1], seed=seed)
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data.astype(np.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    if num > len(x) or sizes[0] != x.shape[1] or sizes[-1] != 10:
        raise SystemExit(f"digits has {len(x)} examples of 64 features and 10 classes; got "
                         f"num={num}, sizes={sizes}")
    perm = np.random.default_rng(seed).permutation(len(x))[:num]
    return x[perm], digits.target[perm].astype(np.int64)


# --------------------------------------------------------------------------- report

def _summary(res: dict[str, Any], dim: int) -> dict[str, float]:
    s = res["trace_samples"]
    nodes, weights = res["nodes"], res["weights"]
    top = float(np.max(res["top"]))
    return {
        "top": top,
        "trace": float(np.mean(s)),
        "trace_se": float(np.std(s, ddof=1) / np.sqrt(s.size)) if s.size > 1 else float("nan"),
        "slq_trace": float(dim * np.mean(np.sum(weights * nodes, axis=1))),
        "slq_max": float(np.max(nodes)),
        "slq_min": float(np.min(nodes)),
        "slq_neg_mass": float(np.mean(np.sum(weights * (nodes < -1e-3 * top), axis=1))),
        "slq_small_mass": float(np.mean(np.sum(weights * (np.abs(nodes) < 1e-3 * top), axis=1))),
    }


def main(argv: list[str] | None = None) -> None:
    """Parse flags, run both libraries alternately, print the tables."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="784,128,10", help="MLP input,hidden...,classes")
    ap.add_argument("--data", choices=("synthetic", "digits"), default="synthetic")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--top-n", type=int, default=1)
    ap.add_argument("--trace-probes", type=int, default=30)
    ap.add_argument("--slq-probes", type=int, default=2)
    ap.add_argument("--slq-steps", type=int, default=100)
    ap.add_argument("--ref-steps", type=int, default=100, help="Lanczos steps of the reference")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for both XLA and torch (default: all cores)")
    args = ap.parse_args(argv)
    configure_threads(args.threads)
    print(machine_header())

    sizes = tuple(int(s) for s in args.sizes.split(","))
    twin = make_mlp(sizes, seed=args.seed)
    nb, bs = args.batches, args.batch_size
    x, y = load_data(args.data, nb * bs, sizes, args.seed + 1)
    xs = [torch.from_numpy(x[i * bs:(i + 1) * bs]) for i in range(nb)]
    ys = [torch.from_numpy(y[i * bs:(i + 1) * bs]) for i in range(nb)]
    loss = twin.jax_loss()
    batches = (jnp.asarray(x.reshape(nb, bs, *x.shape[1:])), jnp.asarray(y.reshape(nb, bs)))
    params = twin.params
    dim = twin.num_params
    print(f"{twin.name}: D = {dim:,} parameters; data {args.data}: {nb} batch(es) x {bs}; "
          f"PyHessian path: {'single batch (data=)' if nb == 1 else 'data loader'}")

    # PyHessian's power iteration decides the product budget of the top eigenvalue.
    ph_first = run_pyhessian(twin, xs, ys, args.top_n, args.trace_probes, args.slq_probes,
                             args.slq_steps, args.seed)
    top_steps_equal = max(ph_first["top_hvps"], args.top_n)
    trace_probes = int(ph_first["trace_samples"].size)
    ref = top_eigenvalues(hvp_operator(loss, params, batches), params,
                          key=jax.random.key(args.seed + 99), k=args.top_n,
                          num_steps=min(args.ref_steps, dim))
    ph_error = float(np.max(np.abs(np.sort(ph_first["top"])[::-1] - ref.eigenvalues)
                            / np.abs(ref.eigenvalues)))
    top_steps = steps_for_accuracy(hvp_operator(loss, params, batches), params, args.top_n,
                                   top_steps_equal, ph_error, args.seed)
    print(f"PyHessian used {ph_first['top_hvps']} products for the top eigenvalue(s) "
          f"(relative error {ph_error:.1e} vs the reference) and {trace_probes} probes for "
          f"the trace. prune_jax, same accuracy: Lanczos num_steps={top_steps} (the fewest "
          f"whose true residuals certify relative error <= {ph_error:.1e}; timed too with "
          f"PyHessian's {top_steps_equal} products), {trace_probes} Hutchinson probes; SLQ "
          f"{args.slq_probes} probes x {args.slq_steps} steps on both sides")

    forms: dict[str, Callable[[], Any]] = {
        "prune_jax": lambda: hvp_operator(loss, params, batches),
        "prune_jax linearized": lambda: hvp_operator(loss, params, batches, linearize=True),
    }
    run_jax = {name: (lambda make=make: run_prune_jax(
        make, params, args.top_n, top_steps, trace_probes, args.slq_probes, args.slq_steps,
        args.seed, top_steps_equal)) for name, make in forms.items()}
    cold = {name: fn() for name, fn in run_jax.items()}  # first calls: with compilation

    results: dict[str, list[dict[str, Any]]] = {"PyHessian": [ph_first], **{n: [] for n in forms}}
    load_start = load_average()
    for r in range(args.repeats):
        contenders = ["PyHessian", *forms]
        for name in contenders[r % 3:] + contenders[:r % 3]:
            if name == "PyHessian":
                if r > 0:  # the first PyHessian run above is round 0's sample
                    results[name].append(run_pyhessian(twin, xs, ys, args.top_n,
                                                       args.trace_probes, args.slq_probes,
                                                       args.slq_steps, args.seed))
            else:
                results[name].append(run_jax[name]())
    load_end = load_average()

    tasks = [("t_setup", "setup (object / operator)"), ("t_top", "top eigenvalue"),
             ("t_trace", "trace (Hutchinson)"), ("t_density", "density (SLQ)")]
    names = list(results)
    med = {n: {t: median([res[t] for res in results[n]]) for t, _ in tasks} for n in names}
    for n in names:
        med[n]["total"] = sum(med[n][t] for t, _ in tasks)
    cold_total = {n: sum(cold[n][t] for t, _ in tasks) for n in forms}
    top_eq = {n: median([res["t_top_equal"] for res in results[n]]) for n in forms}
    top_eq["PyHessian"] = med["PyHessian"]["t_top"]
    rows = []
    for t, label in [*tasks, ("total", "end to end")]:
        row = [label] + [f"{med[n][t]:.3f}" for n in names]
        row += [f"{med['PyHessian'][t] / med[n][t]:.1f}x" if med[n][t] > 0 else "-"
                for n in forms]
        rows.append(row)
    rows.append([f"(top eigenvalue with {top_steps_equal} products, not in the total)",
                 *[f"{top_eq[n]:.3f}" for n in names],
                 *[f"{top_eq['PyHessian'] / top_eq[n]:.1f}x" for n in forms]])
    rows.append(["end to end, first call (with compilation)", "-",
                 *[f"{cold_total[n]:.3f}" for n in forms],
                 *[f"{med['PyHessian']['total'] / cold_total[n]:.1f}x" for n in forms]])
    print_table(f"seconds (median of {args.repeats} rounds, load {load_start} -> {load_end})",
                ["task", *[f"{n} s" for n in names], *[f"speed-up {n}" for n in forms]], rows)

    summ = {n: _summary(results[n][-1], dim) for n in names}
    ref_top = float(np.max(ref.eigenvalues))
    value_rows = [
        ["top eigenvalue", *[f"{summ[n]['top']:.6g}" for n in names],
         f"{ref_top:.6g} (residual {float(ref.residuals[np.argmax(ref.eigenvalues)]):.1e})"],
        ["  relative error vs reference",
         *[f"{abs(summ[n]['top'] - ref_top) / abs(ref_top):.1e}" for n in names], "-"],
        ["trace (Hutchinson) +- stderr",
         *[f"{summ[n]['trace']:.5g} +- {summ[n]['trace_se']:.2g}" for n in names], "-"],
        ["trace from SLQ quadrature (D * mean sum tau theta)",
         *[f"{summ[n]['slq_trace']:.5g}" for n in names], "-"],
        ["largest / smallest SLQ node",
         *[f"{summ[n]['slq_max']:.4g} / {summ[n]['slq_min']:.3g}" for n in names], "-"],
        ["SLQ weight on theta < -1e-3 * top", *[f"{summ[n]['slq_neg_mass']:.3f}" for n in names],
         "-"],
        ["SLQ weight on |theta| < 1e-3 * top", *[f"{summ[n]['slq_small_mass']:.3f}"
                                                 for n in names], "-"],
    ]
    print_table("values returned (last round; probes differ between libraries, so Monte-Carlo "
                "estimates agree only within their errors)",
                ["quantity", *names, f"reference (Lanczos {min(args.ref_steps, dim)} steps)"],
                value_rows)
    print("PyHessian density() ran through the torch.eig -> torch.linalg.eigh shim "
          "(see PyHessianShim).")
    for n in forms:
        ratio = med["PyHessian"]["total"] / med[n]["total"]
        print(f"Goal >= {GOAL}x end to end, {n}: {ratio:.1f}x "
              f"({'met' if ratio >= GOAL else 'MISSED'})")
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
