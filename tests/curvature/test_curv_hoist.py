"""Any matvec is hoisted: its arrays are compiled-program arguments, never constants (SPEC 1.1).

Closures over data and parameters, ``functools.partial``, nested ``jax.jit`` and pytrees of
arrays all reach the compiled loops as arguments: a new matvec of the same shapes with new
values compiles nothing (counted with ``jax.log_compiles``), and the results equal those of
:func:`hvp_operator`.
"""

from __future__ import annotations

import functools
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.tree_util import Partial

import prune_jax as pj
from prune_jax.curvature.hoist import as_operator, hoist


class _Compiles(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.getMessage().startswith("Compiling")


@pytest.fixture
def compiles():
    handler = _Compiles()
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    try:
        with jax.log_compiles():
            yield handler
    finally:
        logger.removeHandler(handler)


def _data(seed: int):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(4096, 64)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 4096))
    params = {"w": jnp.asarray(rng.normal(size=(64, 3)) / 8, jnp.float32),
              "b": jnp.zeros(3, jnp.float32)}
    return x, y, params


def _xent(params, x, y):
    logp = jax.nn.log_softmax(jnp.tanh(x @ params["w"] + params["b"]))
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def test_closure_over_data_and_params_equals_hvp_operator_without_recompiling(compiles):
    """The natural ``lambda v: hvp(loss, params, v)`` with ``loss`` closing over a 4096 x 64
    array: the same result as ``hvp_operator``; new values of the same shapes reuse every
    compiled program."""
    x, y, params = _data(0)
    key = jax.random.key(0)
    t0 = time.perf_counter()
    v0 = jax.tree.map(jnp.ones_like, params)
    op = pj.hvp_operator(lambda p, b: _xent(p, *b), params, (x[None], y[None]))
    ref = pj.lanczos(op, v0, 8, key=key)
    t1 = time.perf_counter()
    loss = lambda p: _xent(p, x, y)
    got = pj.lanczos(lambda v: pj.hvp(loss, params, v), v0, 8, key=key)
    t2 = time.perf_counter()
    print(f"first call: hvp_operator {t1 - t0:.2f} s, closure {t2 - t1:.2f} s")
    np.testing.assert_allclose(got.alphas, ref.alphas, rtol=1e-4, atol=1e-6)
    x2, y2, params2 = _data(1)
    loss2 = lambda p: _xent(p, x2, y2)
    before = compiles.count
    new = pj.lanczos(lambda v: pj.hvp(loss2, params2, v), v0, 8, key=key)
    assert compiles.count == before  # new values, same shapes: nothing compiled
    assert not np.allclose(new.alphas, got.alphas)


def test_every_kind_of_matvec_is_hoisted():
    a = jnp.asarray(np.random.default_rng(2).normal(size=(6, 6)), jnp.float32)
    a = a + a.T
    v = jnp.arange(6.0)
    inner = jax.jit(lambda u: a @ u)  # a nested jit closing over ``a``
    pytree = {"m": a, "s": jnp.float32(2.0)}
    forms = {"lambda": lambda u: a @ u,
             "partial": functools.partial(jnp.matmul, a),
             "Partial": Partial(jnp.matmul, a),
             "nested jit": lambda u: inner(u),
             "pytree closure": lambda u: pytree["m"] @ u * pytree["s"] / 2}
    for name, fn in forms.items():
        op = hoist(fn, v)
        assert any(leaf.shape == (6, 6) for leaf in jax.tree.leaves(op)), name
        np.testing.assert_allclose(op(v), a @ v, rtol=1e-6, err_msg=name)
    # the same structure with new values is the same static part (one compiled program)
    b = 2 * a
    assert jax.tree.structure(hoist(lambda u: b @ u, v)) == \
        jax.tree.structure(hoist(lambda u: a @ u, v))


def test_amortised_operator_equals_plain_and_respects_the_budget():
    """``jax.linearize`` of any linear matvec: the v-independent work is done once."""
    x, y, params = _data(3)
    mv = lambda v: pj.hvp(lambda p: _xent(p, x, y), params, v)
    v = jax.tree.map(jnp.ones_like, params)
    plain = as_operator(mv, params, linearize=False)
    lin = as_operator(mv, params, linearize=True)
    auto = as_operator(mv, params, memory_budget=0)  # nothing fits: the plain product
    assert jax.tree.structure(auto) == jax.tree.structure(plain)
    assert jax.tree.structure(lin) != jax.tree.structure(plain)
    for op in (lin, auto):
        for a, b in zip(jax.tree.leaves(op(v)), jax.tree.leaves(plain(v)), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_every_estimator_reuses_its_program_for_new_values(compiles):
    """A ``functools.partial`` over new values of the same shapes compiles nothing, in each
    public estimator (``lanczos``: the closure test above)."""
    rng = np.random.default_rng(4)
    a, b = (jnp.asarray(m + m.T, jnp.float32) for m in rng.normal(size=(2, 8, 8)))
    like, key = jnp.zeros(8), jax.random.key(0)
    calls = {
        "top_eigenvalues": lambda mv: pj.top_eigenvalues(mv, like, key=key, k=1, num_steps=4),
        "hutchinson_trace": lambda mv: pj.hutchinson_trace(mv, like, key=key, num_probes=2),
        "slq": lambda mv: pj.slq(mv, like, key=key, num_probes=2, num_steps=4),
        "estimate_spectrum": lambda mv: pj.estimate_spectrum(mv, like, key=key, num_steps=3,
                                                             top_steps=4),
    }
    for name, call in calls.items():
        start = compiles.count
        call(functools.partial(jnp.matmul, a))
        before = compiles.count
        call(functools.partial(jnp.matmul, b))
        assert before > start and compiles.count == before, name  # compiled once, reused
