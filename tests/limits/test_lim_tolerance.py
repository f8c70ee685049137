"""The loss tolerance eps (SPEC 2.3): shuffled batches against numpy, stacked batches against
a Python loop, no recompilation for new values, clear errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prune_jax.limits import loss_tolerance, shuffled_loss_tolerance


def _regression(seed: int, num_batches: int = 6):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(num_batches, 16, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(num_batches, 16)), jnp.float32)
    w = {"kernel": jnp.asarray(rng.normal(size=3), jnp.float32)}
    return w, {"x": x, "y": y}


def _mse_plus_l1(params, batch):
    err = batch["x"] @ params["kernel"] - batch["y"]
    return jnp.mean(err ** 2) + 1e-3 * jnp.sum(jnp.abs(params["kernel"]))


def test_loss_tolerance_matches_a_python_loop():
    params, batches = _regression(0)
    tol = loss_tolerance(_mse_plus_l1, params, batches)
    loop = np.array([float(_mse_plus_l1(params, {"x": batches["x"][i], "y": batches["y"][i]}))
                     for i in range(6)])
    np.testing.assert_allclose(tol.losses, loop, rtol=1e-6)
    assert float(tol.std) == pytest.approx(np.std(loop), rel=1e-5)
    assert float(tol.mean) == pytest.approx(np.mean(loop), rel=1e-6)
    ddof1 = loss_tolerance(_mse_plus_l1, params, batches, ddof=1)
    assert float(ddof1.std) == pytest.approx(np.std(loop, ddof=1), rel=1e-5)


def _compilations(fn) -> int:
    """Number of XLA compilations while running ``fn`` (read from jax's compile log)."""
    import logging
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles(True):
            fn()
    finally:
        logger.removeHandler(handler)
    return sum("Finished XLA compilation" in m for m in records)


def test_loss_tolerance_params_and_batches_are_jit_arguments():
    params, batches = _regression(1)
    first = loss_tolerance(_mse_plus_l1, params, batches)
    params2, batches2 = _regression(2)
    assert _compilations(lambda: loss_tolerance(_mse_plus_l1, params2, batches2)) == 0
    assert float(loss_tolerance(_mse_plus_l1, params2, batches2).mean) != float(first.mean)


def test_loss_tolerance_errors():
    params, batches = _regression(3)
    with pytest.raises(TypeError, match="loss_fn"):
        loss_tolerance("mse", params, batches)
    with pytest.raises(ValueError, match="loss_fn"):
        loss_tolerance(lambda p, b: b["y"], params, batches)
    with pytest.raises(ValueError, match="batches"):
        loss_tolerance(_mse_plus_l1, params, {"x": batches["x"], "y": batches["y"][:5]})
    with pytest.raises(ValueError, match="batches"):
        loss_tolerance(_mse_plus_l1, params, jax.tree.map(lambda v: v[:1], batches))
    with pytest.raises(ValueError, match="params"):
        loss_tolerance(_mse_plus_l1, {"kernel": jnp.full(3, jnp.inf)}, batches)


def test_shuffled_loss_tolerance_equals_a_numpy_reference():
    """Same permutations (jax.random.permutation of the split keys), losses in numpy."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(103, 3)).astype(np.float32)
    y = rng.normal(size=103).astype(np.float32)
    w = rng.normal(size=3).astype(np.float32)
    key, bs, shuffles = jax.random.key(3), 10, 4
    tol = shuffled_loss_tolerance(_mse_plus_l1, {"kernel": jnp.asarray(w)},
                                  {"x": jnp.asarray(x), "y": jnp.asarray(y)},
                                  batch_size=bs, key=key, num_shuffles=shuffles)
    ref = []
    for k in jax.random.split(key, shuffles):
        order = np.asarray(jax.random.permutation(k, 103))[:100].reshape(10, bs)
        err = x[order].astype(np.float64) @ w - y[order]
        ref.append(np.mean(err ** 2, axis=1) + 1e-3 * np.abs(w).sum())
    ref = np.array(ref)
    np.testing.assert_allclose(tol.losses, ref, rtol=1e-5)
    stds = ref.std(axis=1)
    assert float(tol.std) == pytest.approx(stds.mean(), rel=1e-4)
    assert float(tol.spread) == pytest.approx(stds.std(ddof=1), rel=1e-3)
    assert float(tol.mean) == pytest.approx(ref.mean(), rel=1e-5)
    one = shuffled_loss_tolerance(_mse_plus_l1, {"kernel": jnp.asarray(w)},
                                  {"x": jnp.asarray(x), "y": jnp.asarray(y)},
                                  batch_size=bs, key=key, num_shuffles=1)
    assert float(one.spread) == 0.0 and one.losses.shape == (1, 10)


def test_shuffled_loss_tolerance_errors():
    params, batches = _regression(8)
    data = {"x": batches["x"].reshape(-1, 3), "y": batches["y"].reshape(-1)}
    kw = {"batch_size": 16, "key": jax.random.key(0)}
    with pytest.raises(ValueError, match="batch_size"):
        shuffled_loss_tolerance(_mse_plus_l1, params, data, batch_size=60, key=kw["key"])
    with pytest.raises(ValueError, match="num_shuffles"):
        shuffled_loss_tolerance(_mse_plus_l1, params, data, num_shuffles=0, **kw)
    with pytest.raises(TypeError, match="key"):
        shuffled_loss_tolerance(_mse_plus_l1, params, data, batch_size=16, key=0)
    with pytest.raises(ValueError, match="examples"):
        shuffled_loss_tolerance(_mse_plus_l1, params, {"x": data["x"], "y": data["y"][:5]},
                                **kw)
    with pytest.raises(ValueError, match="floating scalar"):
        shuffled_loss_tolerance(lambda p, b: b["y"], params, data, **kw)
    with pytest.raises(ValueError, match="params contains NaN"):
        shuffled_loss_tolerance(_mse_plus_l1, {"kernel": jnp.full(3, jnp.nan)}, data, **kw)


def test_loss_tolerance_on_a_mesh_equals_no_mesh():
    from prune_jax.sharding import make_mesh
    params, batches = _regression(4, num_batches=5)
    ref = loss_tolerance(_mse_plus_l1, params, batches, ddof=1)
    got = loss_tolerance(_mse_plus_l1, params, batches, ddof=1, mesh=make_mesh())
    np.testing.assert_allclose(got.losses, ref.losses, rtol=1e-6)
    assert float(got.std) == pytest.approx(float(ref.std), rel=1e-6)
    assert float(got.mean) == pytest.approx(float(ref.mean), rel=1e-6)


def test_loss_tolerance_mesh_arguments_are_checked():
    from prune_jax.sharding import make_mesh
    params, batches = _regression(5)
    with pytest.raises(TypeError, match="mesh"):
        loss_tolerance(_mse_plus_l1, params, batches, mesh="data")
    with pytest.raises(ValueError, match="data_axis"):
        loss_tolerance(_mse_plus_l1, params, batches, mesh=make_mesh(), data_axis="batch")
    with pytest.raises(ValueError, match="process_local"):
        loss_tolerance(_mse_plus_l1, params, batches, process_local=True)
    with pytest.raises(TypeError, match="process_local"):
        loss_tolerance(_mse_plus_l1, params, batches, mesh=make_mesh(), process_local=1)
    with pytest.raises(ValueError, match="ddof"):
        loss_tolerance(_mse_plus_l1, params, batches, ddof=-1)
