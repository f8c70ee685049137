"""The mesh-aware functions in this (one-device) process (docs/scaling.md).

The sharded and multi-host results are checked in fresh interpreters by
``test_scale_sharded.py`` (8 simulated devices) and ``test_scale_multihost.py`` (slow); here
only what one device can show: argument errors naming the argument, one-device meshes, and
the sharding helpers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prune_jax.curvature import hessian_row_zero_mass, hvp_operator
from prune_jax.sharding import (
    fsdp_shardings,
    make_mesh,
    replicate,
    shard_batches,
    shard_params,
)
from prune_jax.tree import check_finite, fully_addressable, replicated_sharding, to_host


def _loss(params, batch):
    return jnp.mean((batch @ params["w"]) ** 2) + jnp.sum(params["w"] ** 4)


def _setup():
    params = {"w": jnp.linspace(-1.0, 1.0, 5)}
    batches = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 5)), jnp.float32)
    return params, batches


def test_operator_on_a_one_device_mesh_equals_the_plain_operator():
    params, batches = _setup()
    sizes = np.array([1.0, 2.0, 5.0])
    v = {"w": jnp.arange(5.0)}
    ref = hvp_operator(_loss, params, batches, batch_sizes=sizes)(v)
    for linearize in (False, True):
        op = hvp_operator(_loss, replicate(params, make_mesh()), batches, batch_sizes=sizes,
                          mesh=make_mesh(), linearize=linearize)
        np.testing.assert_allclose(op(v)["w"], ref["w"], rtol=1e-5, atol=1e-6)


def test_mesh_argument_errors_name_their_arguments():
    params, batches = _setup()
    mesh = make_mesh()
    with pytest.raises(ValueError, match="data_axis"):
        hvp_operator(_loss, params, batches, mesh=mesh, data_axis="batch")
    with pytest.raises(ValueError, match="batch_sizes"):
        hvp_operator(_loss, params, batches, mesh=mesh, batch_sizes=[1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="batch_sizes"):
        hvp_operator(_loss, params, batches, mesh=mesh, batch_sizes=[1.0, 2.0])
    with pytest.raises(ValueError, match="need batches"):
        hvp_operator(lambda p: jnp.sum(p["w"] ** 2), params, mesh=mesh)
    op = hvp_operator(_loss, params, batches)
    ref = hessian_row_zero_mass(op, params, num_rows=5)
    got = hessian_row_zero_mass(op, params, num_rows=5, mesh=mesh)
    assert got.indices.tolist() == ref.indices.tolist()
    np.testing.assert_allclose(got.row_l1, ref.row_l1, rtol=1e-6)
    with pytest.raises(TypeError, match="mesh"):
        hessian_row_zero_mass(op, params, num_rows=5, mesh="data")


def test_mesh_and_sharding_helpers():
    mesh = make_mesh()
    assert mesh.axis_names == ("data", "model") and mesh.size == jax.device_count()
    with pytest.raises(ValueError, match="model"):
        make_mesh(model=0)
    with pytest.raises(ValueError, match="devices"):
        make_mesh(data=jax.device_count() + 1)
    params = {"kernel": jnp.zeros((64, 32)), "bias": jnp.zeros(32)}
    assert set(fsdp_shardings(params, mesh, min_size=1)) == {"kernel", "bias"}
    shard_params(params, mesh)
    sb = shard_batches((np.zeros((3, 2)),), mesh, batch_sizes=[1, 2, 3])
    assert sb.num_padding == 0 and np.allclose(np.asarray(sb.sizes), [1, 2, 3])
    with pytest.raises(ValueError, match="axis"):
        shard_batches((np.zeros((3, 2)),), mesh, axis="nope")


def test_helpers_for_non_addressable_arrays_on_one_process():
    tree = {"a": jnp.ones(3), "b": np.zeros(2), "c": replicate(jnp.ones(4), make_mesh())}
    assert fully_addressable(tree)
    assert replicated_sharding(tree) is None  # nothing to replicate in one process
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(to_host(tree)))


def test_check_finite_names_the_leaf_in_one_pass():
    tree = {"a": jnp.ones(3), "b": {"c": jnp.array([1.0, jnp.nan])}, "i": jnp.arange(3)}
    with pytest.raises(ValueError, match=r"params contains NaN or Inf \(leaf 'b/c'\)"):
        check_finite(tree, "params")
    check_finite({"a": jnp.ones(3), "i": jnp.arange(3), "f": 2.0}, "params")
    check_finite({"i": jnp.arange(3)}, "params")  # no floating leaf: nothing to check
