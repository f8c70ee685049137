"""What is estimated from Lanczos (SPEC 1.3): top eigenpairs, the trace, the spectral density.

Every estimator composes, as matfree's ``stochtrace`` does, a *sampler* (a Rademacher probe and
a Lanczos restart seed from one key), an *integrand* (``z^T A z``, or a Lanczos run) and an
``estimator`` that maps it over ``num_probes`` keys in one compiled program, so the same
``key`` gives the same probes to :func:`hutchinson_trace`, :func:`slq` and
:func:`estimate_spectrum`. ``(1/D) sum_i f(lambda_i)`` is computed from the Gauss quadrature
(:class:`SpectralQuadrature`), never from a gridded density.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prune_jax.curvature.hoist import compiled, flat_operator, prepare
from prune_jax.curvature.layout import FlatLayout, dot
from prune_jax.curvature.offload import block_rows
from prune_jax.curvature.tridiag import (
    LanczosResult,
    check_finite_result,
    default_tol,
    lanczos_tridiag,
    storage,
    tridiagonal_eigh,
)
from prune_jax.tree import Array, PyTree
from prune_jax.validate import (
    check_bool,
    check_fraction,
    check_int,
    check_key,
    check_positive,
    check_tree,
)

__all__ = ["MIN_TRACE_SAMPLES", "Estimate", "SpectralQuadrature", "Spectrum", "TopEigenpairs",
           "TraceEstimate", "estimate_spectrum", "estimator", "hutchinson_trace", "map_chunked",
           "slq", "top_eigenvalues"]


class Estimate(NamedTuple):
    """A Monte-Carlo mean and its standard error (sample std / sqrt(n); NaN for one sample)."""

    estimate: float
    stderr: float


class TraceEstimate(NamedTuple):
    """Trace estimate ``tr H ~ mean_l s_l``, its standard error (as :class:`Estimate`) and the
    samples ``s_l`` (Hutchinson: ``z_l^T H z_l``)."""

    estimate: float
    stderr: float
    samples: np.ndarray


class TopEigenpairs(NamedTuple):
    """Top-k Ritz pairs of one Lanczos run (SPEC 1.2, 1.3), largest first.

    ``eigenvalues``: ``(k,)`` float64 Ritz values ``theta_k``; ``eigenvectors``: unit Ritz
    vectors ``y_k``, shaped like ``like`` with a leading axis ``k``; ``residuals``: the true
    ``||H y_k - theta_k y_k||_2`` (some eigenvalue of ``H`` lies within it of ``theta_k``, up
    to a rounding floor of about ``eps ||H||``); ``lanczos_residuals``: the Lanczos bounds
    ``|beta_m s_{m,k}|``, equal to them in exact arithmetic (they ignore rounding).
    """

    eigenvalues: np.ndarray
    eigenvectors: PyTree
    residuals: np.ndarray
    lanczos_residuals: np.ndarray


class SpectralQuadrature(NamedTuple):
    """Stochastic Lanczos quadrature of the spectral density (SPEC 1.3).

    ``phi(lambda) ~ (1/n_v) sum_l sum_k tau_k^(l) delta(lambda - theta_k^(l))`` with
    ``(num_probes, num_steps)`` float64 ``nodes`` ``theta_k^(l)`` and ``weights`` ``tau_k^(l)``
    (rows sum to 1; shorter runs are padded with zero-weight nodes), ``dim`` ``D``.
    """

    nodes: np.ndarray
    weights: np.ndarray
    dim: int

    @property
    def num_probes(self) -> int:
        """Number of probe vectors ``n_v``."""
        return int(self.nodes.shape[0])

    @property
    def num_steps(self) -> int:
        """Number of nodes per probe (the Lanczos steps ``m``)."""
        return int(self.nodes.shape[1])

    def per_probe(self, f: Callable[[np.ndarray], Any]) -> np.ndarray:
        """``(num_probes,)`` quadratures ``sum_k tau_k^(l) f(theta_k^(l))`` (``f`` elementwise)."""
        values = np.asarray(f(self.nodes), dtype=np.float64)
        if values.shape != self.nodes.shape:
            raise ValueError(f"f must act elementwise: f(nodes) has shape {values.shape}, "
                             f"expected {self.nodes.shape}")
        return np.sum(self.weights * values, axis=-1)

    def expect(self, f: Callable[[np.ndarray], Any]) -> float:
        """Quadrature estimate of ``(1/D) sum_i f(lambda_i)``, averaged over probes.

        Example:
            >>> q = SpectralQuadrature(np.array([[1.0, 3.0]]), np.array([[0.5, 0.5]]), dim=4)
            >>> q.expect(lambda x: x) * q.dim        # trace estimate
            8.0
            >>> q.expect(lambda x: x ** 2)           # (1/D) sum_i lambda_i^2
            5.0
        """
        return self.estimate(f).estimate

    def stderr(self, f: Callable[[np.ndarray], Any]) -> float:
        """Standard error of :meth:`expect` across probes (NaN for a single probe)."""
        return self.estimate(f).stderr

    def estimate(self, f: Callable[[np.ndarray], Any]) -> Estimate:
        """:meth:`expect` and :meth:`stderr` together."""
        return _mean_stderr(self.per_probe(f))

    def density(self, grid: Any, sigma: float) -> np.ndarray:
        """Gaussian-kernel smoothed density on ``grid`` (width ``sigma``), for plots only;
        derive quantities with :meth:`expect`."""
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        z = (np.asarray(grid, dtype=np.float64)[..., None, None] - self.nodes) / sigma
        kern = np.exp(-0.5 * z * z) / (sigma * np.sqrt(2.0 * np.pi))
        return np.sum(kern * self.weights, axis=(-2, -1)) / self.num_probes


class Spectrum(NamedTuple):
    """Result of :func:`estimate_spectrum`: the first run's top eigenpairs, the (deflated)
    trace and the quadrature of every run."""

    top: TopEigenpairs
    trace: TraceEstimate
    quadrature: SpectralQuadrature


def _mean_stderr(samples: np.ndarray) -> Estimate:
    s = np.asarray(samples, dtype=np.float64)
    se = float(np.std(s, ddof=1) / np.sqrt(s.size)) if s.size > 1 else float("nan")
    return Estimate(float(np.mean(s)), se)


def map_chunked(f: Callable[[Any], Any], xs: Any, batch_size: int, *,
                sequential: bool = False) -> Any:
    """``vmap`` of ``f`` over the leading axis of ``xs`` in ``lax.map`` chunks of
    ``batch_size`` (``sequential`` or ``batch_size == 1``: a plain ``lax.map``)."""
    if sequential or batch_size == 1:
        return jax.lax.map(f, xs)
    if batch_size >= jax.tree.leaves(xs)[0].shape[0]:
        return jax.vmap(f)(xs)
    return jax.lax.map(f, xs, batch_size=batch_size)


def sampler(layout: FlatLayout, dtype: Any) -> Callable[[Array], tuple[Array, Array]]:
    """``key -> (z, g)``: a padded Gaussian ``g`` (the Lanczos restart seed) and the
    Rademacher probe ``z = sign(g)``."""
    def sample(key: Array) -> tuple[Array, Array]:
        g = layout.pad(jax.random.normal(key, (layout.dim,), dtype))
        return jnp.sign(g), g

    return sample


def estimator(integrand: Callable[[Array], Any], *, num_probes: int, batch_size: int,
              sequential: bool = False) -> Callable[[Array], Any]:
    """``key -> integrand`` over ``num_probes`` independent keys, stacked (inside ``jit``)."""
    return lambda key: map_chunked(integrand, jax.random.split(key, num_probes), batch_size,
                                   sequential=sequential)


def integrand_tridiag(matvec: Callable[[Array], Array],
                      sample: Callable[[Array], tuple[Array, Array]],
                      run: Callable[..., LanczosResult],
                      deflate: Array | None = None) -> Callable[..., tuple[Array, ...]]:
    """``key -> (alphas, betas[, deflate @ z])``: one Lanczos run from the probe (SLQ)."""
    def integrand(key: Array) -> tuple[Array, ...]:
        z, g = sample(key)
        res = run(matvec, z, g)
        return (res.alphas, res.betas) + (() if deflate is None else (dot(deflate, z),))

    return integrand


@compiled
def _trace_program(op: Any, key: Array, *, layout: FlatLayout, amortise: bool,
                   num_probes: int, batch_size: int) -> Array:
    flat, _, dtype = flat_operator(op, layout, amortise)
    sample = sampler(layout, dtype)

    def integrand(key: Array) -> Array:  # z^T A z (Hutchinson)
        z = sample(key)[0]
        return dot(z, flat(z))

    return estimator(integrand, num_probes=num_probes, batch_size=batch_size)(key)


@compiled
def _slq_program(op: Any, key: Array, *, layout: FlatLayout, amortise: bool,
                 num_probes: int, num_steps: int, reortho: str, tol: float, batch_size: int,
                 offload: bool) -> tuple[Array, Array]:
    flat, _, dtype = flat_operator(op, layout, amortise)
    run = lanczos_tridiag(num_steps, reortho=reortho, tol=tol, layout=layout,
                          basis=storage(layout, num_steps, offload))
    integrand = integrand_tridiag(flat, sampler(layout, dtype), run)
    return estimator(integrand, num_probes=num_probes, batch_size=batch_size,
                     sequential=offload)(key)


@compiled
def _lanczos_program(op: Any, keys: Array, *, layout: FlatLayout, amortise: bool,
                     num_steps: int, top_steps: int, tol: float, k: int, by_magnitude: bool,
                     batch_size: int, top_batch_size: int, offload: bool) -> tuple[Any, ...]:
    """A ``top_steps`` run from ``keys[0]``: its top-``k`` unit Ritz vectors ``Q s_k``, their
    true residuals and their positions among the ascending Ritz values (device ``eigh``); and
    from ``keys[1:]``, ``num_steps`` runs deflated by its basis (:func:`estimate_spectrum`)."""
    flat, unravel, dtype = flat_operator(op, layout, amortise)
    store = storage(layout, top_steps, offload)
    z, g = sampler(layout, dtype)(keys[0])
    res = lanczos_tridiag(top_steps, tol=tol, layout=layout, basis=store)(flat, z, g)
    t = jnp.diag(res.alphas) + jnp.diag(res.betas[:-1], 1) + jnp.diag(res.betas[:-1], -1)
    theta, s = jnp.linalg.eigh(t)
    idx = jnp.argsort(-(jnp.abs(theta) if by_magnitude else theta), stable=True)[:k]
    y = store.combine(res.basis, s[:, idx].T.astype(res.basis.dtype))
    y = y / jnp.linalg.norm(y, axis=-1, keepdims=True)
    residual = map_chunked(lambda yt: jnp.linalg.norm(flat(yt[0]) - yt[1] * yt[0]),
                           (y, theta[idx]), top_batch_size)
    out = (res, jax.vmap(unravel)(layout.unpad(y)), residual, idx)
    if keys.shape[0] == 1:
        return out
    run = lanczos_tridiag(num_steps, tol=tol, layout=layout)
    integrand = integrand_tridiag(flat, sampler(layout, dtype), run, deflate=res.basis)
    return (*out, map_chunked(integrand, keys[1:], batch_size))


@compiled
def _round_program(op: Any, key: Array, start: Array, count: Array, basis: Array, *,
                   layout: FlatLayout, amortise: bool,
                   capacity: int) -> tuple[Array, Array]:
    """Probes ``start .. start + count - 1`` (keys ``fold_in(key, i)``; ``count`` traced, so
    one compiled program serves every round): ``z^T A z`` and ``basis @ z`` for each."""
    flat, _, dtype = flat_operator(op, layout, amortise)

    def body(i: Array, acc: tuple[Array, Array]) -> tuple[Array, Array]:
        z = sampler(layout, dtype)(jax.random.fold_in(key, start + i))[0]
        return acc[0].at[i].set(dot(z, flat(z))), acc[1].at[i].set(dot(basis, z))

    init = (jnp.zeros((capacity,), dtype), jnp.zeros((capacity, basis.shape[0]), dtype))
    return jax.lax.fori_loop(0, count, body, init)


def _setup(matvec: Any, like: PyTree, key: Any, mesh: Any,
           linearize: bool | str) -> tuple[Array, Any, dict[str, Any], Any]:
    """The checked key, the hoisted operator, the programs' static arguments and the dtype."""
    check_tree(like, "like")
    key = check_key(key)
    op, layout, amortise = prepare(matvec, like, mesh=mesh, linearize=linearize)
    dtype = jnp.result_type(*(v.aval.dtype for v in op.func.jaxpr.invars))
    return key, op, dict(layout=layout, amortise=amortise), dtype


