"""Figures of the exponential-gap experiment (SPEC 4), from the ``results`` of ``gap.run``.

Built with matplotlib's object API (``Figure``, Agg canvas), so no global backend or pyplot
state is touched. Plotting stays out of the core (:mod:`prune_jax.slth`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = ["plot_errors", "plot_widths", "save_all"]

_NEURON, _RELU, _WEIGHT, _MASK = "tab:red", "tab:orange", "tab:blue", "tab:green"


def _panels(n: int, title: str) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(max(3.6 * n, 5.0), 3.6), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(1, n, squeeze=False)[0]))
    fig.suptitle(title, fontsize=10)
    return fig, axes


def _finite(x: np.ndarray, y: object) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, np.float64)
    ok = np.isfinite(y)
    return x[ok], y[ok]


def _slope_text(slope: float) -> str:
    return "slope n/a: censored" if np.isnan(slope) else f"slope {slope:.2f}"


def _lower_series(ax: Axes, inv_eps: np.ndarray, arm: dict[str, Any], color: str,
                  label: str) -> None:
    median = np.asarray(arm["lower_median"], np.float64)
    censored = np.asarray(arm["lower_median_censored"], bool)
    ax.plot(inv_eps, median, "-", color=color,
            label=f"{label} ({_slope_text(arm['slopes']['loglog'])})")
    ax.plot(inv_eps[~censored], median[~censored], "o", color=color, ms=4)
    ax.plot(inv_eps[censored], median[censored], "^", mfc="none", color=color, ms=6)
    ax.plot(inv_eps, arm["lower_p90"], "--", color=color, lw=0.8, alpha=0.7)


def plot_widths(results: dict[str, Any]) -> Figure:
    """N_h (log) against 1/eps (log2) per d: certified neuron lower bound vs weight upper bound.

    Solid: median over seeds; dashed: 90th percentile; hollow triangles: lower bounds limited
    by the largest width tried. Grey: the theory's rates (slope-1 ``1/eps`` line through the
    smallest eps the neuron bound resolves, and ``log(1/eps)`` through the middle weight point).
    """
    inv_eps = 2.0 ** np.asarray(results["inv_eps_log2"], np.float64)
    dims = list(results["per_d"])
    fig, axes = _panels(len(dims), "Width N_h needed for sup error eps (median; dashed: p90)")
    for ax, d in zip(axes, dims, strict=True):
        res = results["per_d"][d]
        _lower_series(ax, inv_eps, res["neuron"], _NEURON, "neuron LB")
        if "neuron_relu" in res:
            _lower_series(ax, inv_eps, res["neuron_relu"], _RELU, "neuron+ReLU LB")
        if res["neuron"]["found_exact"]:
            x, y = _finite(inv_eps, res["neuron"]["found_median"])
            ax.plot(x, y, ":", color=_NEURON, marker="x", ms=4, label="neuron subset found")
        w = res["weight"]
        x, y = _finite(inv_eps, w["upper_median"])
        ax.plot(x, y, "-o", color=_WEIGHT, ms=4,
                label=f"weight UB ({_slope_text(w['slopes']['loglog'])})")
        ax.plot(*_finite(inv_eps, w["upper_p90"]), "--", color=_WEIGHT, lw=0.8, alpha=0.7)
        n_lb = np.asarray(res["neuron"]["lower_median"], np.float64)
        anchor = np.flatnonzero((n_lb > 1) & ~np.asarray(res["neuron"]["lower_median_censored"]))
        if anchor.size:  # anchored in the asymptotic regime: the smallest eps resolved
            i = anchor[-1]
            ax.plot(inv_eps, n_lb[i] * inv_eps / inv_eps[i], color="grey", lw=0.8, ls="--",
                    label="theory: 1/eps")
        if x.size:
            j = x.size // 2
            ax.plot(inv_eps, y[j] * np.log2(inv_eps) / np.log2(x[j]), color="grey", lw=0.8,
                    ls=":", label="theory: log(1/eps)")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("1/eps")
        ax.set_ylabel("N_h")
        ax.set_title(f"d = {d}", fontsize=9)
        ax.legend(fontsize=6)
    return fig


def plot_errors(results: dict[str, Any]) -> Figure:
    """Sup error bounds against N_h per d: neuron LP lower bounds, the weight certificate,
    the best neuron subsets found (d = 2) and the supermask illustration."""
    dims = list(results["per_d"])
    fig, axes = _panels(len(dims), "Error bounds against width (thin: seeds; thick: median)")
    for ax, d in zip(axes, dims, strict=True):
        res = results["per_d"][d]
        arms = [("neuron", "lower", _NEURON, "neuron LB")]
        if "neuron_relu" in res:
            arms.append(("neuron_relu", "lower", _RELU, "neuron+ReLU LB"))
        for arm, field, color, label in arms:
            curves = res[arm]["curves"]
            widths = np.asarray(curves[0]["widths"])
            values = np.asarray([c[field] for c in curves], np.float64)
            for v in values:
                ax.plot(widths, v, color=color, lw=0.4, alpha=0.5)
            ax.plot(widths, np.median(values, 0), color=color, lw=1.6, label=label)
            if arm == "neuron":  # over the upper half of the widths, where the fit is made
                upper = widths >= np.sqrt(widths[0] * widths[-1])
                ref = np.median(values, 0)[-1] * widths[-1] / widths[upper]
                ax.plot(widths[upper], ref, color="grey", lw=0.8, ls="--",
                        label=f"reference 1/N (fit: slope {res[arm]['lower_curve_slope']:.2f})")
        if res["neuron"]["found_exact"]:
            curves = res["neuron"]["curves"]
            found = np.median([c["found"] for c in curves], 0)
            ax.plot(curves[0]["widths"], found, ":", color=_NEURON, label="neuron subset found")
        cert = np.asarray([c["certificate"] for c in res["weight"]["curves"]], np.float64)
        n = np.arange(cert.shape[1])
        for c in cert:
            ax.plot(n[1:], c[1:], color=_WEIGHT, lw=0.4, alpha=0.5)
        ax.plot(n[1:], np.median(cert, 0)[1:], color=_WEIGHT, lw=1.6, label="weight certificate")
        for per_weight, marker in ((False, "s"), (True, "D")):
            pts = [(m["width"], m["error"]) for m in res["supermask"]
                   if m["per_weight"] == per_weight]
            if pts:
                ax.plot(*np.asarray(pts).T, marker, color=_MASK, mfc="none", ms=5,
                        label="supermask (illustration), " + ("weight" if per_weight
                                                              else "neuron"))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("N_h")
        ax.set_ylabel("sup error bound")
        ax.set_title(f"d = {d}", fontsize=9)
        ax.legend(fontsize=6)
    return fig


def save_all(results: dict[str, Any], out: Path, dpi: int = 110) -> list[Path]:
    """Write ``gap_widths.png`` and ``gap_errors.png`` into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, fig in (("gap_widths.png", plot_widths(results)),
                      ("gap_errors.png", plot_errors(results))):
        fig.savefig(out / name, dpi=dpi)
        paths.append(out / name)
    return paths
