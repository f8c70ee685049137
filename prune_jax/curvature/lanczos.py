"""Compiled Lanczos tridiagonalisation and the float64 tridiagonal eigen-decomposition (SPEC 1.2).

The loop is one ``lax.fori_loop`` (or ``lax.while_loop`` without a stored basis) over a
preallocated basis, with no host synchronisation per step; pytrees are flattened with
``ravel`` inside. The tridiagonal matrix ``T_m`` is diagonalised on the host with
``numpy.linalg.eigh`` in float64 (``m`` is at most a few hundred). Products with the basis
use ``Precision.HIGHEST``, so that a float32 basis stays orthonormal to ~1e-6 also on
accelerators whose default float32 matmul passes (TF32, bf16) are less precise.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

from prune_jax.curvature._checks import (
    Matvec,
    as_operator,
    check_finite_result,
    check_int,
    check_key,
    check_operator_output,
    check_tree,
    flat_operator,
    is_concrete,
)
from prune_jax.tree import Array, PyTree, ravel, tree_size

__all__ = ["LanczosResult", "RitzDecomposition", "default_tol", "lanczos", "tridiagonal_eigh"]



class LanczosResult(NamedTuple):
    """Output of :func:`lanczos`: ``T_m = tridiag(betas[:-1], alphas, betas[:-1])``.

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


def _orthogonalize(basis: Array, u: Array) -> Array:
    """``u - Q (Q^T u)`` applied twice ("twice is enough"); unused rows of ``Q`` are zero."""
    u = u - _dot(_dot(basis, u), basis)
    return u - _dot(_dot(basis, u), basis)


def _safe_normalize(u: Array, norm: Array) -> Array:
    return u / jnp.where(norm > 0, norm, 1).astype(u.dtype)


def lanczos_reorth(op: Any, x0: Array, key: Array, num_steps: int,
                   tol: float) -> tuple[Array, Array, Array]:
    """Flat Lanczos with full re-orthogonalisation; returns ``(alphas, betas, Q (m, D))``.

    On breakdown (``beta_j <= tol * ||A||_est``) ``beta_j`` is set to 0 and the process goes
    on from a fresh random vector orthogonal to ``Q_j``, so ``Q_m`` stays orthonormal and
    ``Q_m^T A Q_m = T_m`` remains a valid (block-diagonal) Lanczos decomposition. The fresh
    vector at step ``j`` is the cyclic shift by ``j`` of one Gaussian vector drawn from ``key``
    before the loop (the shifts of a Gaussian vector are linearly independent with
    probability 1), so no random numbers are generated inside the loop.
    """
    dim, dtype = x0.shape[0], x0.dtype
    basis = jnp.zeros((num_steps + 1, dim), dtype).at[0].set(x0 / jnp.linalg.norm(x0))
    zeros = jnp.zeros((num_steps,), dtype)
    seed = jax.random.normal(key, (dim,), dtype)  # restart vectors: its cyclic shifts

    def step(j: Array, carry: tuple[Array, ...]) -> tuple[Array, ...]:
        basis, alphas, betas, anorm = carry
        q = basis[j]
        beta_prev = jnp.where(j > 0, betas[jnp.maximum(j - 1, 0)], 0).astype(dtype)
        w = op(q)
        anorm = jnp.maximum(anorm, jnp.linalg.norm(w))
        w = w - beta_prev * basis[jnp.maximum(j - 1, 0)]
        alpha = _dot(q, w)
        w = _orthogonalize(basis, w - alpha * q)
        beta = jnp.linalg.norm(w)
        broke = beta <= tol * anorm

        def restart() -> Array:
            r = _orthogonalize(basis, jnp.roll(seed, j))
            return _safe_normalize(r, jnp.linalg.norm(r))

        q_next = jax.lax.cond(broke, restart, lambda: _safe_normalize(w, beta))
        beta = jnp.where(broke, 0, beta).astype(dtype)
        return (basis.at[j + 1].set(q_next), alphas.at[j].set(alpha), betas.at[j].set(beta),
                anorm)

    init = (basis, zeros, zeros, jnp.zeros((), dtype))
    basis, alphas, betas, _ = jax.lax.fori_loop(0, num_steps, step, init)
    return alphas, betas, basis[:num_steps]


