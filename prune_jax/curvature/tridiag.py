"""Lanczos tridiagonalisation (SPEC 1.2) and the float64 eigen-decomposition of ``T_m``.

:func:`lanczos_tridiag` is a factory in the style of matfree's ``decomp``: it fixes the number
of steps and the re-orthogonalisation, and returns ``run(matvec, v0, key) -> LanczosResult``
on flat vectors, one ``lax.fori_loop`` over a preallocated ``(m + 1, D)`` basis (or, without
re-orthogonalisation, a ``lax.while_loop`` over three vectors), with no host synchronisation
per step. The estimators of :mod:`prune_jax.curvature.spectrum` compose it with probes;
:func:`lanczos` is the public single run on pytrees.
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


def default_tol(dtype: Any, reorthogonalize: bool) -> float:
    """Default relative breakdown tolerance (times the running estimate of ``||A||``; SPEC 1.2).

    ``32 eps`` with re-orthogonalisation (a small ``beta`` above it is harmless: the next
    vector is re-orthogonalised anyway); ``sqrt(eps)`` without, where a ``beta`` at rounding
    level would otherwise turn the recurrence into noise (it stops instead, with an
    eigenvalue perturbation of at most ``sqrt(eps) ||A||``).

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


def _full(matvec: Callable[[Array], Array], v0: Array, seed: Array, num_steps: int,
          tol: float, layout: FlatLayout, store: Basis) -> LanczosResult:
    dtype = v0.dtype

    def step(j: Array, carry: tuple[Array, ...]) -> tuple[Array, ...]:
        basis, alphas, betas, anorm = carry
        q = store.row(basis, j)
        w = layout.constrain(matvec(q))
        anorm = jnp.maximum(anorm, jnp.linalg.norm(w))
        alpha = dot(q, w)
        w = w - alpha * q - betas[j - 1] * store.row(basis, j - 1)  # row -1 is still zero
        w = store.orthogonalize(basis, w, j)
        beta = jnp.linalg.norm(w)
        broke = beta <= tol * anorm

        def restart(state: tuple[Array, Array]) -> tuple[Array, Array]:
            # a batched while_loop runs only where some probe broke down (a cond would not)
            r = store.orthogonalize(basis, seed * _signs(j, seed.shape[-1]).astype(dtype), j)
            norm = jnp.linalg.norm(r)
            return r / jnp.where(norm > 0, norm, 1), jnp.zeros((), bool)

        q_next, _ = jax.lax.while_loop(lambda s: s[1], restart,
                                       (w / jnp.where(broke, 1, beta), broke))
        return (store.store(basis, j + 1, q_next), alphas.at[j].set(alpha),
                betas.at[j].set(jnp.where(broke, 0, beta)), anorm)

    zeros = jnp.zeros((num_steps,), dtype)
    q0 = layout.constrain(v0 / jnp.linalg.norm(v0))
    init = (store.init(num_steps + 1, q0), zeros, zeros, jnp.zeros((), dtype))
    basis, alphas, betas, _ = jax.lax.fori_loop(0, num_steps, step, init)
    return LanczosResult(alphas, betas, basis, jnp.asarray(num_steps, jnp.int32))


def _plain(matvec: Callable[[Array], Array], v0: Array, num_steps: int, tol: float,
           layout: FlatLayout) -> LanczosResult:
    dtype = v0.dtype

    def step(carry: tuple[Array, ...]) -> tuple[Array, ...]:
        j, q_prev, q, alphas, betas, anorm, _ = carry
        w = layout.constrain(matvec(q))
        anorm = jnp.maximum(anorm, jnp.linalg.norm(w))
        alpha = dot(q, w)
        w = w - alpha * q - betas[j - 1] * q_prev
        beta = jnp.linalg.norm(w)
        broke = beta <= tol * anorm
        return (j + 1, q, w / jnp.where(broke, 1, beta), alphas.at[j].set(alpha),
                betas.at[j].set(jnp.where(broke, 0, beta)), anorm, broke)

    zeros = jnp.zeros((num_steps,), dtype)
    q0 = layout.constrain(v0 / jnp.linalg.norm(v0))
    init = (jnp.zeros((), jnp.int32), jnp.zeros_like(q0), q0, zeros, zeros,
            jnp.zeros((), dtype), jnp.zeros((), bool))
    out = jax.lax.while_loop(lambda c: (c[0] < num_steps) & ~c[-1], step, init)
    return LanczosResult(out[3], out[4], None, out[0])


