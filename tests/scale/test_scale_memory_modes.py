"""Lanczos memory modes and the sharding helpers on one device (SPEC 1.2, issue #7).

The host-offloaded basis (memory kind ``pinned_host``) is the same RAM as the device on CPU,
so these tests check correctness only: every memory mode gives the same Lanczos coefficients.
The multi-device layouts are checked in ``test_scale_sharded.py``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

from prune_jax.curvature import (
    hvp_operator,
    lanczos,
    sharded_hvp_operator,
    slq,
    top_eigenvalues,
)
from prune_jax.curvature.lanczos import OFFLOAD_BLOCK_ROWS
from prune_jax.sharding import (
    fsdp_shardings,
    make_mesh,
    mesh_of,
    replicate,
    shard_batches,
    shard_params,
)


def _diag_op(dim: int = 300):
    """Diagonal operator with a known spectrum on a two-leaf pytree."""
    d = jnp.linspace(-1.0, 4.0, dim)
    like = {"a": jnp.zeros((dim - 20,)), "b": jnp.zeros((4, 5))}

    def matvec(d, v):
        flat = jnp.concatenate([v["a"], v["b"].ravel()])
        out = d * flat
        return {"a": out[:dim - 20], "b": out[dim - 20:].reshape(4, 5)}

    return Partial(matvec, d), like, np.asarray(d)


@pytest.mark.parametrize("num_steps", [5, OFFLOAD_BLOCK_ROWS, 2 * OFFLOAD_BLOCK_ROWS + 3])
def test_offloaded_basis_gives_the_device_result(num_steps):
    op, like, _ = _diag_op()
    v0 = jax.tree.map(lambda x: jnp.ones_like(x) + 0.1 * jnp.arange(x.size).reshape(x.shape),
                      like)
    dev = lanczos(op, v0, num_steps)
    host = lanczos(op, v0, num_steps, offload_basis=True)
    np.testing.assert_allclose(host.alphas, dev.alphas, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(host.betas, dev.betas, rtol=1e-5, atol=1e-6)


def test_offloaded_slq_and_top_k_match_the_device_modes():
    op, like, d = _diag_op()
    key = jax.random.key(0)
    dev = slq(op, like, key=key, num_probes=3, num_steps=20)
    host = slq(op, like, key=key, num_probes=3, num_steps=20, offload_basis=True)
    np.testing.assert_allclose(host.nodes, dev.nodes, atol=1e-4)
    np.testing.assert_allclose(host.weights, dev.weights, atol=1e-4)
    top_dev = top_eigenvalues(op, like, key=key, k=2, num_steps=40)
    top_host = top_eigenvalues(op, like, key=key, k=2, num_steps=40, offload_basis=True)
    np.testing.assert_allclose(top_host.eigenvalues, top_dev.eigenvalues, rtol=1e-5)
    np.testing.assert_allclose(top_host.eigenvalues[0], d.max(), rtol=1e-3)
    for a, b in zip(jax.tree.leaves(top_host.eigenvectors),
                    jax.tree.leaves(top_dev.eigenvectors), strict=True):
        np.testing.assert_allclose(np.abs(a), np.abs(b), atol=1e-4)


def test_breakdown_restart_with_offloaded_basis():
    """A rank-3 operator breaks down at step 3: restarts keep the offloaded basis valid."""
    d = jnp.zeros(40).at[:3].set(jnp.array([1.0, 2.0, 3.0]))
    op = Partial(lambda d, v: d * v, d)
    v0 = jnp.ones(40)
    dev = lanczos(op, v0, 10)
    host = lanczos(op, v0, 10, offload_basis=True)
    np.testing.assert_allclose(host.alphas, dev.alphas, atol=1e-5)
    np.testing.assert_allclose(host.betas, dev.betas, atol=1e-5)


def test_memory_mode_errors_name_their_arguments():
    op, like, _ = _diag_op()
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="offload_basis"):
        lanczos(op, like | {"a": jnp.ones(280)}, 4, reorthogonalize=False, offload_basis=True)
    with pytest.raises(ValueError, match="return_basis"):
        lanczos(op, like | {"a": jnp.ones(280)}, 4, return_basis=True, offload_basis=True)
    with pytest.raises(ValueError, match="batch_size"):
        slq(op, like, key=key, num_probes=2, num_steps=4, offload_basis=True, batch_size=2)
    with pytest.raises(TypeError, match="offload_basis"):
        slq(op, like, key=key, num_probes=2, num_steps=4, offload_basis=1)
    with pytest.raises(TypeError, match="mesh"):
        slq(op, like, key=key, num_probes=2, num_steps=4, mesh="data")


def _loss(params, batch):
    x, y = batch
    return jnp.mean((jnp.tanh(x @ params["w"]) @ params["u"] - y) ** 2)


def _problem():
    rng = np.random.default_rng(0)
    params = {"w": jnp.asarray(rng.normal(size=(5, 7)), jnp.float32),
              "u": jnp.asarray(rng.normal(size=(7,)), jnp.float32)}
    batches = (jnp.asarray(rng.normal(size=(3, 4, 5)), jnp.float32),
               jnp.asarray(rng.normal(size=(3, 4)), jnp.float32))
    return params, batches


def test_sharded_operator_on_a_one_device_mesh_equals_hvp_operator():
    params, batches = _problem()
    sizes = np.array([1.0, 2.0, 5.0])
    mesh = make_mesh()
    v = jax.tree.map(jnp.ones_like, params)
    ref = hvp_operator(_loss, params, batches, batch_sizes=sizes)(v)
    out = sharded_hvp_operator(_loss, replicate(params, mesh), batches, mesh=mesh,
                               batch_sizes=sizes)(v)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sharded_operator_errors_name_their_arguments():
    params, batches = _problem()
    mesh = make_mesh()
    with pytest.raises(TypeError, match="mesh"):
        sharded_hvp_operator(_loss, params, batches, mesh=None)
    with pytest.raises(ValueError, match="data_axis"):
        sharded_hvp_operator(_loss, params, batches, mesh=mesh, data_axis="batch")
    with pytest.raises(ValueError, match="batch_sizes"):
        sharded_hvp_operator(_loss, params, batches, mesh=mesh, batch_sizes=[1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="batch_sizes"):
        sharded_hvp_operator(_loss, params, batches, mesh=mesh, batch_sizes=[1.0, 2.0])
    with pytest.raises(TypeError, match="loss_fn"):
        sharded_hvp_operator(None, params, batches, mesh=mesh)


def test_mesh_and_sharding_helpers():
    mesh = make_mesh()
    assert mesh.axis_names == ("data", "model") and mesh.size == jax.device_count()
    with pytest.raises(ValueError, match="model"):
        make_mesh(model=0)
    with pytest.raises(ValueError, match="devices"):
        make_mesh(data=jax.device_count() + 1)
    params = {"kernel": jnp.zeros((64, 32)), "bias": jnp.zeros(32)}
    sh = fsdp_shardings(params, mesh, min_size=1)
    assert set(sh) == {"kernel", "bias"}
    placed = shard_params(params, mesh)
    assert mesh_of(placed) is None  # a one-device mesh: nothing to split the Lanczos basis on
    sb = shard_batches((np.zeros((3, 2)),), mesh, batch_sizes=[1, 2, 3])
    assert sb.num_padding == 0 and np.allclose(np.asarray(sb.sizes), [1, 2, 3])
    with pytest.raises(ValueError, match="axis"):
        shard_batches((np.zeros((3, 2)),), mesh, axis="nope")
