"""Matplotlib figures used by the CLI and the notebooks.

Every function takes plain results (arrays, result objects) and returns a
``matplotlib.figure.Figure``; :func:`save` writes it as PNG. Nothing here computes science.
Figures are built as ``Figure`` objects, not through ``pyplot``, so importing this module never
changes the matplotlib backend and pyplot's global registry never keeps figures alive. This
module imports no other prune_jax module, so the pipelines in :mod:`prune_jax.experiments` may
use it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["accuracy_vs_sparsity", "calibration", "fixed_point", "iterative_trajectories",
           "save", "spectral_density"]


def save(fig: Figure, path: Path | str) -> Path:
    """Save ``fig`` as a PNG at ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def spectral_density(spectrum: Any, *, top_eigenvalues: Sequence[float] | None = None,
                     exact_eigenvalues: np.ndarray | None = None, sigma: float | None = None,
                     num_points: int = 1000, title: str = "Hessian spectral density (SLQ)"
                     ) -> Figure:
    """SLQ density (Gaussian-smoothed view of the quadrature, SPEC 1.3) on a log scale, Ritz
    nodes as a rug, top eigenvalues as dashed lines and an exact spectrum (if given, e.g. from
    a dense ``eigh``) as a histogram."""
    nodes = np.asarray(spectrum.nodes)
    every = nodes if exact_eigenvalues is None else np.r_[nodes.ravel(), exact_eigenvalues]
    lo, hi = float(np.min(every)), float(np.max(every))
    pad = 0.05 * (hi - lo + 1e-12)
    grid = np.linspace(lo - pad, hi + pad, num_points)
    sigma = sigma if sigma is not None else (hi - lo + 1e-12) / 200
    density = np.asarray(spectrum.density(grid, sigma))
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.semilogy(grid, np.maximum(density, 1e-12), label=f"SLQ density (sigma={sigma:.2g})")
    if exact_eigenvalues is not None:
        ax.hist(np.asarray(exact_eigenvalues), bins=200, density=True, alpha=0.4,
                label="exact eigenvalues (histogram)")
    ax.plot(nodes.ravel(), np.full(nodes.size, 1e-12 * 10), "|", color="k", alpha=0.3,
            label="Ritz nodes")
    for i, lam in enumerate([] if top_eigenvalues is None else list(top_eigenvalues)):
        ax.axvline(lam, ls="--", color="C3", alpha=0.6, label="top eigenvalues" if i == 0 else None)
    ax.set(ylim=(1e-11, None), xlabel="eigenvalue", ylabel="density", title=title)
    ax.legend(fontsize=8)
    return fig


def accuracy_vs_sparsity(sparsity: np.ndarray, accuracy: np.ndarray, *,
                         loss: np.ndarray | None = None, dense_accuracy: float | None = None,
                         predicted: float | None = None,
                         actual: float | Mapping[str, float] | None = None,
                         title: str = "Global one-shot magnitude pruning (no fine-tuning)"
                         ) -> Figure:
    """Test accuracy (and loss) against sparsity with predicted/actual limits drawn; ``actual``
    is one actual limit or several named readings (``{"(a) ...": s_a, ...}``)."""
    readings = {"actual limit": actual} if isinstance(actual, int | float) else (actual or {})
    marks = [v for v in (predicted, *readings.values()) if v is not None]
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2, width_ratios=(3, 2))
    for ax, zoom in zip(axes, (False, True), strict=True):
        ax.plot(sparsity, accuracy, "o-", ms=3, label="test accuracy")
        if dense_accuracy is not None:
            ax.axhline(dense_accuracy, color="gray", ls=":", label="dense accuracy")
        if predicted is not None:
            ax.axvline(predicted, color="C3", ls="--", label=f"predicted limit {predicted:.4f}")
        for i, (name, value) in enumerate(readings.items()):
            ax.axvline(value, color=f"C{2 + i}", ls=("-.", ":", "--")[i % 3],
                       label=f"{name} {value:.4f}")
        ax.set_xlabel("sparsity (fraction of prunable weights removed)")
        if loss is not None:
            ax2 = ax.twinx()
            ax2.semilogy(sparsity, loss, color="C1", alpha=0.6, label="test loss")
            ax2.set_ylabel("test loss", color="C1")
        if zoom and marks:   # the transition: from below the limits to the top of the sweep
            lo = max(0.0, min(marks) - 2 * (float(np.max(sparsity)) - max(marks)) - 0.01)
            ax.set_xlim(lo, float(np.max(sparsity)) + 0.002)
            ax.set_title("near the limit")
    axes[0].set(ylabel="test accuracy", title=title)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def fixed_point(curve_sparsity: np.ndarray, curve_width: np.ndarray, solution: float, *,
                trace_bound: np.ndarray | None = None,
                title: str = "Fixed point s = w(P(s))^2 / D") -> Figure:
    """The fixed-point crossing of SPEC 2.3: s against the width fraction F(R(s))."""
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    ax.plot(curve_sparsity, curve_width, label="width fraction F(R(s))")
    if trace_bound is not None:
        ax.plot(curve_sparsity, trace_bound, ls=":", label="trace lower bound")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="s")
    ax.axvline(solution, color="C3", ls="--", label=f"predicted sparsity {solution:.4f}")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="sparsity s", ylabel="fraction", title=title)
    ax.legend(fontsize=8)
    return fig


