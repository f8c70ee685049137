"""``prune-jax calibrate``: predicted against actual pruning limits over a grid of runs.

Every combination of ``--runs`` (data set:model pairs) x ``--l1-budgets`` x ``--seeds`` is one
``prune-jax limit`` run (its own output directory under ``--out``, so an interrupted study
resumes from the finished runs and the trained checkpoints). The l1 strength of each run is
set from its budget ``B = lr * lambda * steps / (1 - momentum)`` (SPEC 2.4), so that one grid
means the same regularisation on data sets with different numbers of steps per epoch. The
study writes ``calibration.json`` (one record per run: the l1 budget, the prediction, both
readings of the actual limit, the regime diagnostics), prints a table with the mean and
largest ``|gap|`` per reading, and plots predicted against actual with the diagonal
(``calibration.png``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from prune_jax import data as D
from prune_jax import models as M
from prune_jax import plots
from prune_jax.experiments import common, limit
from prune_jax.experiments.common import flag
from prune_jax.experiments.progress import console, results_console

__all__ = ["Config", "render_markdown", "run", "summarize"]

READINGS = ("before_first_drop", "largest_passing", "loss_within_eps")


@dataclasses.dataclass(frozen=True)
class Config:
    """Options of ``prune-jax calibrate`` (each field is a command-line flag)."""

    runs: tuple[str, ...] = flag(("digits:mlp_small", "digits:mlp", "mnist1d:mlp_small"),
                                 "data set:model pairs")
    l1_budgets: tuple[float, ...] = flag((0.5, 1.0, 2.0, 4.0, 8.0), "l1 budgets "
                                         "lr*lambda*steps/(1-momentum)", low=0)
    seeds: tuple[int, ...] = flag((0, 1, 2), "seeds", low=0)
    epochs: int = flag(200, "training epochs of every run", low=1)
    batch_size: int = flag(128, "training batch size of every run", low=1)
    learning_rate: float = flag(0.05, "SGD learning rate of every run", positive=True)
    spectrum: str = flag("slq", "slq or exact (see prune-jax limit --spectrum)",
                         choices=("slq", "exact"))
    probes: int = flag(16, "SLQ probe vectors of every run", low=1)
    steps: int = flag(64, "Lanczos steps per SLQ probe of every run", low=2)
    tolerance: float = flag(0.0, "accuracy drop allowed when reading off the actual limit",
                            low=0.0, high=1.0)
    out: Path = flag(Path("results/calibrate"), "output directory (one folder per run)")
    progress: bool = flag(True, "show progress on stderr")

    def __post_init__(self) -> None:
        common.check_fields(self)
        for pair in self.runs:
            dataset, _, model = pair.partition(":")
            if dataset not in D.DATASET_NAMES or model not in M.MODEL_NAMES:
                raise common.UserError(
                    f"--runs: {pair!r} is not data set:model (data sets: "
                    f"{', '.join(D.DATASET_NAMES)}; models: {', '.join(M.MODEL_NAMES)})")


def _run_dir(config: Config, dataset: str, model: str, budget: float, seed: int) -> Path:
    return config.out / dataset / model / f"budget={budget:g}" / f"seed={seed}"


def _l1(config: Config, dataset: str, budget: float) -> float:
    """The l1 strength that gives ``budget`` on ``dataset`` (momentum 0.9)."""
    n = D.load(dataset, "train")[0].x.shape[0]
    steps = config.epochs * (n // min(config.batch_size, n))
    return budget * (1.0 - 0.9) / (config.learning_rate * steps)


def _record(r: dict[str, Any], dataset: str, model: str, l1: float, seed: int) -> dict[str, Any]:
    return {"dataset": dataset, "model": model, "l1": l1, "seed": seed,
            "l1_budget": r["l1_budget"], "init_scale": r["init_scale"],
            "dense_test_accuracy": r["dense_test_accuracy"], "num_test": r["num_test"],
            "eps": r["eps"], "eps_spread": r["eps_spread"],
            "predicted": r["predicted_sparsity"],
            "predicted_slq": r["predicted_sparsity_slq"],
            "predicted_exact": r["predicted_sparsity_exact"],
            "slq_steps": r["slq_steps"],
            **{f"actual_{k}": r["actual"][k] for k in READINGS[:2]},
            **{f"actual_one_example_{k}": r["actual_one_example"][k] for k in READINGS[:2]},
            "actual_loss_within_eps": r["actual_loss_within_eps"],
            "near_zero_fraction": r["regime"]["near_zero_fraction"],
            "critical_mass": r["regime"]["critical_mass"],
            "sensitivity": r["regime"]["sensitivity"],
            "eps_shift": r["regime"]["eps_shift"],
            "training_loss_limit": r["training_check"]["loss_limit"],
            "training_accuracy_limit": r["training_check"]["accuracy_limit"],
            "generalisation_gap": r["training_check"]["generalisation_gap"],
            "warnings": r["warnings"]}


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and largest ``|predicted - actual|`` per reading, over all records and over the
    records without regime warnings (the regime the theory describes)."""
    out: dict[str, Any] = {}
    for subset, recs in (("all", records), ("in_regime", [r for r in records
                                                          if not r["warnings"]])):
        out[subset] = {"runs": len(recs)}
        for k in READINGS:
            gaps = np.array([r["predicted"] - r[f"actual_{k}"] for r in recs])
            out[subset][k] = ({"mean_abs_gap": float(np.mean(np.abs(gaps))),
                               "max_abs_gap": float(np.max(np.abs(gaps))),
                               "mean_gap": float(np.mean(gaps))} if gaps.size else None)
    return out


