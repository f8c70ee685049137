"""``prune-jax limit``: the fundamental pruning limit, predicted and checked (SPEC section 2).

1. Train under ``optax.chain(prune_jax.l1(lambda), sgd)`` (SPEC 2.4), or resume the orbax
   checkpoint in ``--out``.
2. ``eps`` = std of the per-batch training loss including the l1 term (inference mode, at
   the training batch size; the last partial batch is weighted like the others),
   SLQ of the full-training-set Hessian with respect to the prunable kernels, convexified,
   and the predicted limit by the exact fixed-point solver (SPEC 2.3).
3. LOMP: global one-shot magnitude pruning over the kernels at a fine sparsity sweep, no
   fine-tuning; every point is evaluated inside one compiled ``lax.map`` (no model files).
   The actual limit is the largest sparsity before the first sweep point whose test accuracy
   falls below the dense model's minus ``--tolerance``; the sweep is refined around it.
4. A table, ``limit.json`` and three plots (spectral density, accuracy/loss vs sparsity with
   both limits, the fixed-point crossing).
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from rich.table import Table

from prune_jax import curvature as C
from prune_jax import data as D
from prune_jax import limits as L
from prune_jax import plots
from prune_jax.experiments import common
from prune_jax.experiments.common import flag
from prune_jax.experiments.progress import console
from prune_jax.experiments.spectrum import compute_spectrum
from prune_jax.experiments.train import evaluate, preprocess_batches
from prune_jax.tree import PyTree, combine, partition, prunable_tree

__all__ = ["Config", "SweepResult", "actual_limit", "global_ranks", "magnitude_sweep", "run"]


@dataclasses.dataclass(frozen=True)
class Config:
    """Options of ``prune-jax limit`` (each field is a command-line flag)."""

    model: str = flag("mlp_small", "model name from prune_jax.models.MODEL_NAMES")
    dataset: str = flag("digits", "digits (offline default), mnist, fashion_mnist, cifar10, "
                        "cifar100")
    data_dir: str | None = flag(None, "tfds data directory (tfds data sets only)")
    epochs: int = flag(60, "training epochs (SPEC 2.4 reference: 200 on CIFAR)")
    batch_size: int = flag(64, "training batch size (reference: 128)")
    learning_rate: float = flag(0.05, "SGD learning rate, momentum 0.9, cosine decay")
    l1: float = flag(1e-4, "l1 strength lambda (reference: 5e-5 for FC5/FC12/ResNet18)")
    probes: int = flag(16, "SLQ probe vectors")
    steps: int = flag(64, "Lanczos steps per probe")
    eps: float | None = flag(None, "loss tolerance; default: std of the per-batch training "
                             "loss including the l1 term (SPEC 2.3)")
    tolerance: float = flag(0.0, "accuracy drop allowed when reading off the actual limit")
    zero_mass: str = flag("none", "near-zero eigenvalue mass added as an atom at 0 (SPEC 1.3): "
                          "none, or rows (the reference code's Hessian-row estimator)",
                          choices=("none", "rows"))
    zero_tol: float = flag(1e-7, "row l1 norm (rows) / |eigenvalue| (SLQ report) below which "
                           "a direction counts as zero")
    sweep_points: int = flag(100, "sparsity sweep points in [0, 1) before refinement")
    eval_batch_size: int = flag(512, "batch size for evaluation and the full-data HVP")
    seed: int = flag(0, "PRNG seed")
    out: Path = flag(Path("results/limit"), "output directory (checkpoints, JSON, plots)")
    progress: bool = flag(True, "show progress bars")


class SweepResult(NamedTuple):
    """Test accuracy and loss of the globally magnitude-pruned model at each sparsity."""

    sparsity: np.ndarray
    accuracy: np.ndarray
    loss: np.ndarray


def global_ranks(params: PyTree, prunable: PyTree | None = None) -> np.ndarray:
    """Rank of every prunable weight in ascending magnitude (ties: lower flat index first).

    Computed once on the host with numpy's stable sort (XLA's CPU sort of 25M floats is
    ~50x slower); weights with rank < k are the k that global magnitude pruning removes.
    """
    flags = jax.tree.leaves(prunable_tree(params, prunable))
    mags = np.concatenate([np.abs(np.asarray(x)).ravel()
                           for x, f in zip(jax.tree.leaves(params), flags, strict=True) if f])
    order = np.argsort(mags, kind="stable")
    ranks = np.empty(order.size, np.int32)
    ranks[order] = np.arange(order.size, dtype=np.int32)
    return ranks


@functools.partial(jax.jit, static_argnums=(0, 6))
def _sweep(model, params, stats, batches, ranks, ks, flags):
    leaves, treedef = jax.tree.flatten(params)
    sizes = [x.size for x, f in zip(leaves, flags, strict=True) if f]
    offsets = np.concatenate([[0], np.cumsum(sizes)])

    def at(k):
        keep = ranks >= k
        out, j = [], 0
        for x, f in zip(leaves, flags, strict=True):
            if f:
                out.append(x * keep[offsets[j]:offsets[j + 1]].reshape(x.shape))
                j += 1
            else:
                out.append(x)
        r = evaluate(model, jax.tree.unflatten(treedef, out), stats, batches)
        return r.accuracy, r.loss

    return jax.lax.map(at, ks)


def magnitude_sweep(model: Any, params: PyTree, batch_stats: PyTree, batches: dict[str, Any],
                    sparsities: np.ndarray, *, prunable: PyTree | None = None,
                    ranks: np.ndarray | None = None) -> SweepResult:
    """Global one-shot magnitude pruning at every sparsity, evaluated in one compiled map.

    At sparsity ``s`` the ``floor(s * D_p)`` smallest-magnitude prunable weights are zeroed
    (ties: lower flat index first, the convention of :func:`prune_jax.magnitude_mask`),
    with no fine-tuning (SPEC 2.4 LOMP). Pass ``ranks`` from :func:`global_ranks` to reuse
    the sort across calls.
    """
    sparsities = np.asarray(sparsities, dtype=np.float64)
    if sparsities.ndim != 1 or np.any((sparsities < 0) | (sparsities >= 1)):
        raise ValueError("sparsities must be a 1-D array of values in [0, 1)")
    flags = tuple(jax.tree.leaves(prunable_tree(params, prunable)))
    ranks = global_ranks(params, prunable) if ranks is None else ranks
    ks = np.floor(sparsities * ranks.size).astype(np.int32)
    acc, loss = _sweep(model, params, batch_stats, batches, jnp.asarray(ranks),
                       jnp.asarray(ks), flags)
    return SweepResult(sparsities, np.asarray(acc), np.asarray(loss))


def actual_limit(sweep: SweepResult, dense_accuracy: float, tolerance: float = 0.0) -> float:
    """Largest swept sparsity before the first one whose accuracy < dense - tolerance."""
    order = np.argsort(sweep.sparsity)
    s, acc = sweep.sparsity[order], sweep.accuracy[order]
    ok = acc >= dense_accuracy - tolerance - 1e-9
    if ok.all():
        return float(s[-1])
    first_bad = int(np.argmin(ok))
    return float(s[first_bad - 1]) if first_bad > 0 else 0.0


def _merge(a: SweepResult, b: SweepResult) -> SweepResult:
    s = np.concatenate([a.sparsity, b.sparsity])
    s, idx = np.unique(s, return_index=True)
    acc = np.concatenate([a.accuracy, b.accuracy])[idx]
    loss = np.concatenate([a.loss, b.loss])[idx]
    return SweepResult(s, acc, loss)


def run(config: Config) -> dict[str, Any]:
    """Run the limit pipeline; return (and save) its results."""
    timer = common.Timer(show=config.progress)
    setup, trained, k_spec = common.set_up_and_train(config, timer, train_stage="train (l1)")
    params, stats = trained.state.params, trained.state.batch_stats
    flags = prunable_tree(params)
    selected, rest = partition(params, flags)
    ce = common.full_data_loss(setup, stats)
    dense = evaluate(setup.model, params, stats, setup.test_batches)

    with timer("eps"):
        def loss_with_l1(p: PyTree, batch: dict) -> jax.Array:
            l1_term = sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(partition(p, flags)[0]))
            return ce(p, batch) + config.l1 * l1_term

        # per-batch losses at the *training* batch size, as the reference code measures them
        eps_batches = preprocess_batches(
            D.padded_batches(setup.train, min(config.batch_size, setup.train.x.shape[0])),
            setup.info)
        tol = L.loss_tolerance(loss_with_l1, params, eps_batches)
        eps = float(tol.std) if config.eps is None else config.eps

    with timer("spectrum (SLQ)"):
        def loss_sub(sel: PyTree, batch: dict) -> jax.Array:
            return ce(combine(sel, rest), batch)

        spec = compute_spectrum(loss_sub, selected, setup.train_batches, key=k_spec,
                                probes=config.probes, steps=config.steps, top_k=1,
                                top_steps=config.steps)
    sq = spec["slq"]
    slq_zero = C.slq_zero_mass(sq, tol=config.zero_tol)
    row_zero = None
    if config.zero_mass == "rows":
        with timer("zero mass (Hessian rows)"):
            row_zero = C.hessian_row_zero_mass(spec["operator"], selected, tol=config.zero_tol)
    with timer("predict"):
        atom = 0.0 if row_zero is None else row_zero.fraction
        pred = L.predict_sparsity_limit(params, sq, eps, zero_mass=atom)
        trace_abs = float(sq.expect(jnp.abs) * sq.dim)

    with timer("LOMP sweep"):
        grid = np.linspace(0.0, 0.99, config.sweep_points)
        ranks = global_ranks(params)
        sweep = magnitude_sweep(setup.model, params, stats, setup.test_batches, grid,
                                ranks=ranks)
        dense_acc = float(dense.accuracy)
        act = actual_limit(sweep, dense_acc, config.tolerance)
        for _ in range(2):  # refine between the last passing and the first failing point
            hi = sweep.sparsity[sweep.sparsity > act]
            if hi.size == 0:
                break
            fine = np.linspace(act, float(hi.min()), 12)[1:-1]
            sweep = _merge(sweep, magnitude_sweep(setup.model, params, stats,
                                                  setup.test_batches, fine, ranks=ranks))
            act = actual_limit(sweep, dense_acc, config.tolerance)

    trace_curve = np.asarray(L.trace_width_bound(
        trace_abs, sq.dim, np.asarray(_distances(params, pred.curve_sparsity)), eps))
    result = {
        "config": config,
        "dimension_prunable": int(sq.dim),
        "dense_test_accuracy": dense_acc,
        "dense_test_loss": float(dense.loss),
        "eps": eps,
        "eps_per_batch_losses": tol.losses,
        "predicted_sparsity": float(pred.sparsity),
        "actual_sparsity": act,
        "gap": float(pred.sparsity) - act,
        "distance_at_prediction": float(pred.distance),
        "trace_abs_slq": trace_abs,
        "zero_mass_slq": float(slq_zero.estimate),
        "zero_mass_slq_stderr": float(slq_zero.stderr),
        "zero_mass_rows": None if row_zero is None else row_zero.fraction,
        "top_eigenvalue": float(spec["top"].eigenvalues[0]),
        "trace_hutchinson": float(spec["trace"].estimate),
        "trace_hutchinson_stderr": float(spec["trace"].stderr),
        "sweep": {"sparsity": sweep.sparsity, "accuracy": sweep.accuracy, "loss": sweep.loss},
        "curve": {"sparsity": pred.curve_sparsity, "width_fraction": pred.curve_width_fraction,
                  "trace_bound": trace_curve},
        "slq": {"nodes": sq.nodes, "weights": sq.weights},
        "train_history": trained.history,
        "seconds": timer.seconds,
    }
    out = config.out
    common.save_json(out / "limit.json", result)
    plots.save(plots.spectral_density(sq, top_eigenvalues=[result["top_eigenvalue"]]),
               out / "spectral_density.png")
    plots.save(plots.accuracy_vs_sparsity(sweep.sparsity, sweep.accuracy, loss=sweep.loss,
                                          dense_accuracy=dense_acc, predicted=pred.sparsity,
                                          actual=act), out / "accuracy_vs_sparsity.png")
    plots.save(plots.fixed_point(np.asarray(pred.curve_sparsity),
                                 np.asarray(pred.curve_width_fraction), float(pred.sparsity),
                                 trace_bound=trace_curve), out / "fixed_point.png")
    _print_table(config, result)
    return result


def _distances(params: PyTree, sparsities: Any) -> np.ndarray:
    """R(s): l2 norm of the floor(s D_p) smallest prunable weights (for the trace curve)."""
    leaves = [np.abs(np.asarray(x)).ravel() for x, f in
              zip(jax.tree.leaves(params), jax.tree.leaves(prunable_tree(params)), strict=True)
              if f]
    sq = np.sort(np.concatenate(leaves).astype(np.float64) ** 2)
    csum = np.concatenate([[0.0], np.cumsum(sq)])
    k = np.floor(np.asarray(sparsities) * sq.size).astype(np.int64)
    return np.sqrt(csum[k])


def _print_table(config: Config, r: dict[str, Any]) -> None:
    t = Table(title=f"Pruning limit: {config.model} on {config.dataset} "
                    f"(D_p = {r['dimension_prunable']:,} prunable weights)")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("predicted sparsity (SPEC 2.3)", f"{r['predicted_sparsity']:.4f}")
    t.add_row("actual sparsity (LOMP, no fine-tuning)", f"{r['actual_sparsity']:.4f}")
    t.add_row("gap (predicted - actual)", f"{r['gap']:+.4f}")
    t.add_row("dense test accuracy", f"{r['dense_test_accuracy']:.4f}")
    t.add_row("eps (loss tolerance)", f"{r['eps']:.4g}")
    t.add_row("distance R at prediction", f"{r['distance_at_prediction']:.4g}")
    t.add_row("tr|H| (SLQ)", f"{r['trace_abs_slq']:.4g}")
    t.add_row("tr H (Hutchinson +- stderr)",
              f"{r['trace_hutchinson']:.4g} +- {r['trace_hutchinson_stderr']:.2g}")
    t.add_row("top eigenvalue", f"{r['top_eigenvalue']:.4g}")
    t.add_row("near-zero mass: SLQ weight (+- stderr)",
              f"{r['zero_mass_slq']:.3g} +- {r['zero_mass_slq_stderr']:.2g}")
    if r["zero_mass_rows"] is not None:
        t.add_row("near-zero mass: Hessian rows (added as atom)", f"{r['zero_mass_rows']:.3g}")
    for name, sec in r["seconds"].items():
        t.add_row(f"wall time: {name}", f"{sec:.1f} s")
    console.print(t)
    console.print(f"wrote {config.out}/limit.json and plots")
