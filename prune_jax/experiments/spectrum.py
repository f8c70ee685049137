"""``prune-jax spectrum``: the Hessian spectrum of a trained Flax model (SPEC section 1).

Train (or resume) the model, build the exact full-training-set HVP operator (inference mode,
SPEC 1.1), then one pass of Lanczos runs (:func:`prune_jax.estimate_spectrum`): the top-k
eigenpairs, the (deflated) trace and the SLQ. Writes ``spectrum.json`` and
``spectral_density.png`` into ``--out``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from rich.table import Column, Table

from prune_jax import curvature as C
from prune_jax import plots
from prune_jax.experiments import common
from prune_jax.experiments.common import flag
from prune_jax.experiments.progress import console
from prune_jax.experiments.train import evaluate

__all__ = ["Config", "compute_spectrum", "run"]


@dataclasses.dataclass(frozen=True)
class Config(common.RunConfig):
    """Options of ``prune-jax spectrum`` (each field is a command-line flag)."""

    probes: int = flag(16, "SLQ probe vectors (Lanczos runs; the trace adds probes to a 2% "
                       "standard error)", low=1)
    steps: int = flag(64, "Lanczos steps per probe", low=2)
    top_k: int = flag(5, "number of top eigenvalues", low=1)
    top_steps: int = flag(80, "Lanczos steps of the first run (the top-k pairs)", low=2)
    out: Path = flag(Path("results/spectrum"), "output directory")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.top_k > self.top_steps:
            raise common.UserError(f"--top-k {self.top_k} exceeds --top-steps "
                                   f"{self.top_steps}: give --top-steps at least --top-k")


def compute_spectrum(loss_fn: Any, params: Any, batches: dict[str, Any], *, key: jax.Array,
                     probes: int, steps: int, top_k: int, top_steps: int) -> dict[str, Any]:
    """Top-k eigenpairs, trace and SLQ of the full-data-set Hessian, one pass (SPEC 1.1-1.3):
    ``probes`` Lanczos runs (the first of ``top_steps`` steps, the others of ``steps``) by
    :func:`prune_jax.estimate_spectrum`. Returns ``{"top", "trace", "slq", "operator"}``."""
    op = C.hvp_operator(loss_fn, params, batches, batch_sizes=jnp.sum(batches["w"], axis=1))
    s = C.estimate_spectrum(op, params, key=key, num_probes=max(probes, 2), num_steps=steps,
                            top_steps=top_steps, k=top_k)
    return {"top": s.top, "trace": s.trace, "slq": s.quadrature, "operator": op}


def run(config: Config) -> dict[str, Any]:
    """Run the spectrum pipeline; return (and save) its results."""
    timer = common.Timer(show=config.progress)
    setup, result, k_spec = common.set_up_and_train(config, timer)
    params, stats = result.state.params, result.state.batch_stats
    test_acc = float(evaluate(setup.model, params, stats, setup.test_batches).accuracy)
    with timer("spectrum"):
        spec = compute_spectrum(common.full_data_loss(setup, stats), params,
                                setup.train_batches, key=k_spec, probes=config.probes,
                                steps=config.steps, top_k=config.top_k,
                                top_steps=config.top_steps)
    top, trace, sq = spec["top"], spec["trace"], spec["slq"]
    summary = {
        "config": config, "dimension": int(sq.dim), "test_accuracy": test_acc,
        "top_eigenvalues": top.eigenvalues, "top_residuals": top.residuals,
        "trace_hutchinson": float(trace.estimate), "trace_hutchinson_stderr": float(trace.stderr),
        "trace_slq": float(sq.expect(lambda x: x) * sq.dim), "slq_nodes": sq.nodes,
        "slq_weights": sq.weights, "seconds": timer.seconds}
    out = config.out
    common.save_json(out / "spectrum.json", summary)
    plots.save(plots.spectral_density(sq, top_eigenvalues=list(map(float, top.eigenvalues))),
               out / "spectral_density.png")

    table = Table("quantity", Column("value", justify="right"),
                  title=f"Hessian spectrum: {config.model} on {config.dataset} "
                        f"(D = {int(sq.dim):,}, test accuracy {test_acc:.4f})")
    for i, (lam, res) in enumerate(zip(top.eigenvalues, top.residuals, strict=True)):
        table.add_row(f"lambda_{i + 1} (residual)", f"{float(lam):.6g} ({float(res):.1e})")
    table.add_row("trace, Hutchinson/Hutch++ (+- stderr)",
                  f"{float(trace.estimate):.6g} +- {float(trace.stderr):.2g}")
    table.add_row("trace, SLQ quadrature", f"{summary['trace_slq']:.6g}")
    for name, sec in timer.seconds.items():
        table.add_row(f"wall time: {name}", f"{sec:.1f} s")
    console.print(table)
    console.print(f"wrote {out / 'spectrum.json'} and {out / 'spectral_density.png'}")
    return summary
