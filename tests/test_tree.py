import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prune_jax import tree as T


def _params():
    return {
        "Dense_0": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3)},
        "BatchNorm_0": {"scale": jnp.ones(3), "bias": jnp.zeros(3)},
        "Conv_0": {"kernel": jnp.ones((3, 3, 1, 2))},
    }


def test_ravel_roundtrip_and_size():
    p = _params()
    flat, unravel = T.ravel(p)
    assert flat.shape == (T.tree_size(p),) == (6 + 3 + 3 + 3 + 18,)
    back = unravel(flat)
    jax.tree.map(np.testing.assert_array_equal, back, p)


def test_dot_norm_match_flat_numpy():
    p = _params()
    q = T.tree_random_like(jax.random.key(0), p, "normal")
    fp, fq = T.ravel(p)[0], T.ravel(q)[0]
    np.testing.assert_allclose(T.tree_dot(p, q), np.dot(fp, fq), rtol=1e-6)
    np.testing.assert_allclose(T.tree_norm(q), np.linalg.norm(fq), rtol=1e-6)
    r = T.tree_add_scaled(p, 2.0, q)
    np.testing.assert_allclose(T.ravel(r)[0], fp + 2 * fq, rtol=1e-6)


def test_rademacher_entries_are_pm1():
    z = T.tree_random_like(jax.random.key(1), _params())
    flat = T.ravel(z)[0]
    assert set(np.unique(np.asarray(flat)).tolist()) <= {-1.0, 1.0}
    with pytest.raises(ValueError, match="kind"):
        T.tree_random_like(jax.random.key(1), _params(), "uniform")


def test_default_prunable_selects_kernels_only():
    flags = T.prunable_tree(_params())
    assert flags["Dense_0"]["kernel"] and flags["Conv_0"]["kernel"]
    assert not flags["Dense_0"]["bias"] and not flags["BatchNorm_0"]["scale"]
    assert T.leaf_names(_params())[0] == "BatchNorm_0/bias"
    assert len(T.prunable_leaves(_params())) == 2
    with pytest.raises(ValueError, match="prunable"):
        T.prunable_leaves({"b": jnp.ones(3)})


def test_checks_name_the_argument():
    p = _params()
    with pytest.raises(ValueError, match="mask"):
        T.check_same_structure(p, {"a": 1}, "params", "mask")
    bad = jax.tree.map(lambda x: x, p)
    bad["Conv_0"]["kernel"] = jnp.ones((3, 3, 1, 3))
    with pytest.raises(ValueError, match="Conv_0/kernel"):
        T.check_same_structure(p, bad, "params", "mask")
    bad["Conv_0"]["kernel"] = jnp.full((3, 3, 1, 2), jnp.nan)
    with pytest.raises(ValueError, match="params contains NaN"):
        T.check_finite(bad, "params")
    with pytest.raises(TypeError, match="v leaf"):
        T.check_floating({"a": jnp.ones(2, jnp.int32)}, "v")


def test_partition_combine_roundtrip_and_grad_subset():
    p = _params()
    sel, rest = T.partition(p, T.prunable_tree(p))
    assert sel["Dense_0"]["bias"] is None and rest["Dense_0"]["kernel"] is None
    assert T.tree_size(sel) == 6 + 18
    back = T.combine(sel, rest)
    jax.tree.map(np.testing.assert_array_equal, back, p)

    def loss(s):
        full = T.combine(s, rest)
        return sum(jnp.sum(x ** 2) for x in jax.tree.leaves(full))

    g = jax.grad(loss)(sel)
    np.testing.assert_allclose(g["Conv_0"]["kernel"], 2 * p["Conv_0"]["kernel"])