def iterative_trajectories(records: Mapping[str, Sequence[Mapping[str, float]]], *,
                           title: str = "Iterative pruning") -> Figure:
    """Paper-style panels (PQI paper Figs. 2-4): accuracy, remaining weights and PQI per
    iteration for each method (``records[method] = [{"iteration", "density", "accuracy",
    "pruned_accuracy", "pqi"}, ...]``)."""
    fig = Figure(figsize=(17, 3.8))
    axes = fig.subplots(1, 4)
    for i, (name, recs) in enumerate(records.items()):
        it, acc = [r["iteration"] for r in recs], [r["accuracy"] for r in recs]
        pct = [100 * r["density"] for r in recs]
        line = {"ms": 3, "color": f"C{i}", "label": name}
        axes[0].plot(it, acc, "o-", **line)
        axes[1].plot(pct, acc, "o-", **line)
        axes[1].plot(pct, [r["pruned_accuracy"] for r in recs], ":", color=f"C{i}", alpha=0.6)
        axes[2].semilogy(it, pct, "o-", **line)
        axes[3].plot(it, [r["pqi"] for r in recs], "o-", **line)
    axes[0].set(xlabel="iteration", ylabel="test accuracy (retrained)")
    axes[1].set(xlabel="remaining weights (%)", ylabel="test accuracy", xscale="log")
    axes[1].invert_xaxis()
    axes[1].set_title("solid: retrained, dotted: pruned only", fontsize=8)
    axes[2].set(xlabel="iteration", ylabel="remaining weights (%)")
    axes[3].set(xlabel="iteration", ylabel="PQ Index")
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def calibration(records: Sequence[Mapping[str, Any]], *, band: float = 0.02,
                title: str = "Predicted vs actual pruning limit") -> Figure:
    """Predicted against actual sparsity, one panel per reading of the actual limit, for the
    rows of ``prune-jax calibrate``; the diagonal and a ``+-band`` strip are drawn, runs with
    regime warnings are hollow."""
    readings = (("actual_before_first_drop", "(a) last before the first drop"),
                ("actual_largest_passing", "(b) largest passing (reference code)"),
                ("actual_loss_within_eps", "(c) test loss within eps (the theory)"))
    groups = sorted({(r["dataset"], r["model"]) for r in records})
    fig = Figure(figsize=(16, 5))
    axes = fig.subplots(1, 3)
    lo = max(0.0, min([r[k] for r in records for k in ("predicted", *dict(readings))]) - 0.05)
    for ax, (key, name) in zip(axes, readings, strict=True):
        ax.plot([lo, 1], [lo, 1], "k-", lw=1)
        ax.fill_between([lo, 1], [lo - band, 1 - band], [lo + band, 1 + band], color="gray",
                        alpha=0.2, label=f"+-{band:g}")
        for i, (dataset, model) in enumerate(groups):
            recs = [r for r in records if (r["dataset"], r["model"]) == (dataset, model)]
            for warned in (False, True):
                sel = [r for r in recs if bool(r["warnings"]) == warned]
                if sel:
                    ax.scatter([r[key] for r in sel], [r["predicted"] for r in sel], s=30,
                               facecolors="none" if warned else f"C{i}", edgecolors=f"C{i}",
                               label=f"{dataset} {model}" + (" (warned)" if warned else ""))
        gaps = np.abs([r["predicted"] - r[key] for r in records])
        ax.set(xlim=(lo, 1), ylim=(lo, 1), xlabel=f"actual sparsity, {name}",
               ylabel="predicted sparsity",
               title=f"mean |gap| {gaps.mean():.3f}, max {gaps.max():.3f}")
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig
