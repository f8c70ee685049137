"""Targets, nested random pools, neuron and weight masks, and the forward pass (SPEC 4).

Target: one bias-free ReLU neuron ``f(x) = relu(<w*, x>)``. Every pruned network is
``g(x) = sum_i c_i relu(<u_i, x>)`` (:class:`Net`), optionally followed by an output ReLU (a
static ``bool``, never a pytree leaf). Neuron pruning keeps ``u = w`` and sets
``c = s * alpha``; weight pruning masks entries of ``w`` and of ``alpha``. Mask helpers work on
numpy (host) and JAX arrays alike.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from prune_jax.tree import Array
from prune_jax.validate import check_int, check_shape

__all__ = ["Net", "Pool", "WeightMask", "forward", "neuron_net", "pool_prefix", "residual",
           "sample_pool", "sample_sphere", "sample_target", "target", "weight_net"]


class Pool(NamedTuple):
    """A random bias-free two-layer ReLU network: hidden weights ``w`` (P, d), outputs ``alpha``."""

    w: Array
    alpha: Array


class Net(NamedTuple):
    """``g(x) = sum_i c[i] relu(<u[i], x>)``: effective (masked) hidden weights and outputs."""

    u: Array
    c: Array


class WeightMask(NamedTuple):
    """Unstructured mask: ``hidden`` (N, d) over the hidden weights, ``output`` (N,) over alpha."""

    hidden: Array
    output: Array


def sample_sphere(key: Array, n: int, d: int) -> Array:
    """``n`` points uniform on the unit sphere of R^d, shape (n, d)."""
    check_int(d, "d", low=2)
    check_int(n, "n", low=1)
    x = jax.random.normal(key, (n, d))
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def sample_target(key: Array, d: int) -> Array:
    """Target weight ``w*`` uniform on the unit sphere of R^d, shape (d,) (not a coordinate
    vector: coordinate targets make coordinate (weight) masks trivially good)."""
    return sample_sphere(key, 1, d)[0]


def sample_pool(key: Array, d: int, size: int) -> Pool:
    """A random pool of ``size`` units: ``w_i ~ N(0, I_d)``, ``alpha_i ~ N(0, 1)``."""
    check_int(d, "d", low=2)
    check_int(size, "size", low=1)
    key_w, key_a = jax.random.split(key)
    return Pool(jax.random.normal(key_w, (size, d)), jax.random.normal(key_a, (size,)))


def pool_prefix(pool: Pool, n: int) -> Pool:
    """The network of width ``n``: the first ``n`` units of ``pool`` ("nested pools": one pool
    answers every width)."""
    check_int(n, "n", low=1, high=pool.w.shape[0])
    return Pool(pool.w[:n], pool.alpha[:n])


def target(w_star: Array) -> Net:
    """The target neuron ``relu(<w*, x>)`` as a one-unit :class:`Net`."""
    w_star = jnp.asarray(w_star)
    check_shape(w_star, (None,), "w_star")
    return Net(w_star[None, :], jnp.ones((1,), w_star.dtype))


def neuron_net(pool: Pool, s: Array) -> Net:
    """Neuron (structured) pruning: keep unit ``i`` with weight ``s[i]`` (0/1, or [0,1] relaxed)."""
    check_shape(s, (pool.alpha.shape[0],), "s")
    return Net(pool.w, pool.alpha * s)


def weight_net(pool: Pool, mask: WeightMask) -> Net:
    """Weight (unstructured) pruning: ``u = mask.hidden * w`` and ``c = mask.output * alpha``."""
    check_shape(mask.hidden, pool.w.shape, "mask.hidden")
    check_shape(mask.output, pool.alpha.shape, "mask.output")
    return Net(pool.w * mask.hidden, pool.alpha * mask.output)


def forward(net: Net, x: Array, output_relu: bool = False) -> Array:
    """Evaluate ``g(x)`` (or ``relu(g(x))``) at points ``x`` of shape (..., d)."""
    h = jax.nn.relu(x @ net.u.T) @ net.c
    return jax.nn.relu(h) if output_relu else h


def residual(w_star: Array, net: Net, x: Array, output_relu: bool = False) -> Array:
    """``f(x) - g(x)`` (or ``f(x) - relu(g(x))``) at points ``x`` of shape (..., d)."""
    return jax.nn.relu(x @ w_star) - forward(net, x, output_relu)
