"""``prune-jax gap``: structured vs unstructured pruning, the exponential gap (SPEC 4).

Per input dimension ``d`` and seed (a target ``w*`` and a nested random pool), measures the
width ``N_h`` each arm needs to approximate ``relu(<w*, x>)`` within ``eps`` on the unit ball:
neuron pruning, a CERTIFIED LOWER bound (LP with cutting planes; with the output ReLU also the
MILP bound up to ``--milp-max-width``) and the best subsets found; weight pruning, a CERTIFIED
UPPER bound (Pensia et al. subset-sum construction, each network's error checked); supermask
search as an illustration (d = 2). Writes ``results.json``, the figures and ``gap.md``
(:mod:`prune_jax.experiments.gap_plots`) into ``--out`` and prints the required widths.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from rich.table import Table

from prune_jax.experiments import gap_plots
from prune_jax.experiments.common import Timer, UserError, flag, save_json
from prune_jax.experiments.progress import console, progress_bar
from prune_jax.slth import sweep as S
from prune_jax.slth.neuron_lp import CuttingPlanes
from prune_jax.slth.supermask import SupermaskSearch

__all__ = ["Config", "resolve", "run"]


@dataclasses.dataclass(frozen=True)
class Config:
    """Options of ``prune-jax gap`` (each field is a command-line flag)."""

    dims: tuple[int, ...] = flag((2, 4, 8, 16), "input dimensions d")
    seeds: int = flag(5, "seeds (target + pool) per d")
    seed: int = flag(0, "base PRNG seed")
    inv_eps_log2: tuple[int, ...] = flag((2, 4, 6, 8, 10, 12, 14),
                                         "tolerances eps = 2^-k for these k")
    neuron_max_widths: tuple[int, ...] = flag(
        (1024, 128, 64, 32), "largest width of the neuron-arm LP, one per --dims entry")
    width_factor: float = flag(2**0.5, "ratio of consecutive LP widths, d = 2 neuron arm")
    coarse_width_factor: float = flag(2.0, "ratio of consecutive LP widths, output-ReLU arm "
                                      "and d > 2")
    relu_max_width: int = flag(256, "largest width of the output-ReLU neuron-arm LP")
    relu_dims: tuple[int, ...] = flag((2,), "dimensions that also run the output-ReLU neuron arm")
    milp_max_width: int = flag(128, "widest pool of the output-ReLU MILP bound (d = 2; 0: off)")
    milp_time_limit: float = flag(10.0, "seconds per MILP solve (HiGHS)")
    milp_rounds: int = flag(6, "MILP solves per width (cutting planes and threshold bisection)")
    subset_search_max_width: int = flag(128, "widest pool searched for neuron subsets (d = 2)")
    weight_pool_per_dim: int = flag(64, "weight-arm pool size per input dimension")
    max_items: int = flag(28, "largest subset-sum instance (items per group) of the weight arm")
    max_rounds: int = flag(10, "cutting-plane rounds per LP")
    supermask_steps: int = flag(500, "training steps of the supermask illustration (0: skip)")
    supermask_widths: tuple[int, ...] = flag((16, 128),
                                             "widths of the supermask illustration (d = 2)")
    supermask_seeds: int = flag(3, "seeds of the supermask illustration")
    smoke: bool = flag(False, "tiny configuration for the tests (well under a minute)")
    full: bool = flag(False, "10 seeds, wider neuron LPs, output-ReLU arm for every d")
    out: Path = flag(Path("results/gap"), "output directory")
    progress: bool = flag(True, "show progress bars")


_SMOKE = {"dims": (2,), "seeds": 2, "inv_eps_log2": (2, 4, 6), "neuron_max_widths": (32,),
          "width_factor": 2.0, "relu_max_width": 16, "relu_dims": (2,),
          "subset_search_max_width": 16, "milp_max_width": 16, "weight_pool_per_dim": 24,
          "max_items": 12, "max_rounds": 3, "supermask_steps": 50, "supermask_widths": (8,),
          "supermask_seeds": 1}


def _flags(names: object) -> str:
    return ", ".join("--" + name.replace("_", "-") for name in names)


def resolve(config: Config) -> Config:
    """Apply ``--smoke`` / ``--full`` and validate (errors name the flag)."""
    if config.smoke and config.full:
        raise UserError("--smoke and --full are mutually exclusive")
    if config.smoke:
        changed = [name for name in _SMOKE if getattr(config, name) != getattr(Config(), name)]
        if changed:
            raise UserError(f"--smoke sets {_flags(_SMOKE)} itself; it cannot be combined with "
                             f"{_flags(changed)} (drop --smoke to choose them)")
        config = dataclasses.replace(config, **_SMOKE)
    if config.full:
        config = dataclasses.replace(
            config, seeds=max(config.seeds, 10), relu_dims=config.dims,
            neuron_max_widths=tuple(2 * n for n in config.neuron_max_widths),
            supermask_seeds=max(config.supermask_seeds, 5))
    c = config
    for bad, message in (
        (len(c.neuron_max_widths) != len(c.dims), "--neuron-max-widths needs one entry per "
         f"--dims entry ({len(c.dims)}), got {len(c.neuron_max_widths)}"),
        (any(d < 2 for d in c.dims), f"--dims entries must be >= 2, got {c.dims}"),
        (not set(c.relu_dims) <= set(c.dims),
         f"--relu-dims {c.relu_dims} must be a subset of --dims"),
        (not (c.width_factor > 1.0 and c.coarse_width_factor > 1.0), "--width-factor and "
         f"--coarse-width-factor must be > 1, got {c.width_factor}, {c.coarse_width_factor}"),
        (c.seeds < 1, f"--seeds must be >= 1, got {c.seeds}"),
        (any(k < 1 for k in c.inv_eps_log2),
         f"--inv-eps-log2 entries must be >= 1 (eps in (0, 1)), got {c.inv_eps_log2}"),
        (c.milp_max_width < 0 or c.milp_rounds < 1 or not c.milp_time_limit > 0,
         "--milp-max-width must be >= 0, --milp-rounds >= 1 and --milp-time-limit > 0, got "
         f"{c.milp_max_width}, {c.milp_rounds}, {c.milp_time_limit}"),
    ):
        if bad:
            raise UserError(message)
    return config


def _supermask_runs(config: Config, d: int, seed: int) -> bool:
    return d == 2 and config.supermask_steps > 0 and seed < config.supermask_seeds


def _quantiles(name: str, rows: list[list[Any]]) -> dict[str, list[float]]:
    """Median and 90th percentile over the seeds, per eps, as ``{name}_median/_p90``."""
    q = [S.quantiles(row) for row in rows]
    return {f"{name}_median": [x.median for x in q], f"{name}_p90": [x.p90 for x in q]}


def _lower_bounds(curves: list[S.NeuronCurve], eps: np.ndarray, field: str) -> dict[str, Any]:
    """Certified lower bounds on the required width per eps, from the bound curve ``field``."""
    lower = [[S.lower_bound_width(c.widths, getattr(c, field), e) for c in curves] for e in eps]
    stats = _quantiles("lower", [[b.width for b in row] for row in lower])
    largest = int(curves[0].widths[-1])
    return {"lower_per_seed": [[b.width for b in row] for row in lower],
            "censored_per_seed": [[b.censored for b in row] for row in lower], **stats,
            "lower_median_censored": [m > largest for m in stats["lower_median"]]}


def _fit(widths: np.ndarray, values: np.ndarray, use: np.ndarray) -> dict[str, Any]:
    """Log-log slope of ``values`` against ``widths[use]``, with the range used."""
    if use.sum() < 2:
        return {"first_width": None, "last_width": None, "slope": float("nan")}
    return {"first_width": int(widths[use][0]), "last_width": int(widths[use][-1]),
            "slope": S.loglog_slope(widths[use], values[use])}


def _slopes(eps: np.ndarray, y: object, censored: object = False) -> dict[str, Any]:
    """Slopes of the median widths ``y`` against 1/eps (censored and trivial points left out)."""
    y = np.where(censored, np.nan, np.asarray(y, np.float64))
    y = np.where(y > 1, y, np.nan)  # a lower bound of 1 is trivial, not a measurement
    return {"loglog": S.loglog_slope(1 / eps, y), "per_bit": S.linear_slope(-np.log2(eps), y),
            "inv_eps_log2_used": [int(-np.log2(e)) for e in eps[np.isfinite(y)]]}


def _neuron_summary(curves: list[S.NeuronCurve], eps: np.ndarray) -> dict[str, Any]:
    """Per-eps required widths of a neuron arm: certified lower bounds and subsets found."""
    found = [[S.upper_bound_width(c.widths, c.found, e) for c in curves] for e in eps]
    widths = np.asarray(curves[0].widths)
    median_lower = np.median([c.lower for c in curves], axis=0)
    arm = {
        **_lower_bounds(curves, eps, "lower"),
        # slope of the median bound against N over the upper half (log scale) of the widths
        # tried (-1 is the 1/N rate), and over the widths where the MILP was exact for all seeds
        "fit": _fit(widths, median_lower, widths >= np.sqrt(widths[0] * widths[-1])),
        "optimal_fit": _fit(widths, median_lower,
                            np.all([c.optimal for c in curves], axis=0) & (widths >= 8)),
        "lp_only": _lower_bounds(curves, eps, "lp_lower"),
        "found_per_seed": found, **_quantiles("found", found),
        "found_exact": bool(curves[0].found_exact), "largest_width": int(widths[-1]),
        "curves": [{"widths": c.widths, "lower": c.lower, "lp_lower": c.lp_lower,
                    "found": c.found, "optimal": c.optimal} for c in curves],
    }
    arm["slopes"] = _slopes(eps, arm["lower_median"], arm["lower_median_censored"])
    arm["bound_violations"] = int(sum(np.sum(c.lower > c.found + 1e-12)
                                      for c in curves if c.found_exact))
    return arm


def _weight_summary(curves: list[S.WeightCurve], eps: np.ndarray,
                    neuron_max: int) -> dict[str, Any]:
    """Per-eps certified upper bounds on the width weight pruning needs; the certificate curves
    are stored thinned to ~100 widths (all up to 64, then geometric)."""
    upper = [[S.upper_bound_width(np.arange(c.certificate.size), c.certificate, e)
              for c in curves] for e in eps]
    size = curves[0].certificate.size
    keep = np.unique(np.r_[np.arange(1, min(size, 65)),
                           np.round(np.geomspace(64, size - 1, 40)).astype(int)])
    keep = keep[keep < size]
    arm = {"upper_per_seed": upper, **_quantiles("upper", upper),
           "certificate_at_neuron_max": [float(c.certificate[min(neuron_max, size - 1)])
                                         for c in curves],
           "curves": [{"widths": keep, "certificate": c.certificate[keep]} for c in curves]}
    arm["slopes"] = _slopes(eps, arm["upper_median"])
    return arm


def _run_dim(config: Config, d: int, neuron_max: int, eps: np.ndarray, bar: Any,
             timer: Timer) -> dict[str, Any]:
    cuts = CuttingPlanes(max_rounds=config.max_rounds, bisection_rtol=0.05)
    factor = config.width_factor if d == 2 else config.coarse_width_factor
    widths = S.geometric_widths(neuron_max, factor=factor)
    relu_widths = S.geometric_widths(config.relu_max_width, factor=factor)
    pool = max(config.weight_pool_per_dim * d, neuron_max,
               config.relu_max_width if d in config.relu_dims else 0,
               *(config.supermask_widths if _supermask_runs(config, d, 0) else ()))
    search = {"search_max_width": config.subset_search_max_width}
    neuron, relu, weight, checks, supermask = [], [], [], [], []
    for s in range(config.seeds):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), d), s)
        k_problem, k_neuron, k_relu, k_check, k_mask = jax.random.split(key, 5)
        problem = S.make_problem(k_problem, d, pool)
        with timer(f"d={d} weight arm"):
            weight.append(S.weight_curve(problem, config.max_items))
        with timer(f"d={d} weight-arm checks"):
            cert = weight[-1].certificate
            for w in sorted({S.upper_bound_width(np.arange(cert.size), cert, e)
                             for e in eps} - {None}):
                check = S.weight_network_error(k_check, problem, weight[-1], w)
                checks.append({"seed": s, "width": w, **check._asdict()})
        bar.advance(d=d, seed=s)
        with timer(f"d={d} neuron arm"):
            neuron.append(S.neuron_curve(k_neuron, problem, widths, False, cuts, **search))
        bar.advance(d=d, seed=s)
        if d in config.relu_dims:
            with timer(f"d={d} neuron arm, output ReLU"):
                relu.append(S.neuron_curve(
                    k_relu, problem, relu_widths, True, cuts, **search,
                    milp_max_width=config.milp_max_width,
                    milp_time_limit=config.milp_time_limit, milp_rounds=config.milp_rounds))
            bar.advance(d=d, seed=s)
        if _supermask_runs(config, d, s):
            for width in config.supermask_widths:
                for both in (False, True):  # neuron masks, or weight masks with output ReLU
                    with timer(f"d={d} supermask"):
                        err = S.supermask_error(
                            jax.random.fold_in(k_mask, width), problem, width,
                            SupermaskSearch(per_weight=both, output_relu=both,
                                            steps=config.supermask_steps))
                    supermask.append({"seed": s, "width": width, "per_weight": both,
                                      "output_relu": both, "error": err.value,
                                      "exact": err.exact})
            bar.advance(d=d, seed=s)
    out = {"neuron": _neuron_summary(neuron, eps),
           "weight": _weight_summary(weight, eps, neuron_max),
           "weight_checks": checks, "supermask": supermask}
    if relu:
        out["neuron_relu"] = _neuron_summary(relu, eps)
    return out


def run(config: Config) -> dict[str, Any]:
    """Run the sweep, print the table, write ``results.json``, the plots and ``gap.md``."""
    config = resolve(config)
    start = time.perf_counter()
    eps = 2.0 ** -np.asarray(config.inv_eps_log2, np.float64)
    n_tasks = sum(2 + (d in config.relu_dims) + _supermask_runs(config, d, s)
                  for d in config.dims for s in range(config.seeds))
    results: dict[str, Any] = {"config": dataclasses.asdict(config),
                               "inv_eps_log2": list(config.inv_eps_log2),
                               "eps": eps, "per_d": {}}
    timer = Timer()
    with progress_bar("gap sweep", total=n_tasks, enabled=config.progress) as bar:
        for d, neuron_max in zip(config.dims, config.neuron_max_widths, strict=True):
            results["per_d"][str(d)] = _run_dim(config, d, neuron_max, eps, bar, timer)
    per_d = results["per_d"].values()
    checks = [c for r in per_d for c in r["weight_checks"]]
    results.update(
        seconds=timer.seconds,
        neuron_bound_violations=sum(r[arm]["bound_violations"] for r in per_d
                                    for arm in ("neuron", "neuron_relu") if arm in r),
        weight_check_violations=sum(c["measured"] > c["certificate"] for c in checks),
        wall_seconds=time.perf_counter() - start, cpu_seconds=time.process_time(),
        cpus=os.cpu_count())
    out = Path(config.out)
    save_json(out / "results.json", results)
    files = [*gap_plots.save_all(results, out), out / "gap.md"]
    saved = json.loads((out / "results.json").read_text())
    files[-1].write_text(gap_plots.render_page(saved))
    table = Table(title="Required width N_h: median [90th percentile] over seeds (>= certified "
                        "lower bound, * = limited by the largest width tried, - = not reached)")
    for col in ("d", "eps", "neuron LB", "neuron+ReLU LB", "neuron found", "weight UB"):
        table.add_column(col, justify="right")
    for row in gap_plots.width_rows(saved):
        table.add_row(*row)
    console.print(table)
    for d, res in results["per_d"].items():
        fit, w = res["neuron"]["fit"], res["weight"]["slopes"]
        console.print(f"d = {d}: log-log slope of N_h against 1/eps: neuron LB "
                      f"{res['neuron']['slopes']['loglog']:.2f}, weight UB {w['loglog']:.2f} "
                      f"({w['per_bit']:.2f} units per bit of 1/eps); neuron LB(N) slope "
                      f"{fit['slope']:.2f} fitted on N = {fit['first_width']}..{fit['last_width']}")
    console.print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timer.seconds.items()))
    console.print(f"weight-arm certificate checks: {len(checks)} networks, "
                  f"{results['weight_check_violations']} violations; neuron bounds above a "
                  f"subset found: {results['neuron_bound_violations']}; "
                  f"wall time {results['wall_seconds']:.0f} s")
    console.print(f"wrote {out / 'results.json'} and {', '.join(map(str, files))}")
    return results
