"""The exact spectrum (dense Hessian from vmapped HVPs + eigh) against jax.hessian + eigh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prune_jax.curvature import hvp_operator
from prune_jax.curvature.exact import dense_hessian, exact_eigenvalues
from prune_jax.models import get_model, init_variables
from prune_jax.tree import combine, partition, prunable_tree, ravel


def test_exact_mode_equals_jax_hessian_on_a_small_model():
    """Full-data Hessian of a Flax MLP w.r.t. its kernels, over 3 unequal batches."""
    model = get_model("mlp", num_classes=3, hidden=(5, 4))
    params = init_variables(model, jax.random.key(0), (6,))["params"]
    sel, rest = partition(params, prunable_tree(params))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(3, 8, 6)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, size=(3, 8)))
    sizes = jnp.array([8.0, 8.0, 5.0])
    w = (jnp.arange(8)[None, :] < sizes[:, None]).astype(jnp.float32)

    def loss(s, b):
        logits = model.apply({"params": combine(s, rest)}, b["x"])
        ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), b["y"][:, None], 1)[:, 0]
        return jnp.sum(ce * b["w"]) / jnp.sum(b["w"])

    batches = {"x": x, "y": y, "w": w}
    op = hvp_operator(loss, sel, batches, batch_sizes=sizes)
    flat, unravel = ravel(sel)

    def full_loss(f):
        per = jnp.stack([loss(unravel(f), jax.tree.map(lambda a, i=i: a[i], batches))
                         for i in range(3)])
        return jnp.sum(per * sizes) / jnp.sum(sizes)

    ref = np.asarray(jax.jit(jax.hessian(full_loss))(flat), np.float64)
    got = dense_hessian(op, sel, chunk=7)
    assert got.shape == (flat.size, flat.size) == (6 * 5 + 5 * 4 + 4 * 3,) * 2
    np.testing.assert_allclose(got, 0.5 * (ref + ref.T), atol=2e-6)
    np.testing.assert_allclose(exact_eigenvalues(op, sel, chunk=7),
                               np.linalg.eigvalsh(0.5 * (ref + ref.T)), atol=2e-6)


def test_exact_eigenvalues_of_a_plain_closure_and_bad_chunk():
    a = jnp.diag(jnp.array([3.0, -1.0, 0.5]))
    np.testing.assert_allclose(exact_eigenvalues(lambda v: a @ v, jnp.zeros(3)),
                               [-1.0, 0.5, 3.0])
    with pytest.raises(ValueError, match="chunk"):
        exact_eigenvalues(lambda v: a @ v, jnp.zeros(3), chunk=0)
