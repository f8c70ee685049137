"""End-to-end pipelines on digits at smoke sizes, through the command line."""

import json

import jax
import numpy as np
import pytest

from prune_jax import cli
from prune_jax.experiments import common
from prune_jax.experiments import limit as LIM
from prune_jax.experiments.train import evaluate
from prune_jax.sparsity import apply_mask, magnitude_mask


@pytest.fixture(scope="module")
def setup():
    return common.set_up("mlp_small", "digits", key=jax.random.key(0))


def test_cli_parser_is_built_from_config():
    p = cli.build_parser("limit")
    args = p.parse_args(["limit", "--epochs", "3", "--eps", "0.01", "--no-progress"])
    cfg = cli.config_from_args(LIM.Config, args)
    assert cfg.epochs == 3 and cfg.eps == 0.01 and cfg.progress is False
    assert cfg.model == LIM.Config().model
    with pytest.raises(SystemExit):
        cli.main(["nonexistent"])


def test_magnitude_sweep_matches_magnitude_mask(setup):
    params = setup.variables["params"]
    s = np.array([0.0, 0.3, 0.77, 0.95])
    sweep = LIM.magnitude_sweep(setup.model, params, {}, setup.test_batches, s)
    for si, acc, loss in zip(s, sweep.accuracy, sweep.loss, strict=True):
        pruned = apply_mask(params, magnitude_mask(params, float(si)))
        ref = evaluate(setup.model, pruned, {}, setup.test_batches)
        np.testing.assert_allclose(acc, ref.accuracy, atol=1e-6)
        np.testing.assert_allclose(loss, ref.loss, rtol=1e-5)
    with pytest.raises(ValueError, match="sparsities"):
        LIM.magnitude_sweep(setup.model, params, {}, setup.test_batches, np.array([1.0]))


def test_actual_limit_reads_first_failure():
    sw = LIM.SweepResult(np.array([0.0, 0.1, 0.2, 0.3, 0.4]),
                         np.array([0.9, 0.91, 0.9, 0.89, 0.95]), np.zeros(5))
    assert LIM.actual_limit(sw, 0.9) == 0.2
    assert LIM.actual_limit(sw, 0.9, tolerance=0.02) == 0.4
    assert LIM.actual_limit(sw, 0.95) == 0.0


def test_limit_pipeline_smoke(tmp_path):
    out = tmp_path / "limit"
    cli.main(["limit", "--epochs", "3", "--probes", "2", "--steps", "8", "--sweep-points", "20",
              "--zero-mass", "rows",
              "--no-progress", "--out", str(out)])
    r = json.loads((out / "limit.json").read_text())
    assert 0.0 <= r["predicted_sparsity"] < 1.0 and 0.0 <= r["actual_sparsity"] < 1.0
    assert r["eps"] > 0 and r["dimension_prunable"] == 17024
    assert 0.0 <= r["zero_mass_rows"] <= 1.0 and 0.0 <= r["zero_mass_slq"] <= 1.0
    for name in ("spectral_density.png", "accuracy_vs_sparsity.png", "fixed_point.png"):
        assert (out / name).stat().st_size > 1000


def test_spectrum_pipeline_smoke(tmp_path):
    out = tmp_path / "spec"
    cli.main(["spectrum", "--epochs", "2", "--probes", "2", "--steps", "8", "--top-k", "2",
              "--top-steps", "10", "--no-progress", "--out", str(out)])
    r = json.loads((out / "spectrum.json").read_text())
    assert len(r["top_eigenvalues"]) == 2 and r["top_eigenvalues"][0] >= r["top_eigenvalues"][1]
    assert (out / "spectral_density.png").stat().st_size > 1000
