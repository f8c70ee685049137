"""``prune-jax limit``: the fundamental pruning limit, predicted and checked (SPEC section 2).

1. Train under ``optax.chain(prune_jax.l1(lambda), sgd)`` (SPEC 2.4), or resume the orbax
   checkpoint in ``--out``. The l1 budget ``lr * lambda * steps / (1 - momentum)`` is recorded
   next to the initial weight scale.
2. ``eps``: the spread of the per-batch training loss (with the l1 term, inference mode) on
   shuffled batches of the training batch size, averaged over ``--eps-shuffles`` shuffles
   (:func:`prune_jax.shuffled_loss_tolerance`); ``--eps`` overrides it.
3. The spectrum of the full-training-set Hessian with respect to the prunable kernels: SLQ,
   or with ``--spectrum exact`` every eigenvalue (dense Hessian from HVPs, then ``eigh``;
   the SLQ prediction on the same weights is reported beside it). The predicted limit is the
   exact fixed point of SPEC 2.3, with regime diagnostics
   (:func:`prune_jax.regime_diagnostics`) that say why a gap may be large.
4. LOMP: global one-shot magnitude pruning on a uniform sparsity grid (default: the reference
   code's 0.001 grid), refined to ``--sweep-resolution`` between and around both readings of
   the actual limit (SPEC 2.4): (a) the last
   sparsity before the first drop below the dense accuracy minus ``--tolerance``; (b) the
   reference code's, the largest sparsity whose accuracy is still within the tolerance. Both
   are also read at a one-test-example tolerance. Every point is evaluated inside one
   compiled ``lax.map``.
5. The same pruning on the training data (:func:`prune_jax.training_check`): the theory's
   loss criterion and the accuracy there, and the test-minus-training loss in units of eps.
6. A table (stdout), ``limit.json`` and three plots (spectral density, accuracy vs sparsity
   with the prediction and both readings, the fixed-point crossing).
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
from prune_jax import limits as L
from prune_jax import plots, ranking
from prune_jax.curvature.exact import exact_eigenvalues
from prune_jax.experiments import common
from prune_jax.experiments.common import flag
from prune_jax.experiments.progress import console, results_console
from prune_jax.experiments.spectrum import compute_spectrum
from prune_jax.experiments.train import TrainingDiverged, evaluate, loss_and_updates
from prune_jax.tree import PyTree, combine, partition, prunable_leaves, prunable_tree
from prune_jax.validate import check_fraction, check_int

__all__ = ["ActualLimits", "Config", "SweepResult", "actual_limits", "global_ranks",
           "loss_limit", "magnitude_sweep", "refine_quadrature", "refine_sweep", "run"]


@dataclasses.dataclass(frozen=True)
class Config(common.RunConfig):
    """Options of ``prune-jax limit`` (each field is a command-line flag).

    The offline default recipe (``mlp_small`` on digits, 200 epochs of batch 128, l1 2e-3)
    was chosen from a measured sweep of l1 budgets (docs/results.md): it puts the network in
    the sparse regime that the theory describes.
    """

    epochs: int = flag(200, "training epochs (SPEC 2.4 reference: 200)", low=1, training=True)
    batch_size: int = flag(128, "training batch size (reference: 128); also the eps batch size",
                           low=1, training=True)
    l1: float = flag(2e-3, "l1 strength lambda on the prunable kernels (digits default from "
                     "a measured sweep; the CIFAR reference values, e.g. 5e-5, are sized for "
                     "391 steps per epoch)", low=0, training=True)
    spectrum: str = flag("slq", "Hessian spectrum: slq (stochastic Lanczos quadrature) or "
                         "exact (dense Hessian from HVPs + eigh, D up to ~2e4; the SLQ "
                         "prediction is reported beside it)", choices=("slq", "exact"))
    probes: int = flag(16, "SLQ probe vectors", low=1)
    steps: int = flag(64, "Lanczos steps per probe", low=2)
    max_steps: int = flag(512, "SLQ refinement: while the quadrature mass next to the critical "
                          "curvature 2 eps / R^2 is large, the steps are doubled up to this "
                          "until that mass is below 0.05", low=2)
    eps: float | None = flag(None, "loss tolerance; default: std of the per-batch training "
                             "loss (l1 term included) on shuffled batches (SPEC 2.3)",
                             positive=True)
    eps_shuffles: int = flag(5, "shuffles averaged for the default eps", low=1)
    tolerance: float = flag(0.0, "accuracy drop allowed when reading off the actual limit",
                            low=0.0, high=1.0)
    zero_mass: str = flag("none", "near-zero eigenvalue mass added as an atom at 0 (SPEC 1.3): "
                          "none, or rows (the reference code's Hessian-row estimator)",
                          choices=("none", "rows"))
    zero_tol: float = flag(1e-7, "row l1 norm (rows) / |eigenvalue| (SLQ report) below which "
                           "a direction counts as zero", positive=True)
    sweep_points: int = flag(1000, "points of the uniform sparsity grid in [0, 0.999] (1000: "
                             "the reference code's 0.001 grid)", low=2)
    sweep_resolution: float = flag(1e-3, "grid spacing reached in the transition region "
                                   "between the two readings of the actual limit",
                                   positive=True, high=0.1)
    out: Path = flag(Path("results/limit"), "output directory (checkpoints, JSON, plots)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_steps < self.steps:
            raise common.UserError(f"--max-steps {self.max_steps} is below --steps {self.steps}: "
                                   "give --max-steps at least --steps")


class SweepResult(NamedTuple):
    """Test accuracy and loss of the globally magnitude-pruned model at each sparsity."""

    sparsity: np.ndarray
    accuracy: np.ndarray
    loss: np.ndarray


def global_ranks(params: PyTree, prunable: PyTree | None = None) -> np.ndarray:
    """Rank of every prunable weight in ascending magnitude (ties: lower flat index first):
    the weights with rank ``< k`` are the ``k`` that global magnitude pruning removes
    (:func:`prune_jax.ranking.ranks`, the convention of :func:`prune_jax.magnitude_mask`)."""
    return ranking.ranks(ranking.rank_magnitudes(prunable_leaves(params, prunable)))


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


class ActualLimits(NamedTuple):
    """The two readings of the actual limit from a sparsity sweep (SPEC 2.4).

    Attributes:
        before_first_drop: (a) the last swept sparsity before the first one whose accuracy
            falls below ``dense - tolerance``.
        largest_passing: (b) the reference code's reading: the largest swept sparsity whose
            accuracy is still at least ``dense - tolerance`` (scanning from the top).
    """

    before_first_drop: float
    largest_passing: float


def actual_limits(sweep: SweepResult, dense_accuracy: float,
                  tolerance: float = 0.0) -> ActualLimits:
    """Both readings of the actual limit (:class:`ActualLimits`) from ``sweep``.

    Example:
        >>> sw = SweepResult(np.array([0.0, 0.1, 0.2, 0.3]), np.array([0.9, 0.8, 0.9, 0.5]),
        ...                  np.zeros(4))
        >>> actual_limits(sw, dense_accuracy=0.9)
        ActualLimits(before_first_drop=0.0, largest_passing=0.2)
    """
    order = np.argsort(sweep.sparsity)
    s, acc = sweep.sparsity[order], sweep.accuracy[order]
    ok = acc >= dense_accuracy - tolerance - 1e-9
    if ok.all():
        return ActualLimits(float(s[-1]), float(s[-1]))
    first_bad = int(np.argmin(ok))
    before = float(s[first_bad - 1]) if first_bad > 0 else 0.0
    passing = np.flatnonzero(ok)
    return ActualLimits(before, float(s[passing[-1]]) if passing.size else 0.0)


def loss_limit(sweep: SweepResult, dense_loss: float, eps: float) -> float:
    """The theory's own criterion read off the sweep: the last swept sparsity before the test
    loss first exceeds ``dense_loss + eps`` (the loss sub-level set of SPEC 2.1, on test data).

    The accuracy readings of :func:`actual_limits` are stricter where a loss increase below
    ``eps`` already flips test examples; this reading separates that from the prediction.

    Example:
        >>> sw = SweepResult(np.array([0.0, 0.1, 0.2]), np.ones(3), np.array([1.0, 1.05, 1.2]))
        >>> loss_limit(sw, dense_loss=1.0, eps=0.1)
        0.1
    """
    order = np.argsort(sweep.sparsity)
    s, loss = sweep.sparsity[order], sweep.loss[order]
    ok = loss <= dense_loss + eps
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


def refine_sweep(evaluate_at: Any, sweep: SweepResult, dense_accuracy: float,
                 tolerances: tuple[float, ...], resolution: float) -> SweepResult:
    """Sample the transition region of ``sweep`` uniformly at ``resolution``.

    For every tolerance, the region runs from reading (a) to the first swept point above
    reading (b): where the accuracy first drops, wanders, and finally stays below the
    threshold. Sampling all of it (not only the two brackets) keeps an isolated passing
    point inside the region from being missed by reading (b). ``evaluate_at(sparsities) ->
    SweepResult``; repeated until no reading moves.
    """
    for _ in range(4):
        new = []
        for tol in tolerances:
            lo, hi = actual_limits(sweep, dense_accuracy, tol)
            above = sweep.sparsity[sweep.sparsity > hi]
            hi = float(above.min()) if above.size else hi
            new.append(np.arange(lo, hi, resolution))
        points = np.setdiff1d(np.round(np.unique(np.concatenate(new)), 12),
                              np.round(sweep.sparsity, 12))
        points = points[points < 1.0]
        if points.size == 0:
            break
        sweep = _merge(sweep, evaluate_at(points))
    return sweep


EXACT_MAX_DIM = 30_000
"""Largest number of prunable weights for ``--spectrum exact`` (the dense Hessian takes
``D_p^2`` float64 values: 7.2 GB at this size, plus LAPACK's copy)."""


def _check_setup(config: Config, setup: common.Setup) -> None:
    num = sum(int(np.size(x)) for x in prunable_leaves(setup.variables["params"]))
    if config.spectrum == "exact" and num > EXACT_MAX_DIM:
        raise common.UserError(
            f"--spectrum exact builds the dense Hessian of the D_p = {num:,} prunable weights "
            f"({8 * num * num / 1e9:.0f} GB in float64; at most {EXACT_MAX_DIM:,} weights "
            "here): use --spectrum slq")


class _Eps(NamedTuple):
    value: float
    spread: float
    measured: L.LossTolerance


def _measure_eps(config: Config, setup: common.Setup, params: PyTree, stats: PyTree,
                 key: jax.Array) -> _Eps:
    """Shuffled-batch eps (SPEC 2.3): l1 term included, inference mode, training batch size."""
    flags = prunable_tree(params)
    model = setup.model

    def loss_with_l1(p: PyTree, batch: dict) -> jax.Array:
        ce = loss_and_updates(model, p, stats, batch["x"], batch["y"])[0]
        return ce + config.l1 * sum(jnp.sum(jnp.abs(x)) for x in
                                    jax.tree.leaves(partition(p, flags)[0]))

    x = common.inference_inputs(setup, setup.train)
    tol = L.shuffled_loss_tolerance(loss_with_l1, params, {"x": x, "y": jnp.asarray(setup.train.y)},
                                    batch_size=min(config.batch_size, x.shape[0] // 2), key=key,
                                    num_shuffles=config.eps_shuffles)
    if not np.isfinite(float(tol.std)):
        raise TrainingDiverged(f"the trained model's per-batch losses overflow (eps = "
                               f"{float(tol.std)}): training diverged; lower --learning-rate "
                               "and run again with --overwrite")
    value = float(tol.std) if config.eps is None else config.eps
    return _Eps(value, float(tol.spread), tol)


def refine_quadrature(operator: Any, like: PyTree, params: PyTree, quad: Any, eps: float, *,
                      key: jax.Array, max_steps: int, zero_mass: float = 0.0,
                      min_mass: float = 0.05) -> tuple[Any, list[tuple[int, float]]]:
    """More Lanczos steps only where they are needed: SLQ near ``2 eps / R^2`` (SPEC 2.3).

    ``F(R) = (1/D) tr[(I + R^2 |H| / 2 eps)^-1]`` changes on the scale of the critical
    curvature ``2 eps / R(s*)^2``. When that scale sits among the small Ritz values (quadrature
    mass above ``min_mass`` next to it, :func:`prune_jax.regime_diagnostics`), a Gauss rule of
    ``m`` nodes resolves it coarsely and ``s*`` comes out low. SLQ is rerun with twice the steps
    (the same number of probes, drawn from ``key`` each time) until that mass is at most
    ``min_mass`` or ``max_steps`` is reached.
    Returns the final quadrature and the ``(steps, s*)`` history.
    """
    max_steps = check_int(max_steps, "max_steps", low=2)
    min_mass = check_fraction(min_mass, "min_mass")

    def predict(q: Any) -> tuple[float, float]:
        lim = L.predict_sparsity_limit(params, q, eps, zero_mass=zero_mass)
        mass = L.regime_diagnostics(params, q, eps, lim, eps_spread=0.0,
                                    zero_mass=zero_mass).critical_mass
        return float(lim.sparsity), mass

    probes, steps = np.shape(quad.nodes)
    s, mass = predict(quad)
    history = [(steps, s)]
    while 2 * steps <= max_steps and mass > min_mass:
        steps *= 2
        quad = C.slq(operator, like, key=key, num_probes=probes, num_steps=steps)
        s, mass = predict(quad)
        history.append((steps, s))
    return quad, history


def _prediction(params: PyTree, spectrum: Any, eps: _Eps, atom: float
                ) -> tuple[L.SparsityLimit, L.Regime]:
    pred = L.predict_sparsity_limit(params, spectrum, eps.value, zero_mass=atom)
    regime = L.regime_diagnostics(params, spectrum, eps.value, pred, eps_spread=eps.spread,
                                  zero_mass=atom)
    return pred, regime


def run(config: Config, *, report: bool = True) -> dict[str, Any]:
    """Run the limit pipeline; return (and save) its results.

    ``report=False`` skips the table and the plots (``limit.json`` is still written).
    """
    timer = common.Timer(show=config.progress)
    setup, trained, key = common.set_up_and_train(config, timer, train_stage="train (l1)",
                                                  check=functools.partial(_check_setup, config))
    k_eps, k_spec = jax.random.split(key)
    params, stats = trained.state.params, trained.state.batch_stats
    selected, rest = partition(params, prunable_tree(params))
    ce = common.full_data_loss(setup, stats)
    dense = evaluate(setup.model, params, stats, setup.test_batches)

    with timer("eps"):
        eps = _measure_eps(config, setup, params, stats, k_eps)

    def loss_sub(sel: PyTree, batch: dict) -> jax.Array:
        return ce(combine(sel, rest), batch)

    def spectrum_stage() -> dict[str, np.ndarray]:
        with timer("spectrum (SLQ)"):
            spec = compute_spectrum(loss_sub, selected, setup.train_batches, key=k_spec,
                                    probes=config.probes, steps=config.steps, top_k=1,
                                    top_steps=config.steps)
        values = {"dim": np.asarray(spec["slq"].dim),
                  "top": np.asarray(spec["top"].eigenvalues[0]),
                  "trace": np.asarray([spec["trace"].estimate, spec["trace"].stderr])}
        if config.spectrum == "exact":
            with timer("spectrum (exact)"):
                values["exact"] = exact_eigenvalues(spec["operator"], selected)
        if config.zero_mass == "rows":
            with timer("zero mass (Hessian rows)"):
                values["row_zero"] = np.asarray(C.hessian_row_zero_mass(
                    spec["operator"], selected, tol=config.zero_tol).fraction)
        with timer("SLQ refinement"):
            quad, history = refine_quadrature(
                spec["operator"], selected, params, spec["slq"], eps.value, key=k_spec,
                max_steps=config.max_steps, zero_mass=float(values.get("row_zero", 0.0)))
        values.update(nodes=quad.nodes, weights=quad.weights, slq_steps=np.asarray(history))
        return values

    # flags that change the spectrum; a rerun with other flags (sweep, eps, tolerance) reuses it
    stage = common.cached_stage(
        config.out / "checkpoints" / "spectrum", spectrum_stage,
        {f: getattr(config, f) for f in ("spectrum", "probes", "steps", "max_steps", "eps",
                                         "zero_mass", "zero_tol", "eval_batch_size")})
    sq = C.SpectralQuadrature(stage["nodes"], stage["weights"], int(stage["dim"]))
    exact = stage.get("exact")
    row_zero = float(stage["row_zero"]) if "row_zero" in stage else None
    atom = 0.0 if row_zero is None else row_zero
    with timer("predict"):
        pred_slq, regime_slq = _prediction(params, sq, eps, atom)
        pred_exact, regime_exact = (None, None) if exact is None else _prediction(
            params, exact, eps, atom)
    pred, regime = (pred_slq, regime_slq) if exact is None else (pred_exact, regime_exact)

    with timer("LOMP sweep"):
        ranks = global_ranks(params)
        dense_acc = float(dense.accuracy)
        one_example = 1.0 / setup.test.x.shape[0]
        tolerances = (config.tolerance, config.tolerance + one_example)

        def evaluate_at(points: np.ndarray) -> SweepResult:
            return magnitude_sweep(setup.model, params, stats, setup.test_batches, points,
                                   ranks=ranks)

        sweep = evaluate_at(np.linspace(0.0, 0.999, config.sweep_points))
        sweep = refine_sweep(evaluate_at, sweep, dense_acc, tolerances, config.sweep_resolution)
        actual = actual_limits(sweep, dense_acc, tolerances[0])
        actual_1 = actual_limits(sweep, dense_acc, tolerances[1])
        actual_loss = loss_limit(sweep, float(dense.loss), eps.value)

    with timer("training-data check"):  # the same pruning on the data the prediction used
        train_sweep = magnitude_sweep(setup.model, params, stats, setup.train_batches,
                                      np.linspace(0.0, 0.999, config.sweep_points), ranks=ranks)
        train_loss, train_acc = float(train_sweep.loss[0]), float(train_sweep.accuracy[0])
        check = L.training_check(
            float(pred.sparsity), loss_limit=loss_limit(train_sweep, train_loss, eps.value),
            accuracy_limit=actual_limits(train_sweep, train_acc).before_first_drop,
            train_loss=train_loss, test_loss=float(dense.loss), eps=eps.value)

    trace_abs = float(sq.expect(np.abs) * sq.dim)
    trace_curve = np.asarray(L.trace_width_bound(
        trace_abs, sq.dim, np.asarray(_distances(params, pred.curve_sparsity)), eps.value))
    init_kernels = prunable_leaves(setup.variables["params"])
    init_scale = float(np.sqrt(np.mean(np.concatenate(
        [np.square(np.asarray(x, np.float64)).ravel() for x in init_kernels]))))
    result = {
        "config": config,
        "dimension_prunable": int(sq.dim),
        "l1_budget": common.l1_budget(config, setup.train.x.shape[0]),
        "init_scale": init_scale,
        "dense_test_accuracy": dense_acc,
        "dense_test_loss": float(dense.loss),
        "num_test": int(setup.test.x.shape[0]),
        "eps": eps.value,
        "eps_spread": eps.spread,
        "eps_measured": float(eps.measured.std),
        "eps_per_batch_losses": eps.measured.losses,
        "spectrum": config.spectrum,
        "predicted_sparsity": float(pred.sparsity),
        "predicted_sparsity_slq": float(pred_slq.sparsity),
        "predicted_sparsity_exact": None if pred_exact is None else float(pred_exact.sparsity),
        "actual": {"tolerance": config.tolerance, **actual._asdict()},
        "actual_one_example": {"tolerance": tolerances[1], **actual_1._asdict()},
        "actual_loss_within_eps": actual_loss,
        "gap": {name: float(pred.sparsity) - v for name, v in actual._asdict().items()},
        "regime": regime._asdict(),
        "training_check": {**check._asdict(), "dense_train_loss": train_loss,
                           "dense_train_accuracy": train_acc},
        "warnings": list(regime.warnings + check.warnings),
        "regime_slq": regime_slq._asdict(),
        "slq_steps": [[int(m), float(v)] for m, v in stage["slq_steps"]],
        "distance_at_prediction": float(pred.distance),
        "trace_abs_slq": trace_abs,
        "zero_mass_rows": row_zero,
        "top_eigenvalue": float(stage["top"]),
        "trace_hutchinson": float(stage["trace"][0]),
        "trace_hutchinson_stderr": float(stage["trace"][1]),
        "sweep": {"sparsity": sweep.sparsity, "accuracy": sweep.accuracy, "loss": sweep.loss},
        "train_sweep": {"sparsity": train_sweep.sparsity, "accuracy": train_sweep.accuracy,
                        "loss": train_sweep.loss},
        "curve": {"sparsity": pred.curve_sparsity, "width_fraction": pred.curve_width_fraction,
                  "trace_bound": trace_curve},
        "slq": {"nodes": sq.nodes, "weights": sq.weights},
        "exact_eigenvalues_summary": None if exact is None else _summary(exact),
        "train_history": trained.history,
        "seconds": timer.seconds,
    }
    out = config.out
    common.save_json(out / "limit.json", result)
    if exact is not None:
        np.save(out / "exact_eigenvalues.npy", exact)
    if not report:
        return result
    plots.save(plots.spectral_density(sq, top_eigenvalues=[result["top_eigenvalue"]],
                                      exact_eigenvalues=exact), out / "spectral_density.png")
    plots.save(plots.accuracy_vs_sparsity(
        sweep.sparsity, sweep.accuracy, loss=sweep.loss, dense_accuracy=dense_acc,
        predicted=pred.sparsity,
        actual={"(a) before first drop": actual.before_first_drop,
                "(b) largest passing": actual.largest_passing,
                "training loss within eps": check.loss_limit}),
        out / "accuracy_vs_sparsity.png")
    plots.save(plots.fixed_point(np.asarray(pred.curve_sparsity),
                                 np.asarray(pred.curve_width_fraction), float(pred.sparsity),
                                 trace_bound=trace_curve), out / "fixed_point.png")
    _print_table(config, result)
    return result


def _summary(eigenvalues: np.ndarray) -> dict[str, float]:
    ev = np.asarray(eigenvalues)
    return {"min": float(ev.min()), "max": float(ev.max()),
            "fraction_negative": float(np.mean(ev < 0)),
            "fraction_below_1e-7": float(np.mean(np.abs(ev) < 1e-7)),
            "trace": float(ev.sum()), "trace_abs": float(np.abs(ev).sum())}


def _distances(params: PyTree, sparsities: Any) -> np.ndarray:
    """R(s): l2 norm of the floor(s D_p) smallest prunable weights (for the trace curve)."""
    ranked = ranking.rank_magnitudes(prunable_leaves(params), with_order=False)
    k = np.floor(np.asarray(sparsities) * ranked.magnitudes.size).astype(np.int64)
    return ranking.prefix_norms(ranked, k)


def _print_table(config: Config, r: dict[str, Any]) -> None:
    t = Table(title=f"Pruning limit: {config.model} on {config.dataset} "
                    f"(D_p = {r['dimension_prunable']:,} prunable weights, seed {config.seed})")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    a, a1 = r["actual"], r["actual_one_example"]
    pred = r["predicted_sparsity"]
    label = "exact spectrum" if r["spectrum"] == "exact" else "SLQ"
    t.add_row(f"predicted sparsity ({label})", f"{pred:.4f}")
    if r["spectrum"] == "exact":
        t.add_row("predicted sparsity (SLQ, same weights)", f"{r['predicted_sparsity_slq']:.4f}")
    if len(r["slq_steps"]) > 1:
        t.add_row("SLQ refined (Lanczos steps: prediction)",
                  ", ".join(f"{m}: {v:.4f}" for m, v in r["slq_steps"]))
    t.add_row(f"actual (a) last before first drop (tol {a['tolerance']:.4g})",
              f"{a['before_first_drop']:.4f}  (gap {pred - a['before_first_drop']:+.4f})")
    t.add_row(f"actual (b) largest passing, reference reading (tol {a['tolerance']:.4g})",
              f"{a['largest_passing']:.4f}  (gap {pred - a['largest_passing']:+.4f})")
    t.add_row(f"  at a 1-test-example tolerance ({a1['tolerance']:.4f}): (a) / (b)",
              f"{a1['before_first_drop']:.4f} / {a1['largest_passing']:.4f}")
    t.add_row("  test loss within eps of the dense loss (the theory's criterion)",
              f"{r['actual_loss_within_eps']:.4f}  (gap {pred - r['actual_loss_within_eps']:+.4f})")
    c = r["training_check"]
    t.add_row("training data, same pruning: loss within eps / accuracy (a)",
              f"{c['loss_limit']:.4f} / {c['accuracy_limit']:.4f}  "
              f"(gap {pred - c['loss_limit']:+.4f} / {pred - c['accuracy_limit']:+.4f})")
    t.add_row("dense test loss - training loss, in eps", f"{c['generalisation_gap']:.1f}")
    t.add_row("dense test accuracy", f"{r['dense_test_accuracy']:.4f} on {r['num_test']} "
              "test examples")
    t.add_row("eps (shuffled batches, mean +- spread)" if config.eps is None else "eps (--eps)",
              f"{r['eps']:.4g} +- {r['eps_spread']:.2g}")
    t.add_row("l1 budget lr*l1*steps/(1-m) / init weight scale",
              f"{r['l1_budget']:.3g} / {r['init_scale']:.3g}")
    reg = r["regime"]
    t.add_row("near-zero prunable weights", f"{reg['near_zero_fraction']:.4f}")
    t.add_row("critical curvature 2 eps / R^2; mass next to it",
              f"{reg['critical_curvature']:.3g}; {reg['critical_mass']:.3f}")
    t.add_row("sensitivity d s*/d log eps; s* shift over eps spread",
              f"{reg['sensitivity']:+.4f}; {reg['eps_shift']:.4f}")
    t.add_row("distance R at prediction", f"{r['distance_at_prediction']:.4g}")
    t.add_row("tr H (Hutchinson +- stderr); top eigenvalue",
              f"{r['trace_hutchinson']:.4g} +- {r['trace_hutchinson_stderr']:.2g}; "
              f"{r['top_eigenvalue']:.4g}")
    if r["zero_mass_rows"] is not None:
        t.add_row("near-zero mass: Hessian rows (added as atom)", f"{r['zero_mass_rows']:.3g}")
    for name, sec in r["seconds"].items():
        t.add_row(f"wall time: {name}", f"{sec:.1f} s")
    results_console.print(t)
    for w in r["warnings"]:
        results_console.print(f"[bold yellow]warning:[/] {w}")
    console.print(f"wrote {config.out}/limit.json and plots")
