"""``prune-jax gap --smoke`` end to end (SPEC 4)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prune_jax.cli import main
from prune_jax.experiments import gap, gap_plots
from prune_jax.slth.sweep import loglog_slope


def test_cli_smoke_run(tmp_path: Path) -> None:
    assert main(["gap", "--smoke", "--no-progress", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    for name in ("gap_widths.png", "gap_errors.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert results["weight_check_violations"] == 0
    assert results["neuron_bound_violations"] == 0
    page = (tmp_path / "gap.md").read_text()
    assert page == gap_plots.render_page(results) and "like for like" in page
    d2 = results["per_d"]["2"]
    # the fit range in the JSON is the one the slope was fitted on
    fit = d2["neuron"]["fit"]
    widths = np.asarray(d2["neuron"]["curves"][0]["widths"])
    median = np.median([c["lower"] for c in d2["neuron"]["curves"]], axis=0)
    use = widths >= np.sqrt(widths[0] * widths[-1])
    assert (fit["first_width"], fit["last_width"]) == (widths[use][0], widths[use][-1])
    assert fit["slope"] == pytest.approx(loglog_slope(widths[use], median[use]))
    relu = d2["neuron_relu"]["curves"]
    assert all(np.all(np.asarray(c["lower"]) >= np.asarray(c["lp_lower"])) for c in relu)
    n_eps = len(results["inv_eps_log2"])
    assert len(d2["neuron"]["lower_median"]) == n_eps == len(d2["weight"]["upper_median"])
    assert "neuron_relu" in d2 and d2["supermask"]
    # the certified neuron lower bound never exceeds a width at which a subset was found
    for lb, found in zip(d2["neuron"]["lower_per_seed"], d2["neuron"]["found_per_seed"],
                         strict=True):
        assert all(f is None or lb_s <= f for lb_s, f in zip(lb, found, strict=True))


def test_config_validation_names_the_flag() -> None:
    with pytest.raises(ValueError, match="--neuron-max-widths"):
        gap.resolve(gap.Config(dims=(2, 4), neuron_max_widths=(8,)))
    with pytest.raises(ValueError, match="--dims"):
        gap.resolve(gap.Config(dims=(1,), neuron_max_widths=(8,)))
    with pytest.raises(ValueError, match="--smoke"):
        gap.resolve(gap.Config(smoke=True, full=True))
    with pytest.raises(ValueError, match="--relu-dims"):
        gap.resolve(gap.Config(relu_dims=(3,)))
    with pytest.raises(ValueError, match="--width-factor"):
        gap.resolve(gap.Config(width_factor=1.0))
    with pytest.raises(ValueError, match="--milp-max-width"):
        gap.resolve(gap.Config(milp_max_width=-1))


def test_smoke_refuses_the_flags_it_sets() -> None:
    """``--smoke`` fixes the sizes: combining it with one of them is an error naming both."""
    with pytest.raises(ValueError, match=r"--smoke sets --dims.*combined with --dims"):
        gap.resolve(gap.Config(smoke=True, dims=(4,), neuron_max_widths=(32,)))
    with pytest.raises(ValueError, match="combined with --seeds"):
        gap.resolve(gap.Config(smoke=True, seeds=3))
    assert gap.resolve(gap.Config(smoke=True, out=Path("x"))).dims == (2,)


def test_full_configuration_widens_the_sweep() -> None:
    default, full = gap.resolve(gap.Config()), gap.resolve(gap.Config(full=True))
    assert full.dims == default.dims == (2, 4, 8, 16)
    assert full.seeds >= 10 and full.relu_dims == full.dims
    assert full.neuron_max_widths == tuple(2 * n for n in default.neuron_max_widths)
