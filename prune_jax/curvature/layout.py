"""Flat Lanczos vectors on one device, or split over every device of a mesh (SPEC 1.2).

On a mesh the flat vectors (``ravel`` of the parameters) are zero-padded to ``D_pad``, a
multiple of the device count, and split over every mesh axis, so each device stores
``(m + 1) D / n`` entries of the basis. The padding is zero in every probe, restart vector and
operator output, so it never changes an inner product. A ``Basis`` says where the basis lives:
``device_basis`` (here) or ``host_basis`` (:mod:`prune_jax.curvature.offload`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from prune_jax.tree import Array, PyTree, constrain, ravel

__all__ = ["Basis", "FlatLayout", "device_basis", "dot", "resolve_mesh"]

_HIGHEST = jax.lax.Precision.HIGHEST  # full float32 in basis products (no TF32/bf16 passes)


def dot(a: Array, b: Array) -> Array:
    """``a @ b`` at full precision (a float32 basis stays orthonormal on accelerators)."""
    return jnp.matmul(a, b, precision=_HIGHEST)


@dataclasses.dataclass(frozen=True)
class FlatLayout:
    """Flat vectors of true length ``dim``, padded to ``padded`` and split over ``mesh``."""

    dim: int
    padded: int
    mesh: Mesh | None = None

    @classmethod
    def of(cls, dim: int, mesh: Mesh | None = None) -> FlatLayout:
        """The layout of dimension ``dim`` on ``mesh`` (``None``: one device, no padding)."""
        if mesh is None or mesh.size == 1:
            return cls(dim, dim)
        return cls(dim, -(-dim // mesh.size) * mesh.size, mesh)

    def constrain(self, x: Array, memory_kind: str | None = None) -> Array:
        """``x`` (last axis of length ``padded``) split over every device of the mesh."""
        if self.mesh is None:
            return x
        spec = P(*([None] * (x.ndim - 1)), tuple(self.mesh.axis_names))
        return constrain(x, NamedSharding(self.mesh, spec, memory_kind=memory_kind))

    def pad(self, x: Array) -> Array:
        """``(..., dim)`` -> ``(..., padded)`` with zeros, constrained."""
        width = [(0, 0)] * (x.ndim - 1) + [(0, self.padded - self.dim)]
        return self.constrain(jnp.pad(x, width) if self.padded != self.dim else x)

    def unpad(self, x: Array) -> Array:
        """``(..., padded)`` -> ``(..., dim)``."""
        return x[..., :self.dim]

    def operator(self, matvec: Callable[[PyTree], PyTree], unravel: Callable[[Array], PyTree],
                 dtype: Any) -> Callable[[Array], Array]:
        """Flat, padded view ``x -> pad(ravel(matvec(unravel(x[:dim]))))`` (inside ``jit``)."""
        return lambda x: self.pad(ravel(matvec(unravel(self.unpad(x))))[0].astype(dtype))


def resolve_mesh(mesh: Any, *trees: PyTree) -> Mesh | None:
    """``mesh`` (checked), else the mesh of the first multi-device ``NamedSharding`` leaf of
    ``trees`` (the operator's or ``like``'s arrays), else ``None`` (one device)."""
    if mesh is not None:
        if not isinstance(mesh, Mesh):
            raise TypeError(f"mesh must be a jax.sharding.Mesh or None, got "
                            f"{type(mesh).__name__}")
        return mesh if mesh.size > 1 else None
    for x in jax.tree.leaves(trees):
        sharding = getattr(x, "sharding", None) if isinstance(x, jax.Array) else None
        if isinstance(sharding, NamedSharding) and sharding.mesh.size > 1:
            return sharding.mesh
    return None


class Basis(NamedTuple):
    """How the ``(rows, D_pad)`` Lanczos basis is stored (functions used inside ``jit``).

    ``init(rows, q0)`` (``q0`` in row 0, zeros elsewhere), ``row(basis, i)``,
    ``store(basis, i, q)``, ``orthogonalize(basis, u, j)``: ``u - Q (Q^T u)`` over rows
    ``0..j``, twice ("twice is enough"; rows past ``j`` are zero, so the device basis sweeps
    them all), and ``combine(basis, coeffs)``: ``coeffs @ basis[:m]`` (Ritz vectors).
    """

    init: Callable[[int, Array], Array]
    row: Callable[[Array, Array], Array]
    store: Callable[[Array, Array, Array], Array]
    orthogonalize: Callable[[Array, Array, Array], Array]
    combine: Callable[[Array, Array], Array]


def device_basis(layout: FlatLayout) -> Basis:
    """The basis as one device array, split over the mesh of ``layout``."""
    def orthogonalize(basis: Array, u: Array, j: Array) -> Array:
        for _ in range(2):
            u = u - dot(dot(basis, u), basis)
        return u

    return Basis(
        init=lambda rows, q0: layout.constrain(
            jnp.zeros((rows, q0.shape[-1]), q0.dtype).at[0].set(q0)),
        row=lambda basis, i: basis[i],
        store=lambda basis, i, q: layout.constrain(basis.at[i].set(q)),
        orthogonalize=orthogonalize,
        combine=lambda basis, coeffs: dot(coeffs, basis[:coeffs.shape[-1]]))
