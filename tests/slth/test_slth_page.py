"""docs/gap.md is rendered from the run's results.json, not typed in (SPEC 4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prune_jax.experiments.gap_plots import render_page
from prune_jax.slth.sweep import loglog_slope

DOCS = Path(__file__).resolve().parents[2] / "docs"
RESULTS = json.loads((DOCS / "img" / "gap_results.json").read_text())


def test_page_is_the_rendering_of_results_json() -> None:
    """Every number of docs/gap.md comes from docs/img/gap_results.json (a copy of the run's
    results.json): re-render and compare. To update: run ``prune-jax gap``, copy its
    results.json, gap.md and figures (see docs/gap.md's set-up)."""
    assert (DOCS / "gap.md").read_text() == render_page(RESULTS)


@pytest.mark.parametrize("d", sorted(RESULTS["per_d"]))
def test_recorded_fit_range_is_the_one_used(d: str) -> None:
    arm = RESULTS["per_d"][d]["neuron"]
    widths = np.asarray(arm["curves"][0]["widths"])
    median = np.median([c["lower"] for c in arm["curves"]], axis=0)
    use = (widths >= arm["fit"]["first_width"]) & (widths <= arm["fit"]["last_width"])
    assert np.array_equal(use, widths >= np.sqrt(widths[0] * widths[-1]))
    assert arm["fit"]["slope"] == pytest.approx(loglog_slope(widths[use], median[use]))


def test_recorded_run_is_consistent() -> None:
    """The recorded bounds keep their order: lower <= found (exact errors, d = 2), the
    output-ReLU bound >= its LP part, and no weight certificate was violated."""
    assert RESULTS["weight_check_violations"] == 0 == RESULTS["neuron_bound_violations"]
    for arm in ("neuron", "neuron_relu"):
        for c in RESULTS["per_d"]["2"][arm]["curves"]:
            assert np.all(np.asarray(c["lower"]) <= np.asarray(c["found"]) + 1e-12)
            assert np.all(np.asarray(c["lower"]) >= np.asarray(c["lp_lower"]))
