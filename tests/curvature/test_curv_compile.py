"""Parameters and batches are jit arguments: no large constants, no recompilation (SPEC 1.1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from prune_jax.curvature import hvp_operator, top_eigenvalues
from prune_jax.curvature.lanczos import _lanczos_jit
from prune_jax.curvature.spectrum import _top_jit


def _loss(params, batch):
    x, y = batch
    return jnp.mean((jnp.tanh(x @ params["w"]) @ params["u"] - y) ** 2)


def _problem(seed: int):
    rng = np.random.default_rng(seed)
    params = {"w": jnp.asarray(rng.normal(size=(20, 30)), jnp.float32),
              "u": jnp.asarray(rng.normal(size=(30,)), jnp.float32)}
    batches = (jnp.asarray(rng.normal(size=(2, 16, 20)), jnp.float32),
               jnp.asarray(rng.normal(size=(2, 16)), jnp.float32))
    return params, batches


def _largest_const(op, v0) -> int:
    """Size of the largest constant in the compiled Lanczos program for ``op``."""
    traced = _lanczos_jit.trace(op, v0, jax.random.key(0), num_steps=4, reorthogonalize=True,
                                return_basis=False, tol=1e-6)
    return max((int(np.size(c)) for c in traced.jaxpr.consts), default=0)


def test_operator_arrays_are_traced_not_constants():
    params, batches = _problem(0)
    v0 = jax.tree.map(jnp.ones_like, params)
    for linearize in (False, True):
        op = hvp_operator(_loss, params, batches, linearize=linearize)
        assert _largest_const(op, v0) < 600  # params (600 + 30) and batches (640) are inputs
    # the test can fail: a plain closure over the parameters bakes them into the program
    closure = Partial(lambda v: jax.tree.map(lambda a, b: a * b, params, v))
    assert _largest_const(closure, v0) >= 600


def test_new_values_reuse_the_compiled_program():
    """Two linearised operators at different points: one compiled Lanczos program."""
    p1, b1 = _problem(1)
    p2, b2 = _problem(2)
    key = jax.random.key(0)
    first = top_eigenvalues(hvp_operator(_loss, p1, b1, linearize=True), p1, key=key, k=2,
                            num_steps=6)
    size = _top_jit._cache_size()
    second = top_eigenvalues(hvp_operator(_loss, p2, b2, linearize=True), p2, key=key, k=2,
                             num_steps=6)
    assert _top_jit._cache_size() == size  # same shapes, new values: no recompilation
    assert not np.allclose(first.eigenvalues, second.eigenvalues)
