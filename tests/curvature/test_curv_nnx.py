"""Curvature functions with a loss written for Flax NNX (``nnx.split`` / ``nnx.merge``)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import prune_jax as pj


class _MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(5, 4, rngs=rngs)
        self.out = nnx.Linear(4, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


def _problem():
    graphdef, state = nnx.split(_MLP(nnx.Rngs(0)), nnx.Param)
    x = jax.random.normal(jax.random.key(1), (32, 5))
    y = jax.random.randint(jax.random.key(2), (32,), 0, 3)

    def loss_fn(state, batch):
        logits = nnx.merge(graphdef, state)(batch["x"])
        return optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()

    return state, {"x": x, "y": y}, loss_fn


def test_hvp_and_spectrum_of_an_nnx_loss_equal_the_dense_hessian():
    state, batch, loss_fn = _problem()
    flat, unravel = jax.flatten_util.ravel_pytree(state)
    hess = np.asarray(jax.hessian(lambda f: loss_fn(unravel(f), batch))(flat))
    v = jax.random.normal(jax.random.key(3), flat.shape)
    hv = pj.hvp(lambda s: loss_fn(s, batch), state, unravel(v))
    assert isinstance(hv, nnx.State)
    np.testing.assert_allclose(jax.flatten_util.ravel_pytree(hv)[0], hess @ v, rtol=1e-4,
                               atol=1e-6)
    exact = np.linalg.eigvalsh(hess)
    op = pj.hvp_operator(loss_fn, state, jax.tree.map(lambda a: a[None], batch))
    top = pj.top_eigenvalues(op, state, key=jax.random.key(4), k=2, num_steps=flat.size)
    np.testing.assert_allclose(np.asarray(top.eigenvalues), exact[::-1][:2], rtol=1e-3)
    quad = pj.slq(op, state, key=jax.random.key(5), num_probes=2, num_steps=flat.size)
    assert quad.dim == flat.size
    # a full-length Lanczos run has the Hessian's eigenvalues as Ritz values
    np.testing.assert_allclose(np.sort(np.asarray(quad.nodes)[0]), exact, atol=1e-4)
