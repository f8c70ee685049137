"""``prune-jax gap --smoke`` end to end (SPEC 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prune_jax.cli import main
from prune_jax.experiments import gap


def test_cli_smoke_run(tmp_path: Path) -> None:
    assert main(["gap", "--smoke", "--no-progress", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    for name in ("gap_widths.png", "gap_errors.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert results["weight_check_violations"] == 0
    d2 = results["per_d"]["2"]
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


def test_full_configuration_widens_the_sweep() -> None:
    default, full = gap.resolve(gap.Config()), gap.resolve(gap.Config(full=True))
    assert full.dims == default.dims == (2, 4, 8, 16)
    assert full.seeds >= 10 and full.relu_dims == full.dims
    assert full.neuron_max_widths == tuple(2 * n for n in default.neuron_max_widths)