def lanczos_plain(op: Any, x0: Array, num_steps: int,
                  tol: float) -> tuple[Array, Array, Array]:
    """Flat three-term Lanczos without a stored basis; stops at a breakdown.

    Returns ``(alphas, betas, length)``; entries after ``length`` are zero, so ``T_m`` is
    ``blockdiag(T_length, 0)`` and the padding carries zero quadrature weight.
    """
    dtype = x0.dtype
    zeros = jnp.zeros((num_steps,), dtype)
    q0 = x0 / jnp.linalg.norm(x0)

    def cond(carry: tuple[Array, ...]) -> Array:
        j, done = carry[0], carry[-1]
        return (j < num_steps) & ~done

    def step(carry: tuple[Array, ...]) -> tuple[Array, ...]:
        j, q_prev, q, alphas, betas, anorm, _ = carry
        beta_prev = jnp.where(j > 0, betas[jnp.maximum(j - 1, 0)], 0).astype(dtype)
        w = op(q)
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
    """Default relative breakdown tolerance (times the running estimate of ``||A||``).

    ``32 eps`` with re-orthogonalisation (a small ``beta`` above it is harmless: the next
    vector is re-orthogonalised anyway); ``sqrt(eps)`` without, where a ``beta`` at rounding
    level would otherwise turn the recurrence into noise (it stops instead, with an
    eigenvalue perturbation of at most ``sqrt(eps) ||A||``).
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


@jax.jit(static_argnames=("num_steps", "reorthogonalize", "return_basis", "tol"))
def _lanczos_jit(matvec: Partial, v0: PyTree, key: Array, *, num_steps: int,
                 reorthogonalize: bool, return_basis: bool, tol: float) -> LanczosResult:
    x0, unravel = ravel(v0)
    op = flat_operator(matvec, unravel, x0.dtype)
    if reorthogonalize:
        alphas, betas, basis = lanczos_reorth(op, x0, key, num_steps, tol)
        length = jnp.asarray(num_steps, jnp.int32)
        tree_basis = jax.vmap(unravel)(basis) if return_basis else None
        return LanczosResult(alphas, betas, tree_basis, length)
    alphas, betas, length = lanczos_plain(op, x0, num_steps, tol)
    return LanczosResult(alphas, betas, None, length)


# --------------------------------------------------------------------------- public API

def lanczos(matvec: Matvec, v0: PyTree, num_steps: int, *, reorthogonalize: bool = True,
            return_basis: bool = False, key: Array | None = None,
            tol: float | None = None) -> LanczosResult:
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

    ``matvec`` is a jit *argument*: pass a :class:`~jax.tree_util.Partial` (e.g. from
    :func:`hvp_operator`) so its arrays are traced, not constants. Works under ``jax.vmap``
    over ``v0`` (value checks are skipped under tracing). Non-finite ``alphas``/``betas``
    raise ``ValueError`` after the loop.

    Example:
        >>> op = Partial(lambda v: jnp.arange(1.0, 6.0) * v)       # diag(1..5)
        >>> res = lanczos(op, jnp.ones(5), 5)
        >>> tridiagonal_eigh(res.alphas, res.betas).values       # ~[1, 2, 3, 4, 5]
    """
    op = as_operator(matvec)
    check_tree(v0, "v0")
    dim = tree_size(v0)
    num_steps = check_int(num_steps, "num_steps", low=1, high=dim)
    for flag, name in ((reorthogonalize, "reorthogonalize"), (return_basis, "return_basis")):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
    if return_basis and not reorthogonalize:
        raise ValueError("return_basis=True needs reorthogonalize=True (the no-basis mode "
                         "keeps only three vectors)")
    key = jax.random.key(0) if key is None else check_key(key)
    dtype = jnp.result_type(*jax.tree.leaves(v0))
    tol = resolve_tol(tol, dtype, reorthogonalize)
    check_operator_output(op, v0, like_name="v0")
    if is_concrete(v0) and not float(jnp.linalg.norm(ravel(v0)[0])) > 0:
        raise ValueError("v0 must be a non-zero vector")
    res = _lanczos_jit(op, v0, key, num_steps=num_steps, reorthogonalize=reorthogonalize,
                       return_basis=return_basis, tol=tol)
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
