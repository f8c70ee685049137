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


def test_actual_limits_both_readings():
    """(a) stops at the first drop; (b) scans from the top (the reference code's reading)."""
    sw = LIM.SweepResult(np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5]),
                         np.array([0.9, 0.91, 0.9, 0.89, 0.95, 0.5]), np.zeros(6))
    assert LIM.actual_limits(sw, 0.9) == (0.2, 0.4)
    assert LIM.actual_limits(sw, 0.9, tolerance=0.02) == (0.4, 0.4)
    assert LIM.actual_limits(sw, 0.95) == (0.0, 0.4)
    assert LIM.actual_limits(sw, 0.96) == (0.0, 0.0)
    assert LIM.actual_limits(sw, 0.4) == (0.5, 0.5)


def test_refine_sweep_samples_the_whole_transition_region():
    """From (a) to the point above (b), the sweep is refined to the resolution everywhere."""
    def accuracy(s):
        s = np.asarray(s)
        return np.where((s < 0.4115) | ((s > 0.4485) & (s < 0.4535)), 1.0, 0.5)

    def evaluate_at(points):
        return LIM.SweepResult(np.asarray(points), accuracy(points), np.zeros(len(points)))

    coarse = evaluate_at(np.linspace(0, 0.99, 100))
    assert LIM.actual_limits(coarse, 1.0) == pytest.approx((0.41, 0.45))
    fine = LIM.refine_sweep(evaluate_at, coarse, 1.0, (0.0,), 1e-3)
    a, b = LIM.actual_limits(fine, 1.0)
    assert a == pytest.approx(0.411, abs=1e-9) and b == pytest.approx(0.453, abs=1e-9)
    assert np.all(np.diff(fine.sparsity[(fine.sparsity >= 0.41) & (fine.sparsity <= 0.46)])
                  <= 1e-3 + 1e-9)


def test_limit_pipeline_smoke_with_exact_spectrum(tmp_path):
    """A tiny linear model (640 kernel weights): exact and SLQ predictions, both readings at
    two tolerances, regime diagnostics, plots, results on stdout."""
    out = tmp_path / "limit"
    cli.main(["limit", "--model", "linear", "--epochs", "3", "--probes", "2", "--steps", "8",
              "--sweep-points", "20", "--spectrum", "exact", "--zero-mass", "rows",
              "--no-progress", "--out", str(out)])
    r = json.loads((out / "limit.json").read_text())
    assert r["dimension_prunable"] == 640 and r["eps"] > 0 and r["eps_spread"] >= 0
    assert r["predicted_sparsity"] == r["predicted_sparsity_exact"]
    assert 0.0 <= r["predicted_sparsity_slq"] < 1.0
    for reading in (r["actual"], r["actual_one_example"]):
        assert 0.0 <= reading["before_first_drop"] <= reading["largest_passing"] < 1.0
    assert r["actual_one_example"]["tolerance"] == pytest.approx(1 / 360)
    assert set(r["regime"]) >= {"near_zero_fraction", "critical_mass", "sensitivity",
                                "eps_shift", "warnings"}
    train, check = r["train_sweep"], r["training_check"]
    sweep = LIM.SweepResult(*(np.asarray(train[k]) for k in ("sparsity", "accuracy", "loss")))
    assert check["loss_limit"] == LIM.loss_limit(sweep, sweep.loss[0], r["eps"])
    assert check["generalisation_gap"] == pytest.approx(
        (r["dense_test_loss"] - check["dense_train_loss"]) / r["eps"])
    assert set(r["warnings"]) == set(r["regime"]["warnings"]) | set(check["warnings"])
    assert np.load(out / "exact_eigenvalues.npy").shape == (640,)
    assert 0.0 <= r["zero_mass_rows"] <= 1.0
    for name in ("spectral_density.png", "accuracy_vs_sparsity.png", "fixed_point.png"):
        assert (out / name).stat().st_size > 1000


