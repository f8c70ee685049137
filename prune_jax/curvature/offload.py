"""Opt-in: the Lanczos basis in host memory, streamed to the device in row blocks (SPEC 1.2).

``offload_basis=True``, or ``basis=host_basis(layout, m)`` in
:func:`~prune_jax.curvature.lanczos_tridiag`: the basis buffer has memory kind ``pinned_host``,
and each re-orthogonalisation pass at step ``j`` moves only the blocks written so far to the
device, using each for both products (block Gram-Schmidt, two passes). Device memory: one block
plus the vectors in flight (on CPU both memory kinds are the same RAM). XLA does not gather
from host memory, so offloaded probes run one at a time (no ``jax.vmap``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from prune_jax.curvature.layout import Basis, FlatLayout, dot
from prune_jax.tree import Array

__all__ = ["BLOCK_ROWS", "block_rows", "host_basis"]

BLOCK_ROWS = 8  # at most this many rows of the host basis on the device at a time


def block_rows(num_steps: int) -> int:
    """Rows per block for an ``m + 1``-row basis: at most :data:`BLOCK_ROWS`, evened out."""
    blocks = -(-(num_steps + 1) // BLOCK_ROWS)
    return -(-(num_steps + 1) // blocks)


def host_basis(layout: FlatLayout, num_steps: int) -> Basis:
    """A ``Basis`` in host memory for ``num_steps`` steps (``init`` rounds ``rows`` up to
    whole blocks)."""
    block = block_rows(num_steps)

    def to_host(x: Array) -> Array:
        return layout.constrain(jax.device_put(x, jax.memory.Space.Host), "pinned_host")

    def to_device(x: Array) -> Array:
        return layout.constrain(jax.device_put(x, jax.memory.Space.Device))

    def read(basis: Array, b: Array) -> Array:
        return to_device(jax.lax.dynamic_slice_in_dim(basis, b * block, block, 0))

    def store(basis: Array, i: Array, q: Array) -> Array:
        zero = jnp.zeros((), jnp.asarray(i).dtype)
        return jax.lax.dynamic_update_slice(basis, to_host(q[None]), (i, zero))

    def init(rows: int, q0: Array) -> Array:
        rows = -(-rows // block) * block
        return store(to_host(jnp.zeros((rows, q0.shape[-1]), q0.dtype)), jnp.int32(0), q0)

    def orthogonalize(basis: Array, u: Array, j: Array) -> Array:
        def body(b: Array, u: Array) -> Array:
            q = read(basis, b)
            return u - dot(dot(q, u), q)

        for _ in range(2):
            u = jax.lax.fori_loop(0, j // block + 1, body, u)
        return u

    def combine(basis: Array, coeffs: Array) -> Array:
        coeffs = jnp.pad(coeffs, ((0, 0), (0, basis.shape[0] - coeffs.shape[1])))

        def body(b: Array, acc: Array) -> Array:
            c = jax.lax.dynamic_slice_in_dim(coeffs, b * block, block, 1)
            return acc + dot(c.astype(basis.dtype), read(basis, b))

        acc = layout.constrain(jnp.zeros((coeffs.shape[0], basis.shape[1]), basis.dtype))
        return jax.lax.fori_loop(0, basis.shape[0] // block, body, acc)

    def row(basis: Array, i: Array) -> Array:
        return to_device(jax.lax.dynamic_slice_in_dim(basis, i, 1, 0))[0]

    return Basis(init, row, store, orthogonalize, combine)
