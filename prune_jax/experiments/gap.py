"""``prune-jax gap``: structured vs unstructured pruning, the exponential gap (SPEC 4).

For every input dimension ``d`` and seed (one target ``w*`` and one nested random pool), the
pipeline measures the width ``N_h`` each arm needs to approximate ``relu(<w*, x>)`` within
``eps`` on the unit ball:

* neuron pruning: a CERTIFIED LOWER bound (LP relaxation with cutting planes, HiGHS), without
  and with the output ReLU; with the output ReLU also the MILP bound (exact best subset up to
  ``--milp-max-width`` units where HiGHS finishes, its dual bound where it does not); plus the
  best subset found (an achievable width, exact in d = 2);
* weight pruning: a CERTIFIED UPPER bound (Pensia et al. subset-sum construction with an exact
  meet-in-the-middle solver), each constructed network's measured error checked against it;
* an ILLUSTRATION panel: gradient supermask search (edge-popup, straight-through), d = 2.

Writes ``results.json``, the figures ``gap_widths.png``, ``gap_errors.png`` and
``gap_like_for_like.png`` and the results page ``gap.md`` (rendered from ``results.json`` by
:func:`prune_jax.experiments.gap_plots.render_page`) into ``--out``, and prints the table of
median and 90th-percentile required widths.
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
          "width_factor": 2.0,
          "relu_max_width": 16, "relu_dims": (2,), "subset_search_max_width": 16,
          "milp_max_width": 16, "weight_pool_per_dim": 24, "max_items": 12, "max_rounds": 3,
          "supermask_steps": 50, "supermask_widths": (8,), "supermask_seeds": 1}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def resolve(config: Config) -> Config:
    """Apply ``--smoke`` / ``--full`` and validate (errors name the flag)."""
    if config.smoke and config.full:
        raise UserError("--smoke and --full are mutually exclusive")
    if config.smoke:
        default = Config()
        changed = [name for name in _SMOKE if getattr(config, name) != getattr(default, name)]
        if changed:
            raise UserError(f"--smoke sets {', '.join(map(_flag, _SMOKE))} itself; it cannot "
                             f"be combined with {', '.join(map(_flag, changed))} (drop --smoke "
                             "to choose them)")
        config = dataclasses.replace(config, **_SMOKE)
    if config.full:
        config = dataclasses.replace(
            config, seeds=max(config.seeds, 10), relu_dims=config.dims,
            neuron_max_widths=tuple(2 * n for n in config.neuron_max_widths),
            supermask_seeds=max(config.supermask_seeds, 5))
    if len(config.neuron_max_widths) != len(config.dims):
        raise UserError(f"--neuron-max-widths needs one entry per --dims entry "
                         f"({len(config.dims)}), got {len(config.neuron_max_widths)}")
    if any(d < 2 for d in config.dims):
        raise UserError(f"--dims entries must be >= 2, got {config.dims}")
    if not set(config.relu_dims) <= set(config.dims):
        raise UserError(f"--relu-dims {config.relu_dims} must be a subset of --dims")
    if not (config.width_factor > 1.0 and config.coarse_width_factor > 1.0):
        raise UserError(f"--width-factor and --coarse-width-factor must be > 1, got "
                         f"{config.width_factor}, {config.coarse_width_factor}")
    if config.seeds < 1:
        raise UserError(f"--seeds must be >= 1, got {config.seeds}")
    if any(k < 1 for k in config.inv_eps_log2):
        raise UserError(f"--inv-eps-log2 entries must be >= 1 (eps in (0, 1)), "
                         f"got {config.inv_eps_log2}")
    if config.milp_max_width < 0 or config.milp_rounds < 1 or not config.milp_time_limit > 0:
        raise UserError(f"--milp-max-width must be >= 0, --milp-rounds >= 1 and "
                         f"--milp-time-limit > 0, got {config.milp_max_width}, "
                         f"{config.milp_rounds}, {config.milp_time_limit}")
    return config


def _pool_size(config: Config, d: int, neuron_max: int) -> int:
    sizes = [config.weight_pool_per_dim * d, neuron_max]
    if d in config.relu_dims:
        sizes.append(config.relu_max_width)
    if d == 2 and config.supermask_steps > 0 and config.supermask_seeds > 0:
        sizes.extend(config.supermask_widths)
    return max(sizes)


def _supermask_runs(config: Config, d: int, seed: int) -> bool:
    return d == 2 and config.supermask_steps > 0 and seed < config.supermask_seeds


def _width_bounds(curves: list[S.NeuronCurve], eps: np.ndarray, field: str) -> dict[str, Any]:
    """Certified lower bounds on the required width per eps, from the bound curve ``field``."""
    lower = [[S.lower_bound_width(c.widths, getattr(c, field), e) for c in curves] for e in eps]
    q = [S.quantiles([b.width for b in row]) for row in lower]
    largest = int(curves[0].widths[-1])
    return {"lower_per_seed": [[b.width for b in row] for row in lower],
            "censored_per_seed": [[b.censored for b in row] for row in lower],
            "lower_median": [x.median for x in q], "lower_p90": [x.p90 for x in q],
            "lower_median_censored": [x.median > largest for x in q]}


def _fit(widths: np.ndarray, values: np.ndarray, use: np.ndarray) -> dict[str, Any]:
    """Log-log slope of ``values`` against the widths ``widths[use]``, with its range."""
    if use.sum() < 2:
        return {"first_width": None, "last_width": None, "slope": float("nan")}
    return {"first_width": int(widths[use][0]), "last_width": int(widths[use][-1]),
            "slope": S.loglog_slope(widths[use], values[use])}


def _neuron_summary(curves: list[S.NeuronCurve], eps: np.ndarray) -> dict[str, Any]:
    """Per-eps required widths of the neuron arm: certified lower bounds and subsets found."""
    found = [[S.upper_bound_width(c.widths, c.found, e) for c in curves] for e in eps]
    q_found = [S.quantiles(row) for row in found]
    widths = np.asarray(curves[0].widths)
    median_lower = np.median([c.lower for c in curves], axis=0)
    optimal = np.all([c.optimal for c in curves], axis=0)
    return {
        **_width_bounds(curves, eps, "lower"),
        # slope of the median bound against N over the upper half (log scale) of the widths
        # tried: -1 is the 1/N (hence 1/eps) rate
        "fit": _fit(widths, median_lower, widths >= np.sqrt(widths[0] * widths[-1])),
        # the same over the widths where the MILP found the best subset for every seed
        "optimal_fit": _fit(widths, median_lower, optimal & (widths >= 8)),
        "lp_only": _width_bounds(curves, eps, "lp_lower"),
        "found_per_seed": found,
        "found_median": [q.median for q in q_found],
        "found_p90": [q.p90 for q in q_found],
        "found_exact": bool(curves[0].found_exact),
        "largest_width": int(widths[-1]),
        "curves": [{"widths": c.widths, "lower": c.lower, "lp_lower": c.lp_lower,
                    "found": c.found, "optimal": c.optimal} for c in curves],
    }


def _weight_summary(curves: list[S.WeightCurve], eps: np.ndarray,
                    neuron_max: int) -> dict[str, Any]:
    """Per-eps certified upper bounds on the width weight pruning needs.

    The stored certificate curves are thinned to at most ~100 widths (all up to 64, then
    geometric), enough for the figures; the widths are read off the full curves.
    """
    upper = [[S.upper_bound_width(np.arange(c.certificate.size), c.certificate, e)
              for c in curves] for e in eps]
    q = [S.quantiles(row) for row in upper]
    size = curves[0].certificate.size
    keep = np.unique(np.r_[np.arange(1, min(size, 65)),
                           np.round(np.geomspace(64, size - 1, 40)).astype(int)])
    keep = keep[keep < size]
    return {
        "upper_per_seed": upper,
        "upper_median": [x.median for x in q],
        "upper_p90": [x.p90 for x in q],
        "certificate_at_neuron_max": [float(c.certificate[min(neuron_max, size - 1)])
                                      for c in curves],
        "curves": [{"widths": keep, "certificate": c.certificate[keep]} for c in curves],
    }


def _slopes(inv_eps: np.ndarray, arm: dict[str, Any], key: str,
            censored: list[bool] | None = None) -> dict[str, Any]:
    y = np.asarray(arm[key], np.float64)
    if censored is not None:
        y = np.where(censored, np.nan, y)
    y = np.where(y > 1, y, np.nan)  # a lower bound of 1 is trivial, not a measurement
    used = [int(np.log2(x)) for x in inv_eps[np.isfinite(y)]]
    return {"loglog": S.loglog_slope(inv_eps, y),
            "per_bit": S.linear_slope(np.log2(inv_eps), y),
            "inv_eps_log2_used": used}


def _run_dim(config: Config, d: int, neuron_max: int, eps: np.ndarray, bar: Any,
             timer: Timer) -> dict[str, Any]:
    cuts = CuttingPlanes(max_rounds=config.max_rounds, bisection_rtol=0.05)
    factor = config.width_factor if d == 2 else config.coarse_width_factor
    widths = S.geometric_widths(neuron_max, factor=factor)
    relu_widths = S.geometric_widths(config.relu_max_width, factor=factor)
    neuron, relu, weight, checks, supermask = [], [], [], [], []
    for s in range(config.seeds):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), d), s)
        k_problem, k_neuron, k_relu, k_check, k_mask = jax.random.split(key, 5)
        problem = S.make_problem(k_problem, d, _pool_size(config, d, neuron_max))
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
            neuron.append(S.neuron_curve(k_neuron, problem, widths, False, cuts,
                                         search_max_width=config.subset_search_max_width))
        bar.advance(d=d, seed=s)
        if d in config.relu_dims:
            with timer(f"d={d} neuron arm, output ReLU"):
                relu.append(S.neuron_curve(
                    k_relu, problem, relu_widths, True, cuts,
                    search_max_width=config.subset_search_max_width,
                    milp_max_width=config.milp_max_width,
                    milp_time_limit=config.milp_time_limit, milp_rounds=config.milp_rounds))
            bar.advance(d=d, seed=s)
        if _supermask_runs(config, d, s):
            for width in config.supermask_widths:
                for per_weight, output_relu in ((False, False), (True, True)):
                    search = SupermaskSearch(per_weight=per_weight, output_relu=output_relu,
                                             steps=config.supermask_steps)
                    with timer(f"d={d} supermask"):
                        err = S.supermask_error(jax.random.fold_in(k_mask, width), problem,
                                                width, search)
                    supermask.append({"seed": s, "width": width, "per_weight": per_weight,
                                      "output_relu": output_relu, "error": err.value,
                                      "exact": err.exact})
            bar.advance(d=d, seed=s)
    inv_eps = 1.0 / eps
    out: dict[str, Any] = {"neuron": _neuron_summary(neuron, eps),
                           "weight": _weight_summary(weight, eps, neuron_max),
                           "weight_checks": checks, "supermask": supermask}
    out["weight"]["slopes"] = _slopes(inv_eps, out["weight"], "upper_median")
    for name, curves in (("neuron", neuron), ("neuron_relu", relu)):
        if curves:
            arm = out[name] = _neuron_summary(curves, eps)
            arm["slopes"] = _slopes(inv_eps, arm, "lower_median", arm["lower_median_censored"])
            arm["bound_violations"] = int(sum(np.sum(c.lower > c.found + 1e-12)
                                              for c in curves if c.found_exact))
    return out


def _fmt(value: float, censored: bool = False, lower: bool = False) -> str:
    if not np.isfinite(value):
        return "-"
    text = f"{int(value)}"
    return (">=" if lower else "") + text + ("*" if censored else "")


def _lower_cell(arm: dict[str, Any] | None, i: int) -> str:
    if arm is None:
        return ""
    largest = arm["largest_width"]
    median, p90 = arm["lower_median"][i], arm["lower_p90"][i]
    return f"{_fmt(median, median > largest, True)} [{_fmt(p90, p90 > largest, True)}]"


def _table(results: dict[str, Any]) -> Table:
    table = Table(title="Required width N_h: median [90th percentile] over seeds "
                        "(>= certified lower bound, * = limited by the largest width tried, "
                        "- = not reached)")
    for col in ("d", "eps", "neuron LB", "neuron+ReLU LB", "neuron found", "weight UB"):
        table.add_column(col, justify="right")
    for d, res in results["per_d"].items():
        n, w = res["neuron"], res["weight"]
        for i, k in enumerate(results["inv_eps_log2"]):
            table.add_row(d, f"2^-{k}", _lower_cell(n, i), _lower_cell(res.get("neuron_relu"), i),
                          f"{_fmt(n['found_median'][i])} [{_fmt(n['found_p90'][i])}]",
                          f"{_fmt(w['upper_median'][i])} [{_fmt(w['upper_p90'][i])}]")
    return table


def run(config: Config) -> dict[str, Any]:
    """Run the sweep, print the table, write ``results.json`` and the plots (SPEC 4)."""
    config = resolve(config)
    start = time.perf_counter()
    eps = 2.0 ** -np.asarray(config.inv_eps_log2, np.float64)
    n_tasks = sum(2 + (d in config.relu_dims) + _supermask_runs(config, d, s)
                  for d in config.dims for s in range(config.seeds))
    results: dict[str, Any] = {"config": dataclasses.asdict(config),
                               "inv_eps_log2": list(config.inv_eps_log2),
                               "eps": eps, "per_d": {}}
    timer = Timer()
    with progress_bar("gap sweep", total=n_tasks,
                      enabled=config.progress) as bar:
        for d, neuron_max in zip(config.dims, config.neuron_max_widths, strict=True):
            results["per_d"][str(d)] = _run_dim(config, d, neuron_max, eps, bar, timer)
    results["seconds"] = timer.seconds
    checks = [c for r in results["per_d"].values() for c in r["weight_checks"]]
    results["neuron_bound_violations"] = sum(
        r[arm]["bound_violations"] for r in results["per_d"].values()
        for arm in ("neuron", "neuron_relu") if arm in r)
    results["weight_check_violations"] = sum(c["measured"] > c["certificate"] for c in checks)
    results["wall_seconds"] = time.perf_counter() - start
    results["cpu_seconds"] = time.process_time()
    results["cpus"] = os.cpu_count()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    save_json(out / "results.json", results)
    figures = gap_plots.save_all(results, out)
    figures.append(out / "gap.md")
    figures[-1].write_text(gap_plots.render_page(json.loads((out / "results.json").read_text())))
    console.print(_table(results))
    for d, res in results["per_d"].items():
        fit = res["neuron"]["fit"]
        console.print(f"d = {d}: log-log slope of N_h against 1/eps: neuron LB "
                      f"{res['neuron']['slopes']['loglog']:.2f}, weight UB "
                      f"{res['weight']['slopes']['loglog']:.2f} "
                      f"({res['weight']['slopes']['per_bit']:.2f} units per bit of 1/eps); "
                      f"neuron LB(N) slope {fit['slope']:.2f} fitted on N = "
                      f"{fit['first_width']}..{fit['last_width']}")
    console.print("seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timer.seconds.items()))
    console.print(f"weight-arm certificate checks: {len(checks)} networks, "
                  f"{results['weight_check_violations']} violations; neuron bounds above a "
                  f"subset found: {results['neuron_bound_violations']}; "
                  f"wall time {results['wall_seconds']:.0f} s")
    console.print(f"wrote {out / 'results.json'} and {', '.join(str(f) for f in figures)}")
    return results