def test_spectrum_pipeline_smoke(tmp_path):
    out = tmp_path / "spec"
    cli.main(["spectrum", "--epochs", "2", "--probes", "2", "--steps", "8", "--top-k", "2",
              "--top-steps", "10", "--no-progress", "--out", str(out)])
    r = json.loads((out / "spectrum.json").read_text())
    assert len(r["top_eigenvalues"]) == 2 and r["top_eigenvalues"][0] >= r["top_eigenvalues"][1]
    assert (out / "spectral_density.png").stat().st_size > 1000


def test_calibrate_records_every_run_and_summarises(tmp_path):
    out = tmp_path / "cal"
    assert cli.main(["calibrate", "--runs", "digits:linear", "--l1-budgets", "0.5", "2",
                     "--seeds", "0", "--epochs", "2", "--probes", "2", "--steps", "8",
                     "--no-progress", "--out", str(out)]) == 0
    study = json.loads((out / "calibration.json").read_text())
    assert len(study["records"]) == 2
    for r, budget in zip(study["records"], (0.5, 2.0), strict=True):
        steps = 2 * (1437 // 128)
        assert r["l1"] == pytest.approx(budget * 0.1 / (0.05 * steps))
        assert r["l1_budget"] == pytest.approx(budget)
        assert {"predicted", "actual_before_first_drop", "actual_largest_passing",
                "actual_loss_within_eps", "warnings"} <= set(r)
    summary = study["summary"]["all"]
    gaps = [abs(r["predicted"] - r["actual_largest_passing"]) for r in study["records"]]
    assert summary["largest_passing"]["max_abs_gap"] == pytest.approx(max(gaps))
    assert (out / "calibration.png").stat().st_size > 1000
    assert "| digits | linear | 0.5 |" in (out / "calibration.md").read_text()


def _diagonal_problem(low: float):
    """2,000 kernel weights and a diagonal Hessian with |eigenvalues| log-uniform in [low, 1]."""
    rng = np.random.default_rng(0)
    params = {"Dense_0": {"kernel": jax.numpy.asarray(rng.laplace(0, 0.05, (40, 50)),
                                                      jax.numpy.float32)}}
    lam = np.exp(rng.uniform(np.log(low), 0.0, 2000)) * rng.choice([-1, 1], 2000, p=[0.2, 0.8])
    diag = {"Dense_0": {"kernel": jax.numpy.asarray(lam.reshape(40, 50), jax.numpy.float32)}}
    op = jax.tree_util.Partial(lambda d, v: jax.tree.map(jax.numpy.multiply, d, v), diag)
    return params, lam, op


def test_quadrature_refinement_moves_the_slq_prediction_to_the_exact_one():
    """Small eigenvalues at the critical curvature: doubling the Lanczos steps (same probes)
    brings s* from SLQ close to s* from the exact eigenvalues."""
    from prune_jax import curvature as C
    from prune_jax import limits as L

    params, lam, op = _diagonal_problem(1e-7)
    eps = 1e-4
    exact = L.predict_sparsity_limit(params, lam, eps).sparsity
    quad = C.slq(op, params, key=jax.random.key(0), num_probes=8, num_steps=16)
    refined, history = LIM.refine_quadrature(op, params, params, quad, eps,
                                             key=jax.random.key(0), max_steps=256)
    assert [m for m, _ in history] == [16, 32, 64, 128, 256]
    assert np.shape(refined.nodes) == (8, 256)
    first, last = abs(history[0][1] - exact), abs(history[-1][1] - exact)
    assert last < 0.25 * first, (exact, history)


def test_quadrature_refinement_is_skipped_when_the_quadrature_resolves_f():
    from prune_jax import curvature as C

    params, _, op = _diagonal_problem(0.1)   # critical curvature above the spectrum
    quad = C.slq(op, params, key=jax.random.key(0), num_probes=8, num_steps=64)
    refined, history = LIM.refine_quadrature(op, params, params, quad, 1.0,
                                             key=jax.random.key(0), max_steps=256)
    assert len(history) == 1 and refined is quad


def test_quadrature_refinement_rejects_bad_limits():
    params, _, op = _diagonal_problem(0.1)
    with pytest.raises(ValueError, match="max_steps"):
        LIM.refine_quadrature(op, params, params, None, 1.0, key=jax.random.key(0), max_steps=1)
