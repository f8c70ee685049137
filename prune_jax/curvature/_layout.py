"""Layout of the flat Lanczos vectors and basis across devices and memories (SPEC 1.2; private).

The compiled Lanczos loops work on flat vectors of length ``D`` (``ravel`` of the parameter
pytree). A :class:`FlatLayout` says how those vectors, and the ``(m + 1, D)`` basis, are laid
out:

- no mesh (default): one device, nothing changes (the identity layout);
- a mesh: the flat vectors are zero-padded to ``D_pad``, a multiple of the number of devices,
  and constrained with :func:`jax.lax.with_sharding_constraint` to be split over *every* mesh
  axis, so each device stores ``m * D / n`` numbers of the basis (ZeRO-style; the basis does not
  depend on the data, so the data axis shards it too). Padding entries are zero in the probe,
  in the restart vectors and in every operator output, so they never change an inner product;
- host offload: the stored basis lives in host memory (memory kind ``"pinned_host"``) and is
  streamed to the device in row blocks (see :mod:`prune_jax.curvature.lanczos`).

A layout is a frozen, hashable dataclass: it is a static argument of the compiled cores.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jax.tree_util import Partial

from prune_jax.sharding import mesh_of
from prune_jax.tree import Array, PyTree, constrain, ravel

HOST_MEMORY = "pinned_host"


@dataclasses.dataclass(frozen=True)
class FlatLayout:
    """How flat vectors of true length ``dim`` are padded, sharded and (for the basis) stored.

    Attributes:
      dim: the true dimension ``D``.
      padded: ``D_pad >= D`` (a multiple of the mesh size; ``D`` without a mesh).
      mesh: the mesh the vectors are split over (all axes), or ``None``.
    """

    dim: int
    padded: int
    mesh: Mesh | None = None

    @classmethod
    def of(cls, dim: int, mesh: Mesh | None) -> FlatLayout:
        """Layout for dimension ``dim`` on ``mesh`` (``None`` or one device: identity)."""
        if mesh is None or mesh.size == 1:
            return cls(dim, dim, None)
        n = mesh.size
        return cls(dim, -(-dim // n) * n, mesh)

    def _sharding(self, ndim: int, memory_kind: str | None = None) -> NamedSharding:
        assert self.mesh is not None
        spec = P(*([None] * (ndim - 1)), tuple(self.mesh.axis_names))
        return NamedSharding(self.mesh, spec, memory_kind=memory_kind)

    def constrain(self, x: Array, memory_kind: str | None = None) -> Array:
        """``x`` (last axis of length ``padded``) constrained to be split over the mesh."""
        if self.mesh is None:
            return x
        return constrain(x, self._sharding(x.ndim, memory_kind))

    def pad(self, x: Array) -> Array:
        """``(dim,)`` -> ``(padded,)`` with zeros, constrained to the layout."""
        if self.padded != self.dim:
            x = jnp.pad(x, (0, self.padded - self.dim))
        return self.constrain(x)

    def unpad(self, x: Array) -> Array:
        """Last axis ``(padded,)`` -> ``(dim,)``."""
        return x if self.padded == self.dim else x[..., :self.dim]

    def shift(self, x: Array, j: Array) -> Array:
        """Cyclic shift of a padded vector by ``j`` (the Lanczos restart vectors).

        One device: ``jnp.roll(x, j)``. On a mesh: each device's block of ``D_pad / n``
        entries is rolled in place (no communication; a global roll would gather the whole
        vector on every device), and the padding is zeroed again. The shifts of a Gaussian
        vector stay linearly independent with probability 1 for ``j < D_pad / n``, but they
        differ from the one-device restart vectors (which only matter after a breakdown).
        """
        if self.mesh is None:
            return jnp.roll(x, j)
        n = self.mesh.size
        blocks = constrain(
            x.reshape(n, self.padded // n),
            NamedSharding(self.mesh, P(tuple(self.mesh.axis_names), None)))
        out = self.constrain(jnp.roll(blocks, j, axis=1).reshape(self.padded))
        if self.padded != self.dim:
            out = jnp.where(jnp.arange(self.padded) < self.dim, out, jnp.zeros((), out.dtype))
        return out


def layout_operator(matvec: Partial, unravel: Any, dtype: Any,
                    layout: FlatLayout) -> Any:
    """Flat, padded view ``x -> pad(ravel(matvec(unravel(x[:D]))))`` of a pytree operator."""
    def op(x: Array) -> Array:
        y = ravel(matvec(unravel(layout.unpad(x))))[0].astype(dtype)
        return layout.pad(y)

    return op


def resolve_mesh(mesh: Any, matvec: Any, like: PyTree) -> Mesh | None:
    """The mesh to lay the Lanczos vectors out on (``mesh`` argument of the public API).

    ``mesh`` given: it (a :class:`jax.sharding.Mesh`; ``TypeError`` naming ``mesh`` otherwise).
    ``None``: the mesh of a sharded operator (:func:`~prune_jax.curvature.sharded_hvp_operator`),
    else the mesh of ``like``'s leaves when they are all ``NamedSharding`` arrays on one
    multi-device mesh, else no mesh (one device).
    """
    if mesh is not None:
        if not isinstance(mesh, Mesh):
            raise TypeError(f"mesh must be a jax.sharding.Mesh or None, "
                            f"got {type(mesh).__name__}")
        return mesh if mesh.size > 1 else None
    func = getattr(matvec, "func", None)
    op_mesh = getattr(func, "mesh", None)
    if isinstance(op_mesh, Mesh):
        return op_mesh if op_mesh.size > 1 else None
    return mesh_of(like)