def _tol(tol: Any, dtype: Any, reorthogonalize: bool) -> float:
    return default_tol(dtype, reorthogonalize) if tol is None else check_fraction(tol, "tol")


def _chunk(batch_size: Any, num_probes: int, rows: int, layout: FlatLayout, dtype: Any,
           max_memory_bytes: int) -> int:
    """Probes per vmapped chunk: ``batch_size``, or the most whose Lanczos vectors (``rows``
    of ``D_pad / n`` per probe) fit in ``max_memory_bytes`` per device on GPU/TPU; 1 on CPU,
    where XLA runs batched probes slower than a sequence (benchmarks/RESULTS.md)."""
    if batch_size is not None:
        return check_int(batch_size, "batch_size", low=1)
    max_memory_bytes = check_int(max_memory_bytes, "max_memory_bytes", low=1)
    mesh = layout.mesh
    if (jax.devices()[0] if mesh is None else mesh.devices.flat[0]).platform == "cpu":
        return 1
    per_probe = rows * (layout.padded // (1 if mesh is None else mesh.size))
    return int(max(1, min(num_probes,
                          max_memory_bytes // max(per_probe * np.dtype(dtype).itemsize, 1))))


def _top_result(res: LanczosResult, y: PyTree, residual: Array, idx: Array) -> TopEigenpairs:
    check_finite_result((res.alphas, res.betas, residual), "matvec (Lanczos)")
    ritz = tridiagonal_eigh(res.alphas, res.betas)
    idx = np.asarray(idx)
    return TopEigenpairs(ritz.values[idx], y, np.asarray(residual, np.float64),
                         ritz.residuals[idx])


def top_eigenvalues(matvec: Callable[[PyTree], PyTree], like: PyTree, *, key: Array, k: int,
                    num_steps: int, by_magnitude: bool = False, tol: float | None = None,
                    mesh: Any = None, offload_basis: bool = False,
                    batch_size: int | None = None,
                    linearize: bool | str = "auto") -> TopEigenpairs:
    """Top-``k`` eigenpairs from one re-orthogonalised Lanczos run (SPEC 1.2, 1.3).

    The run starts from a Rademacher vector drawn from ``key``; the Ritz pairs of ``T_m``
    (``m = num_steps``, ``k <= m <= D``; a few times ``k`` is typical) are ranked by value or,
    with ``by_magnitude=True``, by ``|theta|``. ``.residuals`` (``k`` extra products, vmapped
    in chunks of ``batch_size``, default all) certify convergence. ``matvec``: any function
    (its arrays are hoisted; ``linearize`` as in :func:`hvp_operator`). ``offload_basis=True``
    keeps the basis in host memory; ``mesh`` (default: that of ``like``'s or the operator's
    arrays) splits the vectors over its devices (``docs/scaling.md``).

    Example:
        >>> op = lambda v: jnp.arange(1.0, 6.0) * v                 # diag(1, ..., 5)
        >>> top = top_eigenvalues(op, jnp.zeros(5), key=jax.random.key(0), k=2, num_steps=5)
        >>> np.round(top.eigenvalues, 4).tolist()
        [5.0, 4.0]
        >>> np.abs(np.round(np.asarray(top.eigenvectors), 4)).tolist()  # e_5, e_4
        [[0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0, 0.0]]
        >>> bool(np.all(top.residuals < 1e-5))      # ||H y - theta y||: float32 rounding only
        True
    """
    key, op, static, dtype = _setup(matvec, like, key, mesh, linearize)
    num_steps = check_int(num_steps, "num_steps", low=1, high=static["layout"].dim)
    k = check_int(k, "k", low=1, high=num_steps)
    batch_size = k if batch_size is None else check_int(batch_size, "batch_size", low=1)
    out = _lanczos_program(op, jax.random.split(key, 1), **static, num_steps=num_steps,
                           top_steps=num_steps, tol=_tol(tol, dtype, True), k=k,
                           by_magnitude=check_bool(by_magnitude, "by_magnitude"),
                           batch_size=1, top_batch_size=min(batch_size, k),
                           offload=check_bool(offload_basis, "offload_basis"))
    return _top_result(*out)


def hutchinson_trace(matvec: Callable[[PyTree], PyTree], like: PyTree, *, key: Array,
                     num_probes: int, batch_size: int | None = None,
                     max_memory_bytes: int = 2**30, mesh: Any = None,
                     linearize: bool | str = "auto") -> TraceEstimate:
    """Hutchinson estimate ``tr H ~ (1/n) sum_l z_l^T H z_l``, Rademacher ``z_l`` (SPEC 1.3).

    ``batch_size`` and ``max_memory_bytes`` as in :func:`slq`; ``matvec``, ``linearize`` and
    ``mesh`` as in :func:`top_eigenvalues`. :func:`estimate_spectrum` (deflated) needs far
    fewer products on Hessians with outlying eigenvalues.

    Example:
        >>> op = lambda v: jnp.arange(4.0) * v
        >>> hutchinson_trace(op, jnp.zeros(4), key=jax.random.key(0), num_probes=8).estimate
        6.0
    """
    key, op, static, dtype = _setup(matvec, like, key, mesh, linearize)
    num_probes = check_int(num_probes, "num_probes", low=1)
    batch_size = _chunk(batch_size, num_probes, 4, static["layout"], dtype, max_memory_bytes)
    samples = _trace_program(op, key, **static, num_probes=num_probes, batch_size=batch_size)
    check_finite_result(samples, "matvec (Hutchinson)")
    s = np.asarray(samples, dtype=np.float64)
    return TraceEstimate(*_mean_stderr(s), s)


def slq(matvec: Callable[[PyTree], PyTree], like: PyTree, *, key: Array, num_probes: int,
        num_steps: int, reorthogonalize: bool = True, batch_size: int | None = None,
        max_memory_bytes: int = 2**30, tol: float | None = None, mesh: Any = None,
        offload_basis: bool = False, linearize: bool | str = "auto") -> SpectralQuadrature:
    """Stochastic Lanczos quadrature of the spectral density of ``matvec`` (SPEC 1.2, 1.3).

    ``num_probes`` Rademacher probes, each a ``num_steps``-step Lanczos run (re-orthogonalised
    unless ``reorthogonalize=False``), in one compiled program. Probes run in vmapped chunks
    of ``batch_size``; by default one at a time on CPU, and on GPU/TPU the largest chunk whose
    Lanczos vectors fit in ``max_memory_bytes`` per device. ``offload_basis=True`` keeps each
    probe's basis in host memory (``batch_size`` None or 1). ``.expect(f)`` of the result is
    ``(1/D) sum_i f(lambda_i)``, exact per probe for polynomials of degree ``< 2 m``.
    ``matvec``, ``linearize`` and ``mesh``: as in :func:`top_eigenvalues`.

    Example:
        >>> op = lambda v: jnp.arange(1.0, 6.0) * v                 # diag(1, ..., 5)
        >>> q = slq(op, jnp.zeros(5), key=jax.random.key(0), num_probes=4, num_steps=5)
        >>> q.nodes.shape, q.weights.shape
        ((4, 5), (4, 5))
        >>> round(q.expect(lambda x: x) * q.dim, 4)         # trace (q.stderr(f): its error)
        15.0
        >>> round(q.expect(lambda x: x ** 2) * q.dim, 3)    # ||H||_F^2 = 1 + 4 + ... + 25
        55.0
    """
    key, op, static, dtype = _setup(matvec, like, key, mesh, linearize)
    layout = static["layout"]
    num_probes = check_int(num_probes, "num_probes", low=1)
    num_steps = check_int(num_steps, "num_steps", low=1, high=layout.dim)
    reorthogonalize = check_bool(reorthogonalize, "reorthogonalize")
    offload_basis = check_bool(offload_basis, "offload_basis")
    if offload_basis and not reorthogonalize:
        raise ValueError("offload_basis=True needs reorthogonalize=True (the no-basis mode "
                         "stores no basis)")
    if offload_basis and batch_size not in (None, 1):
        raise ValueError("offload_basis=True runs the probes one at a time: batch_size must "
                         f"be None or 1, got {batch_size!r}")
    rows = (block_rows(num_steps) if offload_basis else num_steps + 1) + 4
    chunk = _chunk(batch_size, num_probes, rows if reorthogonalize else 4, layout, dtype,
                   max_memory_bytes)
    alphas, betas = _slq_program(op, key, **static, num_probes=num_probes, num_steps=num_steps,
                                 reortho="full" if reorthogonalize else "none",
                                 tol=_tol(tol, dtype, reorthogonalize), batch_size=chunk,
                                 offload=offload_basis)
    ritz = tridiagonal_eigh(alphas, betas)
    return SpectralQuadrature(ritz.values, ritz.weights, layout.dim)


def _deflated(first: LanczosResult, c: np.ndarray, plain: np.ndarray) -> np.ndarray:
    """Hutch++-style samples ``tr(Q^T H Q) + (P z)^T H (P z)``, ``P = I - Q Q^T``, ``Q`` the
    first run's basis (independent of the probes ``z``), from ``c = [Q; q_{m+1}] z`` alone:
    ``H Q = Q T + beta_m q_{m+1} e_m^T`` gives ``(P z)^T H (P z) = z^T H z - c^T T c -
    2 beta_m c_{m+1} c_m``, and ``tr(Q^T H Q) = tr T``."""
    a = np.asarray(first.alphas, np.float64)
    b = np.asarray(first.betas, np.float64)
    t = np.diag(a) + np.diag(b[:-1], 1) + np.diag(b[:-1], -1)
    cq, d = c[:, :-1], c[:, -1]
    return np.sum(a) + plain - np.einsum("li,ij,lj->l", cq, t, cq) - 2 * b[-1] * d * cq[:, -1]


def _cross_fitted(plain: np.ndarray, deflated: np.ndarray) -> TraceEstimate:
    """Mean and standard error, choosing per half of the probes the estimator whose sample
    variance is lower *on the other half* (the choice never sees the samples it averages, so
    the result stays unbiased). Fewer than 4 probes: the deflated samples."""
    n = plain.size
    if n < 4:
        return TraceEstimate(*_mean_stderr(deflated), deflated)
    halves = (slice(0, n // 2), slice(n // 2, n))
    chosen = []
    for mine, other in (halves, halves[::-1]):
        better = np.var(deflated[other], ddof=1) <= np.var(plain[other], ddof=1)
        chosen.append((deflated if better else plain)[mine])
    (m1, s1), (m2, s2) = _mean_stderr(chosen[0]), _mean_stderr(chosen[1])
    return TraceEstimate(0.5 * (m1 + m2), 0.5 * float(np.hypot(s1, s2)), np.concatenate(chosen))


MIN_TRACE_SAMPLES = 16  # the adaptive trace never stops on a standard error from fewer


def _more_probes(est: float, se: float, n: int, rtol: float) -> int:
    """Probes still needed for ``se <= rtol |est|`` (``se ~ 1/sqrt(n)``, 10% margin), and for
    at least :data:`MIN_TRACE_SAMPLES` samples: a standard error from a handful of samples
    that happens to be small is reported too small (about 3x on Gaussian samples; from 16
    samples on it is right to a few percent, benchmarks/RESULTS.md)."""
    if n < MIN_TRACE_SAMPLES:
        return MIN_TRACE_SAMPLES - n
    if not (np.isfinite(se) and est != 0):
        return 8
    return max(4, int(np.ceil(1.1 * n * (se / (rtol * abs(est))) ** 2)) - n)


def estimate_spectrum(matvec: Callable[[PyTree], PyTree], like: PyTree, *, key: Array,
                      num_probes: int = 4, num_steps: int = 16, top_steps: int = 32,
                      k: int = 1, trace_rtol: float | None = 0.02, max_trace_probes: int = 256,
                      by_magnitude: bool = False, batch_size: int | None = None,
                      max_memory_bytes: int = 2**30, tol: float | None = None,
                      mesh: Any = None, linearize: bool | str = "auto") -> Spectrum:
    """Top eigenpairs, trace and spectral density in one pass of Lanczos runs (SPEC 1.2, 1.3).

    ``num_probes`` Rademacher probes, each a re-orthogonalised Lanczos run (the first of
    ``top_steps`` steps, the others of ``num_steps``), in one compiled program.

    - ``.top``: the top-``k`` Ritz pairs of the first run (as :func:`top_eigenvalues`).
    - ``.trace``: every other run gives ``z^T H z = ||z||^2 alpha_1`` for free; while there
      are fewer than 16 samples or the standard error exceeds ``trace_rtol`` times the
      estimate (``None``: never), Hutchinson probes are added (one product each, at most
      ``max_trace_probes``). The first run's basis ``Q`` deflates them Hutch++-style at no
      extra product (``tr(Q^T H Q) + (P z)^T H (P z)``, ``P = I - Q Q^T``: unbiased); each
      half of the probes uses the estimator, plain or deflated, whose sample variance is
      lower on the *other* half.
    - ``.quadrature``: the :class:`SpectralQuadrature` of every run (rows of the shorter runs
      padded with zero-weight nodes).

    The defaults cost ``32 + 3 x 16 + k`` products plus the trace probes, and give the top
    eigenvalue of ordinary MLP Hessians to better than 1e-3 and the trace to a 2% standard
    error (benchmarks/RESULTS.md). ``batch_size``, ``max_memory_bytes``, ``matvec``,
    ``linearize`` and ``mesh``: as in :func:`slq`.

    Example:
        >>> d = jnp.concatenate([jnp.array([50.0, 20.0]), jnp.linspace(0.0, 1.0, 98)])
        >>> s = estimate_spectrum(lambda v: d * v, jnp.zeros(100), key=jax.random.key(0))
        >>> round(float(s.top.eigenvalues[0]), 3), bool(s.top.residuals[0] < 1e-3)
        (50.0, True)
        >>> abs(s.trace.estimate - float(d.sum())) <= 3 * s.trace.stderr
        True
        >>> s.quadrature.nodes.shape
        (4, 32)
    """
    key, op, static, dtype = _setup(matvec, like, key, mesh, linearize)
    layout = static["layout"]
    num_probes = check_int(num_probes, "num_probes", low=2)
    num_steps = check_int(num_steps, "num_steps", low=1, high=layout.dim)
    top_steps = check_int(top_steps, "top_steps", low=1, high=layout.dim)
    k = check_int(k, "k", low=1, high=top_steps)
    if trace_rtol is not None:
        trace_rtol = check_positive(trace_rtol, "trace_rtol")
    max_trace_probes = check_int(max_trace_probes, "max_trace_probes", low=1)
    chunk = _chunk(batch_size, num_probes - 1, num_steps + 5, layout, dtype, max_memory_bytes)
    k_lanczos, k_trace = jax.random.split(key)
    first, y, residual, idx, (alphas, betas, c) = _lanczos_program(
        op, jax.random.split(k_lanczos, num_probes), **static, num_steps=num_steps,
        top_steps=top_steps, tol=_tol(tol, dtype, True), k=k,
        by_magnitude=check_bool(by_magnitude, "by_magnitude"), batch_size=chunk,
        top_batch_size=k, offload=False)
    top = _top_result(first, y, residual, idx)
    check_finite_result((alphas, betas, c), "matvec (Lanczos)")
    plain = layout.dim * np.asarray(alphas[:, 0], np.float64)  # z^T H z = ||z||^2 alpha_1
    c = np.asarray(c, np.float64)
    while True:
        trace = _cross_fitted(plain, _deflated(first, c, plain))
        done, (est, se) = plain.size - (num_probes - 1), trace[:2]
        if trace_rtol is None or done >= max_trace_probes or (
                plain.size >= MIN_TRACE_SAMPLES and se <= trace_rtol * abs(est)):
            break
        count = min(_more_probes(est, se, plain.size, trace_rtol), max_trace_probes - done)
        s, cs = _round_program(op, k_trace, done, count, first.basis, **static,
                               capacity=max_trace_probes)
        check_finite_result(s[:count], "matvec (Hutchinson)")
        plain = np.concatenate([plain, np.asarray(s[:count], np.float64)])
        c = np.concatenate([c, np.asarray(cs[:count], np.float64)])
    width = max(num_steps, top_steps)

    def pad(x: Any, last: bool = True) -> np.ndarray:  # zero-weight nodes; cut the last beta
        x = np.array(x, np.float64).reshape(-1, np.shape(x)[-1])
        if x.shape[1] < width and not last:
            x[:, -1] = 0.0
        return np.pad(x, ((0, 0), (0, width - x.shape[1])))

    ritz = tridiagonal_eigh(np.concatenate([pad(first.alphas), pad(alphas)]),
                            np.concatenate([pad(first.betas, False), pad(betas, False)]))
    return Spectrum(top, trace, SpectralQuadrature(ritz.values, ritz.weights, layout.dim))
