"""``prune-jax sap``: iterative pruning with SAP, One Shot and Lottery Ticket (SPEC 3.2).

The three policies of the PQI paper (Diao et al., ICLR 2023): **SAP** (Algorithm 1) trains
``m_t * w`` for ``E`` epochs, prunes ``c_t`` weights per scope unit from the PQ-Index bound and
rewinds to ``w_init * m_{t+1}``; **Lottery Ticket** is the same loop pruning a fixed fraction
``P = 0.2`` of the remaining weights of the trained ``w_t``; **One Shot** takes masks from the
magnitudes of the dense trained ``w_0`` and never retrains (the model at iteration ``t`` is
``w_0 * m_t``, the paper's section 4). Where the reference code differs from the paper
(docs/differences.md): no gradient clipping by default (``--clip-norm``), the last epoch is
reported (no best-checkpoint selection by test accuracy), and biases and BatchNorm parameters
are rewound with the kernels.

Each iteration records the retrained and the pruned-only test accuracy, the density, and the
PQ Index and Gini index (global and per layer); the state is checkpointed with orbax after
every iteration, so a killed run resumes to the identical result.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from rich.table import Column, Table

from prune_jax import models as M
from prune_jax import plots
from prune_jax import sparsity as S
from prune_jax.experiments import checkpoint as ckpt
from prune_jax.experiments import common
from prune_jax.experiments.common import flag
from prune_jax.experiments.progress import console, progress_bar, results_console
from prune_jax.experiments.train import OptimizerConfig, evaluate, train
from prune_jax.tree import PyTree, leaf_names, prunable_tree

__all__ = ["Config", "make_policy", "run", "run_method"]

METHODS = ("sap-0.5-1", "sap-1-2", "one-shot", "lottery-ticket")


@dataclasses.dataclass(frozen=True)
class Config(common.RunConfig):
    """Options of ``prune-jax sap`` (each field is a command-line flag)."""

    model: str = flag("mlp", "model name", choices=M.MODEL_NAMES, training=True)
    methods: tuple[str, ...] = flag(METHODS, "methods to run: sap-P-Q (e.g. sap-0.5-1), "
                                    "one-shot, lottery-ticket")
    scope: str = flag("global", "pruning scope", choices=("global", "layer", "neuron"),
                      training=True)
    iterations: int = flag(15, "pruning iterations T (paper: 30 for MLP/CNN, 15 for ResNet18)",
                           low=1, training=True)
    epochs: int = flag(10, "training epochs E per iteration", low=1, training=True)
    learning_rate: float = flag(0.05, "SGD learning rate, momentum 0.9, cosine decay per "
                                "iteration", positive=True, training=True)
    weight_decay: float = flag(5e-4, "weight decay", low=0, training=True)
    clip_norm: float | None = flag(None, "global gradient-norm clipping (reference code: 1)",
                                   positive=True, training=True)
    eta: float = flag(0.0, "SAP eta", low=0, training=True)
    gamma: float = flag(1.0, "SAP gamma", positive=True, training=True)
    beta: float = flag(0.9, "SAP beta (max fraction pruned per iteration)", positive=True,
                       high=1.0, training=True)
    fraction: float = flag(0.2, "One Shot / Lottery Ticket: fraction P of remaining pruned",
                           positive=True, high=0.999, training=True)
    out: Path = flag(Path("results/sap"), "output directory (checkpoints, JSON, plots)")

    def __post_init__(self) -> None:
        super().__post_init__()
        for method in self.methods:
            make_policy(method, self)


def make_policy(method: str, config: Config) -> Any:
    """The pruning policy object of ``method`` (``sap-P-Q``, ``one-shot``, ``lottery-ticket``)."""
    if method.startswith("sap-"):
        try:
            p, q = (float(v) for v in method[4:].split("-"))
        except ValueError as err:
            raise common.UserError(f"--methods: {method!r} is not of the form sap-P-Q "
                                   "(e.g. sap-0.5-1)") from err
        try:
            return S.SAP(p=p, q=q, eta=config.eta, gamma=config.gamma, beta=config.beta)
        except ValueError as err:  # the policy's own check (e.g. p, q of sap-P-Q)
            raise common.UserError(f"--methods {method}: {err}") from err
    if method == "one-shot":
        return S.OneShot(fraction=config.fraction)
    if method == "lottery-ticket":
        return S.LotteryTicket(fraction=config.fraction)
    raise common.UserError(f"--methods: unknown method {method!r}; valid: sap-P-Q, one-shot, "
                           "lottery-ticket")


def _measures(params: PyTree, mask: PyTree, flags: PyTree) -> dict[str, Any]:
    """PQI (p, q) = (0.5, 1) and Gini of the live prunable weights, global and per layer.

    Masked measures keep shapes static, so nothing recompiles as the mask shrinks.
    """
    pick = lambda leaves: [x for x, f in zip(leaves, jax.tree.leaves(flags), strict=True) if f]
    live, live_mask = pick(jax.tree.leaves(params)), pick(jax.tree.leaves(mask))
    per_layer = list(zip(pick(leaf_names(params)), live, live_mask, strict=True))
    return {"pqi": float(S.pq_index(live, 0.5, 1.0, mask=live_mask)),
            "gini": float(S.gini_index(live, mask=live_mask)),
            "pqi_per_layer": {n: float(S.pq_index(x, 0.5, 1.0, mask=m)) for n, x, m in per_layer},
            "gini_per_layer": {n: float(S.gini_index(x, mask=m)) for n, x, m in per_layer}}


def run_method(method: str, config: Config, setup: common.Setup, key: jax.Array,
               out: Path) -> list[dict[str, Any]]:
    """Iterate one policy for ``config.iterations`` iterations, resuming from checkpoints."""
    policy = make_policy(method, config)
    init_params = setup.variables["params"]
    init_stats = setup.variables.get("batch_stats", {})
    flags = prunable_tree(init_params)
    cfg = OptimizerConfig(learning_rate=config.learning_rate, weight_decay=config.weight_decay,
                          clip_norm=config.clip_norm)
    density = lambda m: S.sparsity_report(m, prunable=flags).prunable.density
    state = {"mask": jax.tree.map(lambda x: jnp.ones(x.shape, bool), init_params),
             "dense_params": init_params, "dense_stats": init_stats}
    records: list[dict[str, Any]] = []
    manager = ckpt.manager(out / "checkpoints" / method)
    if manager.latest_step() is not None:
        state, records = ckpt.restore(manager, (state, records))
    start = len(records)
    with progress_bar(f"{method} ({config.scope})", total=config.iterations, completed=start,
                      enabled=config.progress) as bar:
        for t in range(start, config.iterations):
            mask = state["mask"]
            if t == 0 or policy.retrain:  # train w_init * m_t (rewound) for E epochs
                trained = train(setup.model,
                                {"params": S.apply_mask(init_params, mask),
                                 "batch_stats": init_stats},
                                setup.train, setup.info, cfg, epochs=config.epochs,
                                batch_size=min(config.batch_size, setup.train.x.shape[0]),
                                key=jax.random.fold_in(key, t), mask=mask, progress=False)
                params, stats = trained.state.params, trained.state.batch_stats
            else:  # One Shot: the model at iteration t is w_0 * m_t, never retrained
                params, stats = S.apply_mask(state["dense_params"], mask), state["dense_stats"]
            if t == 0:
                state = {**state, "dense_params": params, "dense_stats": stats}
            acc = evaluate(setup.model, params, stats, setup.test_batches)
            source = state["dense_params"] if policy.ranks == "dense" else params
            step = S.prune_step(policy, source, mask, scope=config.scope)
            pruned_acc = evaluate(setup.model, S.apply_mask(params, step.mask), stats,
                                  setup.test_batches)
            records.append({
                "iteration": t, "density": density(mask), "accuracy": float(acc.accuracy),
                "loss": float(acc.loss), "pruned_accuracy": float(pruned_acc.accuracy),
                "density_after_pruning": density(step.mask), **_measures(params, mask, flags)})
            state = {**state, "mask": step.mask}
            ckpt.save(manager, t + 1, (state, records))
            bar.advance(acc=records[-1]["accuracy"], density=records[-1]["density"])
    manager.close()
    return records


def run(config: Config) -> dict[str, Any]:
    """Run every method of ``config.methods`` and write ``sap.json`` and ``sap.png``."""
    k_init, k_train = jax.random.split(jax.random.key(config.seed))
    common.prepare_out(config)
    common.check_resume(config, config.out / "checkpoints")
    setup = common.set_up(config.model, config.dataset, key=k_init,
                          eval_batch_size=config.eval_batch_size, data_dir=config.data_dir)
    results = {m: run_method(m, config, setup, k_train, config.out) for m in config.methods}
    common.save_json(config.out / "sap.json", {"config": config, "records": results})
    plots.save(plots.iterative_trajectories(
        results, title=f"{config.model} on {config.dataset}, {config.scope} scope"),
        config.out / "sap.png")
    columns = ("method", "iteration", "remaining %", "test acc (retrained)",
               "test acc (pruned only)", "PQI(0.5,1)", "Gini")
    table = Table(*(Column(c, justify="right") for c in columns), title=(
        f"Iterative pruning: {config.model} on {config.dataset} ({config.scope} scope)"))
    for m, recs in results.items():
        for r in recs:
            table.add_row(m, str(r["iteration"]), f"{100 * r['density']:.2f}",
                          f"{r['accuracy']:.4f}", f"{r['pruned_accuracy']:.4f}",
                          f"{r['pqi']:.4f}", f"{r['gini']:.4f}")
    results_console.print(table)
    console.print(f"wrote {config.out}/sap.json and {config.out}/sap.png")
    return {"config": config, "records": results}