def run(config: Config) -> dict[str, Any]:
    """Run (or resume) every limit run of the grid; return (and save) the study."""
    records = []
    grid = [(*pair.split(":"), b, s) for pair in config.runs for b in config.l1_budgets
            for s in config.seeds]
    for i, (dataset, model, budget, seed) in enumerate(grid):
        lam = _l1(config, dataset, budget)
        if config.progress:
            console.log(f"[{i + 1}/{len(grid)}] {dataset} {model} budget {budget:g} "
                        f"(l1 {lam:.3g}) seed {seed}")
        cfg = limit.Config(model=model, dataset=dataset, l1=lam, seed=seed, epochs=config.epochs,
                           batch_size=config.batch_size, learning_rate=config.learning_rate,
                           spectrum=config.spectrum, probes=config.probes, steps=config.steps,
                           tolerance=config.tolerance,
                           out=_run_dir(config, dataset, model, budget, seed), progress=False)
        records.append(_record(limit.run(cfg, report=False), dataset, model, lam, seed))
    study = {"config": config, "records": records, "summary": summarize(records)}
    common.save_json(config.out / "calibration.json", study)
    plots.save(plots.calibration(records), config.out / "calibration.png")
    (config.out / "calibration.md").write_text(render_markdown(study))
    _print(study)
    return study


COLUMNS = ("data set", "model", "l1 budget", "l1", "seed", "dense acc.", "near zero", "predicted",
           "(a)", "(b)", "(c) loss", "gap (a)", "gap (b)", "gap (c)", "train loss / acc.",
           "test-train loss / eps", "regime")


def _cells(r: dict[str, Any]) -> list[str]:
    """One run as the cells of :data:`COLUMNS`."""
    p = r["predicted"]
    actual = [r["actual_before_first_drop"], r["actual_largest_passing"],
              r["actual_loss_within_eps"]]
    return [r["dataset"], r["model"], f"{r['l1_budget']:.3g}", f"{r['l1']:.3g}", str(r["seed"]),
            f"{r['dense_test_accuracy']:.4f}", f"{r['near_zero_fraction']:.3f}", f"{p:.4f}",
            *(f"{a:.4f}" for a in actual), *(f"{p - a:+.4f}" for a in actual),
            f"{r['training_loss_limit']:.3f} / {r['training_accuracy_limit']:.3f}",
            f"{r['generalisation_gap']:.0f}", "ok" if not r["warnings"] else "warned"]


def render_markdown(study: dict[str, Any]) -> str:
    """The study as Markdown: one row per run, then the mean and largest ``|gap|`` per reading
    (all runs, and the runs without regime warnings). Every number comes from ``study``."""
    exact = any(r["predicted_exact"] is not None for r in study["records"])
    header = list(COLUMNS)
    if exact:
        header.insert(7, "SLQ (steps)")
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in study["records"]:
        cells = _cells(r)
        steps = r["slq_steps"][-1][0] if r.get("slq_steps") else ""
        if exact:
            cells.insert(7, f"{r['predicted_slq']:.4f} ({steps})")
        rows.append("| " + " | ".join(cells) + " |")
    rows += ["", "| runs | reading | mean gap | mean \\|gap\\| | max \\|gap\\| |",
             "|---|---|---|---|---|"]
    names = {"before_first_drop": "(a) last before the first drop",
             "largest_passing": "(b) largest passing", "loss_within_eps": "(c) loss within eps"}
    for subset, summary in study["summary"].items():
        for k in READINGS:
            if summary[k] is not None:
                rows.append(f"| {subset} ({summary['runs']}) | {names[k]} | "
                            f"{summary[k]['mean_gap']:+.4f} | {summary[k]['mean_abs_gap']:.4f} | "
                            f"{summary[k]['max_abs_gap']:.4f} |")
    return "\n".join(rows) + "\n"


def _print(study: dict[str, Any]) -> None:
    t = Table(title="Predicted vs actual pruning limit (sparsity)")
    for col in COLUMNS:
        t.add_column(col, justify="right")
    for r in study["records"]:
        t.add_row(*_cells(r))
    results_console.print(t)
    for subset, s in study["summary"].items():
        for k in READINGS:
            if s[k] is not None:
                results_console.print(
                    f"{subset} ({s['runs']} runs), reading {k}: mean |gap| "
                    f"{s[k]['mean_abs_gap']:.4f}, max |gap| {s[k]['max_abs_gap']:.4f}")
