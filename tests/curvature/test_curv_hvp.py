"""HVPs (SPEC 1.1) against dense ``jax.hessian`` on tiny Flax models, and data-set HVPs."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prune_jax.curvature import dataset_hvp, hvp, hvp_operator
from prune_jax.tree import ravel


class TinyMLP(nn.Module):
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.tanh(nn.Dense(7, dtype=self.dtype, param_dtype=self.dtype)(x))
        return nn.Dense(3, dtype=self.dtype, param_dtype=self.dtype)(x)


class TinyCNN(nn.Module):
    """Conv -> BatchNorm -> tanh -> mean-pool -> Dense."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.Conv(3, (3, 3), dtype=self.dtype, param_dtype=self.dtype)(x)
        x = nn.BatchNorm(use_running_average=not train, dtype=self.dtype,
                         param_dtype=self.dtype)(x)
        x = jnp.tanh(x).mean(axis=(1, 2))
        return nn.Dense(3, dtype=self.dtype, param_dtype=self.dtype)(x)


def _xent(logits: jax.Array, labels: jax.Array) -> jax.Array:
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def _dense_hvp(loss, params, v):
    flat, unravel = ravel(params)
    hess = jax.jit(jax.hessian(lambda x: loss(unravel(x))))(flat)
    return hess @ ravel(v)[0]


