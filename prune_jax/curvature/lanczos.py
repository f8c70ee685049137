"""Compiled Lanczos tridiagonalisation and the float64 tridiagonal eigen-decomposition (SPEC 1.2).

The loop is one ``lax.fori_loop`` (or ``lax.while_loop`` without a stored basis) over a
preallocated basis, with no host synchronisation per step; pytrees are flattened with
``ravel`` inside. The tridiagonal matrix ``T_m`` is diagonalised on the host with
``numpy.linalg.eigh`` in float64 (``m`` is at most a few hundred). Products with the basis
use ``Precision.HIGHEST``, so that a float32 basis stays orthonormal to ~1e-6 also on
accelerators whose default float32 matmul passes (TF32, bf16) are less precise.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.tree_util import Partial

from prune_jax.curvature._checks import (
    Matvec,
    as_operator,
    check_finite_result,
    check_int,
    check_key,
    check_operator_output,
    check_tree,
    is_concrete,
)
from prune_jax.curvature._layout import HOST_MEMORY, FlatLayout, layout_operator, resolve_mesh
from prune_jax.tree import Array, PyTree, on_auto_mesh, ravel, tree_size

__all__ = ["LanczosResult", "RitzDecomposition", "default_tol", "lanczos", "tridiagonal_eigh"]



class LanczosResult(NamedTuple):
    """Output of :func:`lanczos` (SPEC 1.2): ``T_m = tridiag(betas[:-1], alphas, betas[:-1])``.

    Attributes:
        alphas: ``(m,)`` diagonal of ``T_m``.
        betas: ``(m,)``; ``betas[j]`` couples ``q_{j+1}`` and ``q_{j+2}``, and ``betas[m-1]``
            is the ``beta_m`` of the Ritz residuals ``|beta_m s_{m,k}|``. A zero marks a
            breakdown (an exactly invariant Krylov subspace).
        basis: ``None``, or the Lanczos vectors ``q_1..q_m`` as a pytree shaped like ``v0``
            with a leading axis of size ``m`` (``return_basis=True``).
        length: number of valid steps (``m`` except when the no-basis mode stopped at a
            breakdown; entries after it are zero and carry zero quadrature weight).
    """

    alphas: Array
    betas: Array
    basis: PyTree | None
    length: Array


class RitzDecomposition(NamedTuple):
    """Eigen-decomposition of ``T_m`` in float64 (SPEC 1.2), ascending Ritz values.

    Attributes:
        values: ``(..., m)`` Ritz values ``theta_k``, ascending.
        weights: ``(..., m)`` quadrature weights ``tau_k = s_{1,k}^2`` (each row sums to 1).
        residuals: ``(..., m)`` residual bounds ``|beta_m s_{m,k}|`` of the Ritz pairs.
        vectors: ``(..., m, m)`` eigenvectors ``s_k`` of ``T_m`` (columns).
    """

    values: np.ndarray
    weights: np.ndarray
    residuals: np.ndarray
    vectors: np.ndarray


# --------------------------------------------------------------------------- compiled core

_HIGHEST = jax.lax.Precision.HIGHEST  # full float32 in the basis products (no TF32/bf16 passes)


def _dot(a: Array, b: Array) -> Array:
    return jnp.matmul(a, b, precision=_HIGHEST)


def _block_pass(read_block: Any, num_blocks: Array, u: Array) -> Array:
    """One block Gram-Schmidt pass ``u -= Q_b^T (Q_b u)`` over row blocks ``0..num_blocks-1``.

    A ``lax.fori_loop`` with a traced trip count, so only the blocks written so far are read;
    a block is small enough to stay in cache for its two products.
    """
    def body(b: Array, u: Array) -> Array:
        q = read_block(b)
        return u - _dot(_dot(q, u), q)

    return jax.lax.fori_loop(0, num_blocks, body, u)


def _orthogonalize_blocks(read_block: Any, block: int, u: Array, last: Array) -> Array:
    """``u`` orthogonalised against basis rows ``0..last``, two passes ("twice is enough")."""
    num_blocks = last // block + 1
    return _block_pass(read_block, num_blocks, _block_pass(read_block, num_blocks, u))


def _orthogonalize_full(basis: Array, u: Array) -> Array:
    """``u - Q (Q^T u)`` twice over the whole preallocated basis (unwritten rows are zero)."""
    u = u - _dot(_dot(basis, u), basis)
    return u - _dot(_dot(basis, u), basis)


def _safe_normalize(u: Array, norm: Array) -> Array:
    return u / jnp.where(norm > 0, norm, 1).astype(u.dtype)


DEVICE_BLOCK_ROWS = 16  # rows of a device basis read per block of a re-orthogonalisation pass
BLOCKED_MIN_ENTRIES = 2**20  # smaller device bases are swept whole (see DeviceBasis.for_steps)
OFFLOAD_BLOCK_ROWS = 8  # rows of a host-offloaded basis streamed to the device at a time


def even_block_rows(num_steps: int, max_rows: int) -> int:
    """Rows per block for ``m + 1`` basis rows: at most ``max_rows``, evened out so that the
    padded basis exceeds ``m + 1`` rows by less than the number of blocks."""
    num_blocks = -(-(num_steps + 1) // max_rows)
    return -(-(num_steps + 1) // num_blocks)


def padded_rows(num_steps: int, block: int) -> int:
    """Rows of a basis for ``num_steps`` steps stored in whole blocks of ``block`` rows."""
    return -(-(num_steps + 1) // block) * block


def offload_block_rows(num_steps: int) -> int:
    """Rows per streamed block of an offloaded basis (:func:`even_block_rows` of
    ``OFFLOAD_BLOCK_ROWS``)."""
    return even_block_rows(num_steps, OFFLOAD_BLOCK_ROWS)


@dataclasses.dataclass(frozen=True)
class DeviceBasis:
    """The Lanczos basis in device memory (split over the mesh of ``layout``), in row blocks.

    ``ceil((m + 1) / block)`` blocks of ``block`` rows. With ``blocked=True``,
    re-orthogonalisation at step ``j`` reads only the ``j // block + 1`` blocks written so far
    (block Gram-Schmidt, two passes), so a run of ``m`` steps reads about ``m^2 D`` basis
    entries instead of ``2 m^2 D`` for a sweep over the whole preallocated basis at every
    step; ``blocked=False`` is that whole sweep (classical Gram-Schmidt, twice; unwritten rows
    are zero), for small bases.
    """

    layout: FlatLayout
    block: int = DEVICE_BLOCK_ROWS
    blocked: bool = True

    @classmethod
    def for_steps(cls, layout: FlatLayout, num_steps: int) -> DeviceBasis:
        """The storage for ``num_steps`` steps (:func:`even_block_rows` rows a block).

        A basis of fewer than ``BLOCKED_MIN_ENTRIES`` entries (per device) is swept whole at
        every step instead (``blocked=False``): it stays in cache, and the block loop's
        per-iteration overhead would cost more than the unwritten rows (measured on CPU).
        """
        block = even_block_rows(num_steps, DEVICE_BLOCK_ROWS)
        rows = padded_rows(num_steps, block)
        devices = 1 if layout.mesh is None else layout.mesh.size
        return cls(layout, block, rows * (layout.padded // devices) >= BLOCKED_MIN_ENTRIES)

    def init(self, rows: int, q0: Array) -> Array:
        basis = jnp.zeros((rows, q0.shape[0]), q0.dtype).at[0].set(q0)
        return self.layout.constrain(basis)

    def row(self, basis: Array, i: Array) -> Array:
        return basis[i]

    def store(self, basis: Array, i: Array, q: Array) -> Array:
        return self.layout.constrain(basis.at[i].set(q))

    def block_rows(self, basis: Array, b: Array) -> Array:
        """Rows ``[b * block, (b + 1) * block)`` of the basis."""
        return jax.lax.dynamic_slice_in_dim(basis, b * self.block, self.block, 0)

    def orthogonalize(self, basis: Array, u: Array, last: Array) -> Array:
        """``u`` orthogonalised against rows ``0..last``, twice."""
        if not self.blocked:
            return _orthogonalize_full(basis, u)
        return _orthogonalize_blocks(lambda b: self.block_rows(basis, b), self.block, u, last)

    def rows(self, num_steps: int) -> int:
        return padded_rows(num_steps, self.block)


@dataclasses.dataclass(frozen=True)
class HostBasis:
    """The Lanczos basis in host memory (memory kind ``pinned_host``), streamed in row blocks.

    Every new vector is written to the host buffer (``dynamic_update_slice`` of a
    host-memory array); re-orthogonalisation reads only the ``ceil((j + 1) / block)`` blocks
    written so far, each moved to the device (``jax.device_put(..., Space.Device)``) and used
    for both products of a block Gram-Schmidt pass (two passes, as on the device). Device
    memory: ``block`` rows plus a few vectors. XLA's host-offload passes place the buffer in
    host memory on GPU/TPU; on CPU the memory kinds are the same RAM (correct, no saving).
    Not usable under ``jax.vmap`` (a batched slice of a host buffer is a gather, which XLA
    does not run on host memory): probes run one after the other.
    """

    layout: FlatLayout
    block: int = OFFLOAD_BLOCK_ROWS

    @classmethod
    def for_steps(cls, layout: FlatLayout, num_steps: int) -> HostBasis:
        """The storage for ``num_steps`` steps, with :func:`offload_block_rows` rows a block."""
        return cls(layout, offload_block_rows(num_steps))

    def _to_host(self, x: Array) -> Array:
        x = jax.device_put(x, jax.memory.Space.Host)
        return self.layout.constrain(x, memory_kind=HOST_MEMORY)

    def _to_device(self, x: Array) -> Array:
        return self.layout.constrain(jax.device_put(x, jax.memory.Space.Device))

    def rows(self, num_steps: int) -> int:
        return padded_rows(num_steps, self.block)

    def init(self, rows: int, q0: Array) -> Array:
        basis = self._to_host(jnp.zeros((rows, q0.shape[0]), q0.dtype))
        return self.store(basis, jnp.zeros((), jnp.int32), q0)

    def row(self, basis: Array, i: Array) -> Array:
        return self._to_device(jax.lax.dynamic_slice_in_dim(basis, i, 1, 0))[0]

    def store(self, basis: Array, i: Array, q: Array) -> Array:
        zero = jnp.zeros((), jnp.asarray(i).dtype)
        return jax.lax.dynamic_update_slice(basis, self._to_host(q[None]), (i, zero))

    def block_rows(self, basis: Array, b: Array) -> Array:
        """Rows ``[b * block, (b + 1) * block)`` of the host basis, on the device."""
        start = b * self.block
        return self._to_device(jax.lax.dynamic_slice_in_dim(basis, start, self.block, 0))

    def orthogonalize(self, basis: Array, u: Array, last: Array) -> Array:
        """``u`` orthogonalised against rows ``0..last``, twice."""
        return _orthogonalize_blocks(lambda b: self.block_rows(basis, b), self.block, u, last)


Basis = DeviceBasis | HostBasis


def lanczos_reorth(op: Any, x0: Array, key: Array, num_steps: int, tol: float, *,
                   layout: FlatLayout | None = None,
                   storage: Basis | None = None) -> tuple[Array, Array, Array]:
    """Flat Lanczos with full re-orthogonalisation; returns ``(alphas, betas, Q)``.

    ``Q`` is the stored basis: ``(m, D_pad)`` on the device, or (``storage=HostBasis``) the
    whole host buffer (``(rows, D_pad)``, rows past ``m`` zero). ``x0`` and ``op`` live in the
    padded space of ``layout`` (default: one device, ``D_pad = D``); see ``_layout``.

    On breakdown (``beta_j <= tol * ||A||_est``) ``beta_j`` is set to 0 and the process goes
    on from a fresh random vector orthogonal to ``Q_j``, so ``Q_m`` stays orthonormal and
    ``Q_m^T A Q_m = T_m`` remains a valid (block-diagonal) Lanczos decomposition. The fresh
    vector at step ``j`` is the cyclic shift by ``j`` of one Gaussian vector drawn from ``key``
    before the loop (the shifts of a Gaussian vector are linearly independent with probability
    1), so no random numbers are generated inside the loop. On a mesh each device shifts its
    own block (``FlatLayout.shift``: no communication), so restart vectors, and results after
    a breakdown, depend on the number of devices.

    The restart is a ``lax.while_loop`` that runs at most once, not a ``lax.cond``: under
    ``jax.vmap`` (batched probes) a ``cond`` with a batched predicate becomes a ``select``
    that computes the restart (a second double re-orthogonalisation) at every step of every
    probe, while a batched ``while_loop`` runs its body only when *some* probe broke down.
    """
    layout = FlatLayout.of(x0.shape[0], None) if layout is None else layout
    storage = DeviceBasis.for_steps(layout, num_steps) if storage is None else storage
    dtype = x0.dtype
    x0 = layout.constrain(x0)
    basis = storage.init(storage.rows(num_steps), x0 / jnp.linalg.norm(x0))
    zeros = jnp.zeros((num_steps,), dtype)
    seed = layout.pad(jax.random.normal(key, (layout.dim,), dtype))  # restarts: its shifts

    def step(j: Array, carry: tuple[Array, ...]) -> tuple[Array, ...]:
        basis, alphas, betas, anorm = carry
        q = storage.row(basis, j)
        beta_prev = jnp.where(j > 0, betas[jnp.maximum(j - 1, 0)], 0).astype(dtype)
        w = layout.constrain(op(q))
        anorm = jnp.maximum(anorm, jnp.linalg.norm(w))
        w = w - beta_prev * storage.row(basis, jnp.maximum(j - 1, 0))
        alpha = _dot(q, w)
        w = storage.orthogonalize(basis, w - alpha * q, j)
        beta = jnp.linalg.norm(w)
        broke = beta <= tol * anorm

        def restart(state: tuple[Array, Array]) -> tuple[Array, Array]:
            r = storage.orthogonalize(basis, layout.shift(seed, j), j)
            return _safe_normalize(r, jnp.linalg.norm(r)), jnp.zeros((), bool)

        q_next, _ = jax.lax.while_loop(lambda state: state[1], restart,
                                       (_safe_normalize(w, beta), broke))
        beta = jnp.where(broke, 0, beta).astype(dtype)
        return (storage.store(basis, j + 1, q_next), alphas.at[j].set(alpha),
                betas.at[j].set(beta), anorm)

    init = (basis, zeros, zeros, jnp.zeros((), dtype))
    basis, alphas, betas, _ = jax.lax.fori_loop(0, num_steps, step, init)
    if isinstance(storage, HostBasis):
        return alphas, betas, basis
    return alphas, betas, basis[:num_steps]


def lanczos_plain(op: Any, x0: Array, num_steps: int, tol: float, *,
                  layout: FlatLayout | None = None) -> tuple[Array, Array, Array]:
    """Flat three-term Lanczos without a stored basis; stops at a breakdown.

    Returns ``(alphas, betas, length)``; entries after ``length`` are zero, so ``T_m`` is
    ``blockdiag(T_length, 0)`` and the padding carries zero quadrature weight. The three
    vectors in flight are laid out by ``layout`` (default: one device).
    """
    layout = FlatLayout.of(x0.shape[0], None) if layout is None else layout
    dtype = x0.dtype
    zeros = jnp.zeros((num_steps,), dtype)
    x0 = layout.constrain(x0)
    q0 = x0 / jnp.linalg.norm(x0)

    def cond(carry: tuple[Array, ...]) -> Array:
        j, done = carry[0], carry[-1]
        return (j < num_steps) & ~done

    def step(carry: tuple[Array, ...]) -> tuple[Array, ...]:
        j, q_prev, q, alphas, betas, anorm, _ = carry
        beta_prev = jnp.where(j > 0, betas[jnp.maximum(j - 1, 0)], 0).astype(dtype)
        w = layout.constrain(op(q))
        anorm = jnp.maximum(anorm, jnp.linalg.norm(w))
        w = w - beta_prev * q_prev
        alpha = _dot(q, w)
        w = w - alpha * q
        beta = jnp.linalg.norm(w)
        broke = beta <= tol * anorm
        beta = jnp.where(broke, 0, beta).astype(dtype)
        return (j + 1, q, _safe_normalize(w, beta), alphas.at[j].set(alpha),
                betas.at[j].set(beta), anorm, broke)

    init = (jnp.zeros((), jnp.int32), jnp.zeros_like(q0), q0, zeros, zeros,
            jnp.zeros((), dtype), jnp.zeros((), bool))
    length, _, _, alphas, betas, _, _ = jax.lax.while_loop(cond, step, init)
    return alphas, betas, length


def default_tol(dtype: Any, reorthogonalize: bool) -> float:
    """Default relative breakdown tolerance (times the running estimate of ``||A||``; SPEC 1.2).

    ``32 eps`` with re-orthogonalisation (a small ``beta`` above it is harmless: the next
    vector is re-orthogonalised anyway); ``sqrt(eps)`` without, where a ``beta`` at rounding
    level would otherwise turn the recurrence into noise (it stops instead, with an
    eigenvalue perturbation of at most ``sqrt(eps) ||A||``).

    Example:
        >>> import jax.numpy as jnp
        >>> default_tol(jnp.float32, True) == 32 * float(jnp.finfo(jnp.float32).eps)
        True
    """
    eps = float(jnp.finfo(dtype).eps)
    return 32.0 * eps if reorthogonalize else float(np.sqrt(eps))


def resolve_tol(tol: float | None, dtype: Any, reorthogonalize: bool) -> float:
    """``tol`` as a float in ``[0, 1)``, or :func:`default_tol` when ``None`` (host check)."""
    if tol is None:
        return default_tol(dtype, reorthogonalize)
    tol = float(tol)
    if not 0.0 <= tol < 1.0:
        raise ValueError(f"tol must be in [0, 1) (relative to ||A||), got {tol}")
    return tol


@jax.jit(static_argnames=("num_steps", "reorthogonalize", "return_basis", "tol", "layout",
                          "offload"))
def _lanczos_jit(matvec: Partial, v0: PyTree, key: Array, *, num_steps: int,
                 reorthogonalize: bool, return_basis: bool, tol: float,
                 layout: FlatLayout | None = None, offload: bool = False) -> LanczosResult:
    x0, unravel = ravel(v0)
    layout = FlatLayout.of(x0.shape[0], None) if layout is None else layout
    op = layout_operator(matvec, unravel, x0.dtype, layout)
    x0 = layout.pad(x0)
    if reorthogonalize:
        storage = (HostBasis if offload else DeviceBasis).for_steps(layout, num_steps)
        alphas, betas, basis = lanczos_reorth(op, x0, key, num_steps, tol, layout=layout,
                                              storage=storage)
        length = jnp.asarray(num_steps, jnp.int32)
        tree_basis = jax.vmap(unravel)(layout.unpad(basis)) if return_basis else None
        return LanczosResult(alphas, betas, tree_basis, length)
    alphas, betas, length = lanczos_plain(op, x0, num_steps, tol, layout=layout)
    return LanczosResult(alphas, betas, None, length)


# --------------------------------------------------------------------------- public API

@on_auto_mesh
def lanczos(matvec: Matvec, v0: PyTree, num_steps: int, *, reorthogonalize: bool = True,
            return_basis: bool = False, key: Array | None = None,
            tol: float | None = None, mesh: Mesh | None = None,
            offload_basis: bool = False) -> LanczosResult:
    """``num_steps`` Lanczos steps of the symmetric operator ``matvec`` from ``v0`` (SPEC 1.2).

    ``q_1 = v0/||v0||``; per step ``u = A q_j - beta_{j-1} q_{j-1}``, ``alpha_j = <q_j, u>``,
    ``u -= alpha_j q_j``, then (``reorthogonalize=True``) ``u -= Q_j (Q_j^T u)`` twice,
    ``beta_j = ||u||``, ``q_{j+1} = u / beta_j``. One compiled loop over a preallocated
    ``(m + 1, D)`` basis; ``matvec`` sees pytrees shaped like ``v0``.

    Breakdown (``beta_j <= tol * ||A||``, ``||A||`` the running maximum of ``||A q_i||``;
    default :func:`default_tol`): the Krylov subspace is exactly invariant, ``beta_j`` is stored
    as 0 (never divided by). With re-orthogonalisation the run continues from a fresh random
    vector orthogonal to ``Q_j`` (drawn from ``key``; default ``jax.random.key(0)``), so the
    result is still a valid Lanczos decomposition ``Q^T A Q = T``. Without it
    (``reorthogonalize=False``: three-term recurrence only, no stored basis, memory ``O(D)``
    for very large ``D``) the run stops; ``length`` says where. Without re-orthogonalisation
    ``return_basis`` is not available.

    Memory modes of the stored basis (``docs/scaling.md``): on the device (default); in host
    memory (``offload_basis=True``: memory kind ``pinned_host``, streamed to the device in
    blocks of ``OFFLOAD_BLOCK_ROWS`` rows per re-orthogonalisation pass; not under
    ``jax.vmap``, and not with ``return_basis``); none (``reorthogonalize=False``).

    Several devices: ``mesh`` (default: the mesh of a
    :func:`~prune_jax.curvature.sharded_hvp_operator`, else that of ``v0``'s
    ``NamedSharding`` leaves, else none) splits the flat Lanczos vectors and the basis over
    every mesh axis (``D`` zero-padded to a multiple of the device count), so each device holds
    ``(m + 1) D / n`` basis entries. The results equal the one-device results up to rounding.

    ``matvec`` is a jit *argument*: pass a :class:`~jax.tree_util.Partial` (e.g. from
    :func:`hvp_operator`) so its arrays are traced, not constants. Works under ``jax.vmap``
    over ``v0`` (value checks are skipped under tracing). Non-finite ``alphas``/``betas``
    raise ``ValueError`` after the loop.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from jax.tree_util import Partial
        >>> op = Partial(lambda v: jnp.arange(1.0, 6.0) * v)       # diag(1, ..., 5)
        >>> res = lanczos(op, jnp.ones(5), 5)
        >>> res.alphas.shape, res.betas.shape
        ((5,), (5,))
        >>> np.round(tridiagonal_eigh(res.alphas, res.betas).values, 4).tolist()
        [1.0, 2.0, 3.0, 4.0, 5.0]
    """
    op = as_operator(matvec)
    check_tree(v0, "v0")
    dim = tree_size(v0)
    num_steps = check_int(num_steps, "num_steps", low=1, high=dim)
    for flag, name in ((reorthogonalize, "reorthogonalize"), (return_basis, "return_basis"),
                       (offload_basis, "offload_basis")):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    if return_basis and not reorthogonalize:
        raise ValueError("return_basis=True needs reorthogonalize=True (the no-basis mode "
                         "keeps only three vectors)")
    if offload_basis and not reorthogonalize:
        raise ValueError("offload_basis=True needs reorthogonalize=True (the no-basis mode "
                         "stores no basis)")
    if offload_basis and return_basis:
        raise ValueError("return_basis=True needs the basis on the device (offload_basis="
                         "False); top_eigenvalues(..., offload_basis=True) forms Ritz vectors "
                         "from an offloaded basis block by block")
    key = jax.random.key(0) if key is None else check_key(key)
    dtype = jnp.result_type(*jax.tree.leaves(v0))
    tol = resolve_tol(tol, dtype, reorthogonalize)
    check_operator_output(op, v0, like_name="v0")
    if is_concrete(v0) and not float(jnp.linalg.norm(ravel(v0)[0])) > 0:
        raise ValueError("v0 must be a non-zero vector")
    layout = FlatLayout.of(dim, resolve_mesh(mesh, op, v0))
    res = _lanczos_jit(op, v0, key, num_steps=num_steps, reorthogonalize=reorthogonalize,
                       return_basis=return_basis, tol=tol, layout=layout,
                       offload=offload_basis)
    check_finite_result((res.alphas, res.betas), "matvec (Lanczos)")
    return res


def tridiagonal_eigh(alphas: Any, betas: Any) -> RitzDecomposition:
    """Eigen-decompose ``T_m = tridiag(alphas, betas[:-1])`` with ``eigh`` in float64 (SPEC 1.2).

    Works on batches (leading axes of ``alphas``/``betas``, e.g. one row per probe). Returns
    ascending Ritz values ``theta_k``, weights ``tau_k = s_{1,k}^2`` (summing to 1 per row),
    residuals ``|beta_m s_{m,k}|`` and the eigenvectors. Zero padding past a stopped run's
    ``length`` (as :func:`lanczos` leaves it) gives zero-weight nodes at 0 and leaves the
    other Ritz values unchanged.

    Example:
        >>> tridiagonal_eigh(np.array([2.0, 2.0]), np.array([1.0, 0.0])).values
        array([1., 3.])
    """
    a = np.asarray(alphas, dtype=np.float64)
    b = np.asarray(betas, dtype=np.float64)
    if a.ndim < 1 or a.shape != b.shape:
        raise ValueError(f"alphas and betas must have the same shape (..., m); got {a.shape} "
                         f"and {b.shape}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("alphas/betas contain NaN or Inf (the matvec was not finite)")
    m = a.shape[-1]
    t = np.zeros((*a.shape, m))
    i = np.arange(m)
    t[..., i, i] = a
    t[..., i[:-1], i[1:]] = b[..., :-1]
    t[..., i[1:], i[:-1]] = b[..., :-1]
    values, vectors = np.linalg.eigh(t)
    weights = vectors[..., 0, :] ** 2
    residuals = np.abs(b[..., -1:] * vectors[..., -1, :])
    return RitzDecomposition(values, weights, residuals, vectors)
