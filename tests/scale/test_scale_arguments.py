"""Arguments of the mesh-aware functions, in this (one-device) process (docs/scaling.md).

The sharded and multi-host results are checked in fresh interpreters by
``test_scale_sharded.py`` and ``test_scale_multihost.py``; here only what one device can
show: argument errors naming the argument, and the one-device behaviour of the helpers for
arrays that are not fully addressable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prune_jax.curvature import hessian_row_zero_mass, hvp_operator, sharded_hvp_operator
from prune_jax.sharding import make_mesh, replicate
from prune_jax.tree import check_finite, fully_addressable, replicated_sharding, to_host


def _loss(params, batch):
    return jnp.mean((batch @ params["w"]) ** 2) + jnp.sum(params["w"] ** 4)


def _setup():
    params = {"w": jnp.linspace(-1.0, 1.0, 5)}
    batches = jnp.asarray(np.random.default_rng(0).normal(size=(3, 4, 5)), jnp.float32)
    return params, batches


def test_linearize_must_be_a_bool():
    params, batches = _setup()
    with pytest.raises(TypeError, match="linearize"):
        sharded_hvp_operator(_loss, params, batches, mesh=make_mesh(), linearize=1)


def test_linearized_sharded_operator_equals_hvp_operator_on_one_device():
    params, batches = _setup()
    v = {"w": jnp.arange(5.0)}
    lin = sharded_hvp_operator(_loss, params, batches, mesh=make_mesh(), linearize=True)
    ref = hvp_operator(_loss, params, batches)(v)
    np.testing.assert_allclose(lin(v)["w"], ref["w"], rtol=1e-5, atol=1e-6)
    assert lin.func.mesh.size == 1  # read by the spectrum routines to lay out the vectors


def test_zero_mass_mesh_argument():
    params, batches = _setup()
    op = hvp_operator(_loss, params, batches)
    ref = hessian_row_zero_mass(op, params, num_rows=5)
    got = hessian_row_zero_mass(op, params, num_rows=5, mesh=make_mesh())
    assert got.indices.tolist() == ref.indices.tolist()
    np.testing.assert_allclose(got.row_l1, ref.row_l1, rtol=1e-6)
    with pytest.raises(TypeError, match="mesh"):
        hessian_row_zero_mass(op, params, num_rows=5, mesh="data")


def test_helpers_for_non_addressable_arrays_on_one_process():
    tree = {"a": jnp.ones(3), "b": np.zeros(2), "c": replicate(jnp.ones(4), make_mesh())}
    assert fully_addressable(tree)
    assert replicated_sharding(tree) is None  # nothing to replicate in one process
    host = to_host(tree)
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(host))


def test_check_finite_names_the_leaf_in_one_pass():
    tree = {"a": jnp.ones(3), "b": {"c": jnp.array([1.0, jnp.nan])}, "i": jnp.arange(3)}
    with pytest.raises(ValueError, match=r"params contains NaN or Inf \(leaf 'b/c'\)"):
        check_finite(tree, "params")
    check_finite({"a": jnp.ones(3), "i": jnp.arange(3), "f": 2.0}, "params")
    check_finite({"i": jnp.arange(3)}, "params")  # no floating leaf: nothing to check