def _rel_err(a, b) -> float:
    a, b = np.asarray(ravel(a)[0], np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _normal(rng: np.random.Generator, shape, dtype) -> jax.Array:
    return jnp.asarray(rng.normal(size=shape), dtype)


def _like_normal(rng: np.random.Generator, tree):
    return jax.tree.map(lambda a: _normal(rng, a.shape, a.dtype), tree)


def _mlp_problem(dtype):
    model = TinyMLP(dtype)
    rng = np.random.default_rng(0)
    x = _normal(rng, (16, 5), dtype)
    y = jnp.asarray(rng.integers(0, 3, 16))
    params = _like_normal(rng, jax.eval_shape(model.init, jax.random.key(0), x)["params"])
    loss = lambda p: _xent(model.apply({"params": p}, x), y)
    return loss, params, _like_normal(rng, params)


def _cnn_problem(dtype):
    model = TinyCNN(dtype)
    rng = np.random.default_rng(1)
    x = _normal(rng, (6, 5, 5, 2), dtype)
    y = jnp.asarray(rng.integers(0, 3, 6))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    stats = {"BatchNorm_0": {"mean": 0.3 * _normal(rng, (3,), dtype),
                             "var": jnp.asarray([0.5, 1.5, 2.0], dtype)}}

    def loss(p):  # inference mode: running statistics, closed over by the loss
        return _xent(model.apply({"params": p, "batch_stats": stats}, x, train=False), y)

    params = _like_normal(rng, variables["params"])
    return loss, params, _like_normal(rng, params)


@pytest.mark.parametrize("problem, x64", [(_mlp_problem, False), (_cnn_problem, False),
                                          (_mlp_problem, True)],
                         ids=["mlp-f32", "cnn_bn-f32", "mlp-f64"])
def test_hvp_matches_dense_hessian(problem, x64):
    with jax.enable_x64(x64):
        dtype = jnp.float64 if x64 else jnp.float32
        loss, params, v = problem(dtype)
        out = hvp(loss, params, v)
        assert jax.tree.structure(out) == jax.tree.structure(params)
        assert all(a.dtype == dtype for a in jax.tree.leaves(out))
        assert _rel_err(out, _dense_hvp(loss, params, v)) < 1e-5
        if problem is _mlp_problem and not x64:  # the operator forms agree with the function
            assert _rel_err(hvp_operator(loss, params)(v), ravel(out)[0]) < 1e-6
            lin = hvp_operator(loss, params, linearize=True)
            assert _rel_err(lin(v), ravel(out)[0]) < 1e-6


def test_hvp_on_arbitrary_pytree():
    params = ([jnp.array([1.0, 2.0])], {"c": jnp.array(3.0)})
    loss = lambda p: jnp.sum(p[0][0] ** 3) * p[1]["c"] ** 2
    v = ([jnp.array([1.0, -1.0])], {"c": jnp.array(0.5)})
    out = hvp(loss, params, v)
    # analytic: d2/da2 = 6 a c^2 diag, d2/dadc = 6 a^2 c, d2/dc2 = 2 sum a^3
    a, c = np.array([1.0, 2.0]), 3.0
    want_a = 6 * a * c**2 * np.array([1.0, -1.0]) + 6 * a**2 * c * 0.5
    want_c = np.dot(6 * a**2 * c, [1.0, -1.0]) + 2 * np.sum(a**3) * 0.5
    np.testing.assert_allclose(out[0][0], want_a, rtol=1e-6)
    np.testing.assert_allclose(out[1]["c"], want_c, rtol=1e-6)


def _masked_problem(dtype):
    """Padded batches with masks: batch b holds n_b real examples out of 8 slots."""
    model = TinyMLP(dtype)
    rng = np.random.default_rng(2)
    sizes = np.array([8, 3, 5, 1])
    x = _normal(rng, (4, 8, 5), dtype)
    y = jnp.asarray(rng.integers(0, 3, (4, 8)))
    mask = jnp.asarray(np.arange(8)[None, :] < sizes[:, None], dtype)
    params = _like_normal(rng, jax.eval_shape(model.init, jax.random.key(0), x[0])["params"])

    def batch_loss(p, batch):  # mean over the real examples of one batch
        xb, yb, mb = batch
        logp = jax.nn.log_softmax(model.apply({"params": p}, xb))
        nll = -jnp.take_along_axis(logp, yb[:, None], axis=1)[:, 0]
        return jnp.sum(mb * nll) / jnp.sum(mb)

    keep = np.asarray(mask, bool).reshape(-1)
    xc, yc = x.reshape(-1, 5)[keep], y.reshape(-1)[keep]
    full_loss = lambda p: _xent(model.apply({"params": p}, xc), yc)
    return batch_loss, full_loss, params, (x, y, mask), sizes, _like_normal(rng, params)


def test_dataset_hvp_equals_hvp_of_concatenated_mean_loss_in_every_operator_form():
    """Plain, linearised once, or chosen by the memory budget: the exact data-set product."""
    with jax.enable_x64(True):
        batch_loss, full_loss, params, batches, sizes, v = _masked_problem(jnp.float64)
        want = ravel(hvp(full_loss, params, v))[0]
        got = dataset_hvp(batch_loss, params, batches, v, batch_sizes=sizes)
        tol = 1e-12
        assert _rel_err(got, want) < tol
        n_data = len(jax.tree.leaves((params, batches)))
        for linearize in (True, "auto"):
            op = hvp_operator(batch_loss, params, batches, batch_sizes=sizes,
                              linearize=linearize)
            assert _rel_err(op(v), want) < tol
            assert len(jax.tree.leaves(op)) > n_data + 1  # the residuals of the linearisation
        plain = hvp_operator(batch_loss, params, batches, batch_sizes=sizes, memory_budget=0)
        assert _rel_err(plain(v), want) < tol  # nothing fits the budget: the plain product
        assert len(jax.tree.leaves(plain)) == n_data + 1  # params, batches and the sizes
        # equal weights (the default) are a different, also exact, average
        per_batch = [ravel(dataset_hvp(batch_loss, params,
                                       jax.tree.map(lambda a, i=i: a[i:i + 1], batches), v))[0]
                     for i in range(len(sizes))]
        assert _rel_err(dataset_hvp(batch_loss, params, batches, v),
                        np.mean(np.stack(per_batch), axis=0)) < tol


def test_single_batch_dataset_hvp_matches_hvp():
    from prune_jax.curvature import dataset_hvp, hvp

    w = {"a": jnp.arange(1.0, 4.0), "b": jnp.array([0.5, -1.0])}
    x = jnp.arange(6.0).reshape(1, 3, 2)  # one batch of 3 examples

    def loss(p, batch):
        return jnp.mean(jnp.tanh(batch @ p["b"] + p["a"]) ** 2)

    v = {"a": jnp.ones(3), "b": jnp.array([1.0, 2.0])}
    got = dataset_hvp(loss, w, x, v)
    want = hvp(lambda p: loss(p, x[0]), w, v)
    jax.tree.map(lambda g, e: np.testing.assert_allclose(g, e, rtol=1e-6), got, want)