def lanczos_tridiag(num_steps: int, *, reortho: str = "full", tol: float | None = None,
                    layout: FlatLayout | None = None,
                    basis: Basis | None = None) -> Callable[..., LanczosResult]:
    """A Lanczos run of ``num_steps`` steps on flat vectors: ``run(matvec, v0, key)`` (SPEC 1.2).

    ``q_1 = v0/||v0||``; per step ``u = A q_j - alpha_j q_j - beta_{j-1} q_{j-1}`` with
    ``alpha_j = <q_j, A q_j>``, then (``reortho="full"``) ``u -= Q (Q^T u)`` twice over the
    preallocated basis, ``beta_j = ||u||``, ``q_{j+1} = u / beta_j``. Breakdown
    (``beta_j <= tol * ||A||``, ``||A||`` the running maximum of ``||A q_i||``; default
    :func:`default_tol`): ``beta_j`` is stored as 0, never divided by, and the run continues
    from a random vector orthogonal to the basis, so ``Q^T A Q = T``
    stays exact: ``seed`` (a random vector, e.g. Gaussian; zero in the padding) with a new
    sign pattern per step. ``reortho="none"`` keeps three vectors and stops at a breakdown
    (``seed`` unused). ``run``
    returns a :class:`LanczosResult` whose ``basis`` is the flat ``(m + 1, D_pad)`` storage
    (row ``m`` is ``q_{m+1}``), or ``None``. ``layout`` pads and splits the vectors over a
    mesh; ``basis`` stores the basis elsewhere (``host_basis`` of
    :mod:`prune_jax.curvature.offload`).

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
        t = default_tol(v0.dtype, reortho == "full") if tol is None else tol
        if reortho == "none":
            return _plain(matvec, v0, num_steps, t, lay)
        return _full(matvec, v0, seed, num_steps, t, lay,
                     device_basis(lay) if basis is None else basis)

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
    op = amortised(op, v0) if amortise else op
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

    One compiled run of :func:`lanczos_tridiag` on ``ravel(v0)``; ``matvec`` sees pytrees
    shaped like ``v0``. ``reorthogonalize=True``: full re-orthogonalisation, twice, against
    the stored basis, and restarts after a breakdown (from ``key``; default
    ``jax.random.key(0)``); ``False``: the three-term recurrence only (memory ``O(D)``),
    stopping at a breakdown (``length`` says where), without ``return_basis``.

    ``matvec`` may be any function (a lambda, a ``functools.partial``, a closure over data and
    parameters): its arrays are hoisted into arguments of the compiled loop, and with
    ``linearize`` (``"auto"``: when the residuals fit the memory budget) its ``v``-independent
    work is done once; see :func:`hvp_operator`. Memory modes (``docs/scaling.md``): the basis
    on the device (default), in host memory (``offload_basis=True``; not with
    ``return_basis``, not under ``jax.vmap``), or none (``reorthogonalize=False``). ``mesh``
    (default: the mesh of ``v0``'s or the operator's arrays) splits the flat vectors and the
    basis over its devices. Works under ``jax.vmap`` over ``v0``. Non-finite coefficients (or
    ``v0 = 0``) raise ``ValueError`` after the loop.

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

    Works on batches (leading axes, e.g. one row per probe). Returns ascending Ritz values
    ``theta_k``, weights ``tau_k = s_{1,k}^2`` (summing to 1 per row), residuals
    ``|beta_m s_{m,k}|`` and the eigenvectors. Zero padding past a stopped run's ``length``
    gives zero-weight nodes at 0 and leaves the other Ritz values unchanged.

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
