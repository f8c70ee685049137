"""Lanczos tridiagonalisation (SPEC 1.2) and the float64 eigen-decomposition of ``T_m``.

:func:`lanczos_tridiag` is a factory in the style of matfree's ``decomp``: it returns
``run(matvec, v0, seed) -> LanczosResult`` on flat vectors, one compiled loop with no host
synchronisation per step. :func:`lanczos` is the public single run on pytrees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prune_jax.curvature.hoist import amortised, prepare
from prune_jax.curvature.layout import Basis, FlatLayout, device_basis, dot
from prune_jax.curvature.offload import host_basis
from prune_jax.tree import Array, PyTree, ravel, tree_size
from prune_jax.validate import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_key,
    check_tree,
    is_concrete,
)

__all__ = ["LanczosResult", "RitzDecomposition", "default_tol", "lanczos", "lanczos_tridiag",
           "tridiagonal_eigh"]


class LanczosResult(NamedTuple):
    """Output of :func:`lanczos` (SPEC 1.2): ``T_m = tridiag(betas[:-1], alphas, betas[:-1])``.

    Attributes:
        alphas: ``(m,)`` diagonal of ``T_m``.
        betas: ``(m,)`` off-diagonal; ``betas[m-1]`` is the ``beta_m`` of the Ritz residuals,
            and a zero ``beta`` marks a breakdown.
        basis: ``None``, or (``return_basis=True``) ``q_1..q_m`` as a pytree shaped like
            ``v0`` with a leading axis ``m``.
        length: the valid steps (``m`` unless the no-basis mode stopped at a breakdown;
            later entries are zero, with zero quadrature weight).
    """

    alphas: Array
    betas: Array
    basis: PyTree | None
    length: Array


class RitzDecomposition(NamedTuple):
    """Eigen-decomposition of ``T_m`` in float64 (SPEC 1.2): ``(..., m)`` ascending Ritz
    ``values`` ``theta_k``, quadrature ``weights`` ``tau_k = s_{1,k}^2`` (rows sum to 1), residual
    bounds ``|beta_m s_{m,k}|`` and the ``(..., m, m)`` eigenvectors ``s_k`` (columns)."""

    values: np.ndarray
    weights: np.ndarray
    residuals: np.ndarray
    vectors: np.ndarray


def default_tol(dtype: Any, reorthogonalize: bool) -> float:
    """Default breakdown tolerance, relative to the running estimate of ``||A||`` (SPEC 1.2).

    ``32 eps`` with re-orthogonalisation; ``sqrt(eps)`` without, where a ``beta`` at rounding
    level would turn the recurrence into noise (it stops, moving eigenvalues by at most
    ``sqrt(eps) ||A||``).

    Example:
        >>> default_tol(jnp.float32, True) == 32 * float(jnp.finfo(jnp.float32).eps)
        True
    """
    eps = float(jnp.finfo(dtype).eps)
    return 32.0 * eps if reorthogonalize else float(np.sqrt(eps))


def _signs(j: Array, size: int) -> Array:
    """A +-1 pattern per step ``j`` (an integer hash: no random-number kernel to compile)."""
    h = (jnp.arange(size, dtype=jnp.uint32) + jnp.uint32(size) * j.astype(jnp.uint32)) \
        * jnp.uint32(0x9E3779B1)
    return 1 - 2 * ((h ^ (h >> 16)) >> 7 & 1).astype(jnp.int8)


def lanczos_tridiag(num_steps: int, *, reortho: str = "full", tol: float | None = None,
                    layout: FlatLayout | None = None,
                    basis: Basis | None = None) -> Callable[..., LanczosResult]:
    """A Lanczos run of ``num_steps`` steps on flat vectors: ``run(matvec, v0, seed)`` (SPEC 1.2).

    ``reortho="full"``: ``u -= Q (Q^T u)`` twice per step over a preallocated ``(m + 1, D_pad)``
    basis; at a breakdown (``beta_j <= tol * ||A||``, default :func:`default_tol`) ``beta_j``
    is stored as 0 and the run continues from ``seed`` (random, zero in the padding) with a new
    sign pattern per step, so ``Q^T A Q = T`` stays exact. ``reortho="none"``: three vectors,
    stopping at a breakdown (``seed`` unused). The result's ``basis`` is the flat storage (row
    ``m`` is ``q_{m+1}``) or ``None``. ``layout`` pads and splits the vectors over a mesh;
    ``basis`` stores them elsewhere (``host_basis`` of :mod:`prune_jax.curvature.offload`).

    Example:
        >>> run = lanczos_tridiag(3)
        >>> seed = jax.random.normal(jax.random.key(0), (3,))
        >>> res = run(lambda x: jnp.array([1.0, 2.0, 3.0]) * x, jnp.ones(3), seed)
        >>> np.round(tridiagonal_eigh(res.alphas, res.betas).values, 4).tolist()
        [1.0, 2.0, 3.0]
    """
    num_steps = check_int(num_steps, "num_steps", low=1)
    reortho = check_choice(reortho, "reortho", ("full", "none"))

    def run(matvec: Callable[[Array], Array], v0: Array, seed: Array) -> LanczosResult:
        lay = FlatLayout.of(v0.shape[-1]) if layout is None else layout
        store = device_basis(lay) if basis is None else basis
        t = default_tol(v0.dtype, reortho == "full") if tol is None else tol
        zeros, anorm0 = jnp.zeros((num_steps,), v0.dtype), jnp.zeros((), v0.dtype)
        q0 = lay.constrain(v0 / jnp.linalg.norm(v0))

        def recurrence(q: Array, q_prev: Array, beta_prev: Array, anorm: Array,
                       orthogonalize: Callable[[Array], Array]) -> tuple[Array, ...]:
            w = lay.constrain(matvec(q))
            anorm = jnp.maximum(anorm, jnp.linalg.norm(w))
            alpha = dot(q, w)
            w = orthogonalize(w - alpha * q - beta_prev * q_prev)
            beta = jnp.linalg.norm(w)
            return w, alpha, beta, beta <= t * anorm, anorm

        if reortho == "none":
            def plain_step(carry: tuple[Array, ...]) -> tuple[Array, ...]:
                j, q_prev, q, alphas, betas, anorm, _ = carry
                w, alpha, beta, broke, anorm = recurrence(q, q_prev, betas[j - 1], anorm,
                                                          lambda u: u)
                return (j + 1, q, w / jnp.where(broke, 1, beta), alphas.at[j].set(alpha),
                        betas.at[j].set(jnp.where(broke, 0, beta)), anorm, broke)

            init = (jnp.zeros((), jnp.int32), jnp.zeros_like(q0), q0, zeros, zeros, anorm0,
                    jnp.zeros((), bool))
            out = jax.lax.while_loop(lambda c: (c[0] < num_steps) & ~c[-1], plain_step, init)
            return LanczosResult(out[3], out[4], None, out[0])

        def step(j: Array, carry: tuple[Array, ...]) -> tuple[Array, ...]:
            basis, alphas, betas, anorm = carry
            w, alpha, beta, broke, anorm = recurrence(  # row -1 is still zero
                store.row(basis, j), store.row(basis, j - 1), betas[j - 1], anorm,
                lambda u: store.orthogonalize(basis, u, j))

            def restart(state: tuple[Array, Array]) -> tuple[Array, Array]:
                # a batched while_loop runs only where some probe broke down (a cond would not)
                signs = _signs(j, seed.shape[-1]).astype(v0.dtype)
                r = store.orthogonalize(basis, seed * signs, j)
                norm = jnp.linalg.norm(r)
                return r / jnp.where(norm > 0, norm, 1), jnp.zeros((), bool)

            q_next, _ = jax.lax.while_loop(lambda s: s[1], restart,
                                           (w / jnp.where(broke, 1, beta), broke))
            return (store.store(basis, j + 1, q_next), alphas.at[j].set(alpha),
                    betas.at[j].set(jnp.where(broke, 0, beta)), anorm)

        init = (store.init(num_steps + 1, q0), zeros, zeros, anorm0)
        basis_out, alphas, betas, _ = jax.lax.fori_loop(0, num_steps, step, init)
        return LanczosResult(alphas, betas, basis_out, jnp.asarray(num_steps, jnp.int32))

    return run


def storage(layout: FlatLayout, num_steps: int, offload: bool) -> Basis:
    """The device basis, or (``offload``) the host-memory one."""
    return host_basis(layout, num_steps) if offload else device_basis(layout)


@jax.jit(static_argnames=("num_steps", "reortho", "tol", "layout", "offload", "return_basis",
                          "amortise"))
def _program(op: Any, v0: PyTree, key: Array, *, num_steps: int, reortho: str, tol: float,
             layout: FlatLayout, offload: bool, return_basis: bool,
             amortise: bool) -> tuple[Any, Array]:
    x0, unravel = ravel(v0)
    op = amortised(op) if amortise else op
    run = lanczos_tridiag(num_steps, reortho=reortho, tol=tol, layout=layout,
                          basis=storage(layout, num_steps, offload))
    seed = layout.pad(jax.random.normal(key, x0.shape, x0.dtype)) if reortho == "full" else x0
    res = run(layout.operator(op, unravel, x0.dtype), layout.pad(x0), seed)
    basis = jax.vmap(unravel)(layout.unpad(res.basis[:num_steps])) if return_basis else None
    return res._replace(basis=basis), jnp.linalg.norm(x0)


def lanczos(matvec: Callable[[PyTree], PyTree], v0: PyTree, num_steps: int, *,
            reorthogonalize: bool = True, return_basis: bool = False, key: Array | None = None,
            tol: float | None = None, mesh: Any = None, offload_basis: bool = False,
            linearize: bool | str = "auto") -> LanczosResult:
    """``num_steps`` Lanczos steps of the symmetric operator ``matvec`` from ``v0`` (SPEC 1.2).

    One compiled run of :func:`lanczos_tridiag` on ``ravel(v0)``. ``reorthogonalize=True``:
    full re-orthogonalisation against the stored basis, restarting after a breakdown from
    ``key`` (default ``jax.random.key(0)``); ``False``: the three-term recurrence only (memory
    ``O(D)``, no ``return_basis``), stopping at a breakdown (``length`` says where).
    ``matvec``: any function, its arrays hoisted (``linearize`` as in :func:`hvp_operator`).
    ``offload_basis=True`` keeps the basis in host memory (not with ``return_basis``, not under
    ``jax.vmap``); ``mesh`` (default: that of ``v0``'s or the operator's arrays) splits the
    vectors over its devices (``docs/scaling.md``). Works under ``jax.vmap`` over ``v0``.
    Non-finite coefficients (or ``v0 = 0``) raise ``ValueError`` after the loop.

    Example:
        >>> op = lambda v: jnp.arange(1.0, 6.0) * v                  # diag(1, ..., 5)
        >>> res = lanczos(op, jnp.ones(5), 5)
        >>> res.alphas.shape, res.betas.shape
        ((5,), (5,))
        >>> np.round(tridiagonal_eigh(res.alphas, res.betas).values, 4).tolist()
        [1.0, 2.0, 3.0, 4.0, 5.0]
    """
    check_tree(v0, "v0")
    num_steps = check_int(num_steps, "num_steps", low=1, high=tree_size(v0))
    reorthogonalize = check_bool(reorthogonalize, "reorthogonalize")
    return_basis = check_bool(return_basis, "return_basis")
    offload_basis = check_bool(offload_basis, "offload_basis")
    if (return_basis or offload_basis) and not reorthogonalize:
        raise ValueError("return_basis=True and offload_basis=True need reorthogonalize=True "
                         "(the no-basis mode keeps three vectors)")
    if offload_basis and return_basis:
        raise ValueError("return_basis=True needs the basis on the device (offload_basis="
                         "False)")
    key = jax.random.key(0) if key is None else check_key(key)
    dtype = jnp.result_type(*jax.tree.leaves(v0))
    tol = default_tol(dtype, reorthogonalize) if tol is None else check_fraction(tol, "tol")
    op, layout, amortise = prepare(matvec, v0, mesh=mesh, linearize=linearize, like_name="v0")
    res, norm = _program(op, v0, key, num_steps=num_steps,
                         reortho="full" if reorthogonalize else "none", tol=tol,
                         layout=layout, offload=offload_basis, return_basis=return_basis,
                         amortise=amortise)
    if is_concrete(res.alphas):
        if not float(norm) > 0:
            raise ValueError("v0 must be a non-zero, finite vector")
        check_finite_result((res.alphas, res.betas), "matvec (Lanczos)")
    return res


def check_finite_result(values: Any, what: str) -> None:
    """``ValueError`` if host-readable ``values`` hold NaN/Inf (after the compiled loop)."""
    if not all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(values)):
        raise ValueError(f"{what} produced NaN or Inf; check the loss, the parameters and the "
                         "batches (the matvec is not finite)")


def tridiagonal_eigh(alphas: Any, betas: Any) -> RitzDecomposition:
    """Eigen-decompose ``T_m = tridiag(alphas, betas[:-1])`` with ``eigh`` in float64 (SPEC 1.2).

    Works on batches (leading axes, e.g. one row per probe). Zero padding past a stopped run's
    ``length`` gives zero-weight nodes at 0 and leaves the other Ritz values unchanged.

    Example:
        >>> tridiagonal_eigh(np.array([2.0, 2.0]), np.array([1.0, 0.0])).values
        array([1., 3.])
    """
    a = np.asarray(alphas, dtype=np.float64)
    b = np.asarray(betas, dtype=np.float64)
    if a.ndim < 1 or a.shape != b.shape:
        raise ValueError(f"alphas and betas must have the same shape (..., m); got {a.shape} "
                         f"and {b.shape}")
    check_finite_result((a, b), "matvec (Lanczos)")
    m = a.shape[-1]
    i = np.arange(m)
    t = np.zeros((*a.shape, m))
    t[..., i, i] = a
    t[..., i[:-1], i[1:]] = t[..., i[1:], i[:-1]] = b[..., :-1]
    values, vectors = np.linalg.eigh(t)
    return RitzDecomposition(values, vectors[..., 0, :] ** 2,
                             np.abs(b[..., -1:] * vectors[..., -1, :]), vectors)
