"""What is estimated from Lanczos (SPEC 1.3): top eigenpairs, the trace, the spectral density.

The spectral density is returned as its raw Gauss quadrature (:class:`SpectralQuadrature`:
nodes ``theta_k^(l)`` and weights ``tau_k^(l)`` per probe ``l``). Every quantity of the form
``(1/D) sum_i f(lambda_i)`` is computed from it by quadrature, never through a gridded density;
:meth:`SpectralQuadrature.density` is a smoothed view for plots only.

Probes are Rademacher vectors, batched with ``vmap`` and chunked with
``lax.map(..., batch_size=...)``; the same ``key`` gives the same probes to
:func:`hutchinson_trace` and :func:`slq`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.tree_util import Partial

from prune_jax.curvature._checks import (
    LikeSpec,
    Matvec,
    as_operator,
    check_finite_result,
    check_int,
    check_key,
    check_operator_output,
    map_chunked,
)
from prune_jax.curvature._layout import FlatLayout, layout_operator, resolve_mesh
from prune_jax.curvature.lanczos import (
    DeviceBasis,
    HostBasis,
    lanczos_plain,
    lanczos_reorth,
    offload_block_rows,
    resolve_tol,
    tridiagonal_eigh,
)
from prune_jax.tree import Array, PyTree

__all__ = [
    "Estimate",
    "SpectralQuadrature",
    "TopEigenpairs",
    "TraceEstimate",
    "hutchinson_trace",
    "slq",
    "top_eigenvalues",
]


class Estimate(NamedTuple):
    """A Monte-Carlo estimate with its standard error across probes (NaN for one probe)."""

    estimate: float
    stderr: float


class TraceEstimate(NamedTuple):
    """Hutchinson trace estimate ``tr H ~ mean_l z_l^T H z_l`` (SPEC 1.3).

    Attributes:
        estimate: the mean over probes.
        stderr: standard error of the mean (sample std / sqrt(num_probes); NaN for 1 probe).
        samples: ``(num_probes,)`` the individual ``z_l^T H z_l``.
    """

    estimate: float
    stderr: float
    samples: np.ndarray


class TopEigenpairs(NamedTuple):
    """Top-k Ritz pairs of one Lanczos run (SPEC 1.3), largest first.

    Attributes:
        eigenvalues: ``(k,)`` float64 Ritz values, descending.
        eigenvectors: Ritz vectors as a pytree shaped like ``like`` with a leading axis ``k``.
        residuals: ``(k,)`` float64 residual bounds ``|beta_m s_{m,k}|`` (``~ ||H y - theta y||``).
    """

    eigenvalues: np.ndarray
    eigenvectors: PyTree
    residuals: np.ndarray


class SpectralQuadrature(NamedTuple):
    """Stochastic Lanczos quadrature of the spectral density (SPEC 1.3).

    ``phi(lambda) ~ (1/n_v) sum_l sum_k tau_k^(l) delta(lambda - theta_k^(l))``.

    Attributes:
        nodes: ``(num_probes, num_steps)`` float64 Ritz values ``theta_k^(l)``.
        weights: ``(num_probes, num_steps)`` float64 weights ``tau_k^(l)``; rows sum to 1.
        dim: the dimension ``D`` of the operator.
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
        """Number of Lanczos steps ``m`` (nodes per probe)."""
        return int(self.nodes.shape[1])

    def per_probe(self, f: Callable[[np.ndarray], Any]) -> np.ndarray:
        """``(num_probes,)`` quadratures ``sum_k tau_k^(l) f(theta_k^(l))``.

        ``f`` is applied elementwise to the float64 node array (numpy or jax functions).
        """
        values = np.asarray(f(self.nodes), dtype=np.float64)
        if values.shape != self.nodes.shape:
            raise ValueError(f"f must act elementwise: f(nodes) has shape {values.shape}, "
                             f"expected {self.nodes.shape}")
        return np.sum(self.weights * values, axis=-1)

    def expect(self, f: Callable[[np.ndarray], Any]) -> float:
        """Quadrature estimate of ``(1/D) sum_i f(lambda_i)``, averaged over probes.

        Example:
            >>> trace = q.expect(lambda x: x) * q.dim
        """
        return float(np.mean(self.per_probe(f)))

    def stderr(self, f: Callable[[np.ndarray], Any]) -> float:
        """Standard error of :meth:`expect` across probes (NaN for a single probe)."""
        samples = self.per_probe(f)
        if samples.size < 2:
            return float("nan")
        return float(np.std(samples, ddof=1) / np.sqrt(samples.size))

    def estimate(self, f: Callable[[np.ndarray], Any]) -> Estimate:
        """:meth:`expect` and :meth:`stderr` together."""
        return Estimate(self.expect(f), self.stderr(f))

    def density(self, grid: Any, sigma: float) -> np.ndarray:
        """Gaussian-kernel smoothed density on ``grid`` (width ``sigma``); for plots only.

        ``(1/n_v) sum_l sum_k tau_k^(l) N(grid; theta_k^(l), sigma^2)``; integrates to ~1.
        Never derive quantities from it: use :meth:`expect` (SPEC 1.3).
        """
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        x = np.asarray(grid, dtype=np.float64)
        z = (x[..., None, None] - self.nodes) / sigma
        kern = np.exp(-0.5 * z * z) / (sigma * np.sqrt(2.0 * np.pi))
        return np.sum(kern * self.weights, axis=(-2, -1)) / self.num_probes


# --------------------------------------------------------------------------- compiled cores

def _probe(key: Array, dim: int, dtype: Any) -> tuple[Array, Array]:
    """Rademacher probe for one probe key, and the key left for Lanczos restarts."""
    kz, kr = jax.random.split(key)
    return jax.random.rademacher(kz, (dim,), dtype=dtype), kr


def _layout(spec: LikeSpec, layout: FlatLayout | None) -> FlatLayout:
    return FlatLayout.of(spec.size, None) if layout is None else layout


@jax.jit(static_argnames=("spec", "num_probes", "batch_size", "layout"))
def _hutchinson_jit(matvec: Partial, key: Array, *, spec: LikeSpec, num_probes: int,
                    batch_size: int, layout: FlatLayout | None = None) -> Array:
    layout = _layout(spec, layout)
    op = layout_operator(matvec, spec.unravel(), spec.dtype, layout)

    def one(k: Array) -> Array:
        z = layout.pad(_probe(k, spec.size, spec.dtype)[0])
        return jnp.vdot(z, op(z), precision=jax.lax.Precision.HIGHEST)

    return map_chunked(one, jax.random.split(key, num_probes), batch_size)


@jax.jit(static_argnames=("spec", "num_probes", "num_steps", "reorthogonalize", "tol",
                          "batch_size", "layout", "offload"))
def _slq_jit(matvec: Partial, key: Array, *, spec: LikeSpec, num_probes: int, num_steps: int,
             reorthogonalize: bool, tol: float, batch_size: int,
             layout: FlatLayout | None = None, offload: bool = False) -> tuple[Array, Array]:
    layout = _layout(spec, layout)
    op = layout_operator(matvec, spec.unravel(), spec.dtype, layout)
    storage = HostBasis.for_steps(layout, num_steps) if offload else DeviceBasis(layout)

    def one(k: Array) -> tuple[Array, Array]:
        z, kr = _probe(k, spec.size, spec.dtype)
        z = layout.pad(z)
        if reorthogonalize:
            alphas, betas, _ = lanczos_reorth(op, z, kr, num_steps, tol, layout=layout,
                                              storage=storage)
        else:
            alphas, betas, _ = lanczos_plain(op, z, num_steps, tol, layout=layout)
        return alphas, betas

    return map_chunked(one, jax.random.split(key, num_probes), batch_size, sequential=offload)


@jax.jit(static_argnames=("spec", "num_steps", "tol", "layout", "offload"))
def _top_jit(matvec: Partial, key: Array, *, spec: LikeSpec, num_steps: int,
             tol: float, layout: FlatLayout | None = None,
             offload: bool = False) -> tuple[Array, Array, Array]:
    layout = _layout(spec, layout)
    op = layout_operator(matvec, spec.unravel(), spec.dtype, layout)
    storage = HostBasis.for_steps(layout, num_steps) if offload else DeviceBasis(layout)
    z, kr = _probe(key, spec.size, spec.dtype)
    return lanczos_reorth(op, layout.pad(z), kr, num_steps, tol, layout=layout,
                          storage=storage)


@jax.jit(static_argnames=("spec", "layout"))
def _ritz_vectors(basis: Array, coeffs: Array, *, spec: LikeSpec,
                  layout: FlatLayout | None = None) -> PyTree:
    layout = _layout(spec, layout)
    vectors = jnp.matmul(coeffs.astype(basis.dtype), basis, precision=jax.lax.Precision.HIGHEST)
    return jax.vmap(spec.unravel())(layout.unpad(layout.constrain(vectors)))


@jax.jit(static_argnames=("spec", "layout"))
def _ritz_vectors_offloaded(basis: Array, coeffs: Array, *, spec: LikeSpec,
                            layout: FlatLayout) -> PyTree:
    """``S^T Q`` from a host-memory basis, one block of rows at a time (``HostBasis``)."""
    storage = HostBasis.for_steps(layout, coeffs.shape[1])
    block = storage.block
    rows = basis.shape[0]
    coeffs = jnp.pad(coeffs.astype(basis.dtype), ((0, 0), (0, rows - coeffs.shape[1])))

    def body(b: Array, acc: Array) -> Array:
        c = jax.lax.dynamic_slice_in_dim(coeffs, b * block, block, 1)
        return acc + jnp.matmul(c, storage.block_rows(basis, b),
                                precision=jax.lax.Precision.HIGHEST)

    acc0 = layout.constrain(jnp.zeros((coeffs.shape[0], basis.shape[1]), basis.dtype))
    vectors = jax.lax.fori_loop(0, rows // block, body, acc0)
    return jax.vmap(spec.unravel())(layout.unpad(vectors))


# --------------------------------------------------------------------------- validation

def _setup(matvec: Matvec, like: PyTree, key: Any) -> tuple[Partial, LikeSpec, Array]:
    op = as_operator(matvec)
    spec = LikeSpec.of(like)
    check_operator_output(op, spec.zeros_struct())
    return op, spec, check_key(key)


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _chunk(batch_size: int | None, num_probes: int, per_probe_bytes: int,
           max_memory_bytes: int) -> int:
    if batch_size is not None:
        return check_int(batch_size, "batch_size", low=1)
    max_memory_bytes = check_int(max_memory_bytes, "max_memory_bytes", low=1)
    return int(max(1, min(num_probes, max_memory_bytes // max(per_probe_bytes, 1))))


def probe_device_rows(num_steps: int, reorthogonalize: bool, offload_basis: bool) -> int:
    """Flat vectors of length ``D_pad / n`` one SLQ probe keeps on each device (estimate).

    The stored basis (``m + 1`` rows) when it is on the device, a streamed block of it when it
    is offloaded to host memory, plus the vectors in flight (``q``, ``w``, the restart seed
    and its shift; 4 rows in the no-basis mode).
    """
    if not reorthogonalize:
        return 4
    if offload_basis:
        return offload_block_rows(num_steps) + 4
    return num_steps + 1


# --------------------------------------------------------------------------- public API

def top_eigenvalues(matvec: Matvec, like: PyTree, *, key: Array, k: int, num_steps: int,
                    by_magnitude: bool = False, tol: float | None = None,
                    mesh: Mesh | None = None, offload_basis: bool = False) -> TopEigenpairs:
    """Top-``k`` eigenpairs from one re-orthogonalised Lanczos run (SPEC 1.2, 1.3).

    Starts from a Rademacher vector drawn from ``key``; the Ritz pairs of ``T_m``
    (``m = num_steps``, ``k <= m <= D``) are ranked by algebraic value (``by_magnitude=False``,
    largest first) or by ``|theta|``. Residuals ``|beta_m s_{m,k}|`` say which have converged.
    Extremal eigenvalues converge first; ``num_steps`` of a few times ``k`` is typical.

    ``offload_basis=True`` keeps the ``(m + 1, D)`` basis in host memory and forms the Ritz
    vectors from it block by block; ``mesh`` splits the flat vectors and the basis over the
    devices of a mesh (default: the operator's or ``like``'s mesh); see :func:`lanczos` and
    ``docs/scaling.md``.

    Example:
        >>> op = hvp_operator(loss_fn, params, batches)
        >>> top = top_eigenvalues(op, params, key=jax.random.key(0), k=5, num_steps=40)
        >>> top.eigenvalues, top.residuals
    """
    op, spec, key = _setup(matvec, like, key)
    num_steps = check_int(num_steps, "num_steps", low=1, high=spec.size)
    k = check_int(k, "k", low=1, high=num_steps)
    _check_bool(by_magnitude, "by_magnitude")
    offload_basis = _check_bool(offload_basis, "offload_basis")
    tol = resolve_tol(tol, spec.dtype, True)
    layout = FlatLayout.of(spec.size, resolve_mesh(mesh, op, like))
    alphas, betas, basis = _top_jit(op, key, spec=spec, num_steps=num_steps, tol=tol,
                                    layout=layout, offload=offload_basis)
    check_finite_result((alphas, betas), "matvec (Lanczos)")
    ritz = tridiagonal_eigh(alphas, betas)
    rank = np.abs(ritz.values) if by_magnitude else ritz.values
    order = np.argsort(-rank, kind="stable")[:k]
    coeffs = jnp.asarray(ritz.vectors[:, order].T)
    if offload_basis:
        vectors = _ritz_vectors_offloaded(basis, coeffs, spec=spec, layout=layout)
    else:
        vectors = _ritz_vectors(basis, coeffs, spec=spec, layout=layout)
    return TopEigenpairs(ritz.values[order], vectors, ritz.residuals[order])


def hutchinson_trace(matvec: Matvec, like: PyTree, *, key: Array, num_probes: int,
                     batch_size: int | None = None,
                     mesh: Mesh | None = None) -> TraceEstimate:
    """Hutchinson estimate ``tr H ~ (1/n) sum_l z_l^T H z_l``, Rademacher ``z_l`` (SPEC 1.3).

    Probes are vmapped; ``batch_size`` (default: all at once) chunks them with ``lax.map``
    (each probe in flight holds the activations of one HVP). The standard error is the
    sample standard deviation over probes divided by ``sqrt(num_probes)``. ``mesh`` (default:
    the operator's or ``like``'s) splits the probe vectors over its devices (see
    :func:`lanczos`); the probes do not depend on it.

    Example:
        >>> op = Partial(lambda v: jnp.arange(4.0) * v)
        >>> hutchinson_trace(op, jnp.zeros(4), key=jax.random.key(0), num_probes=8).estimate
        6.0
    """
    op, spec, key = _setup(matvec, like, key)
    num_probes = check_int(num_probes, "num_probes", low=1)
    batch_size = num_probes if batch_size is None else check_int(batch_size, "batch_size",
                                                                 low=1)
    layout = FlatLayout.of(spec.size, resolve_mesh(mesh, op, like))
    samples = _hutchinson_jit(op, key, spec=spec, num_probes=num_probes,
                              batch_size=batch_size, layout=layout)
    check_finite_result(samples, "matvec (Hutchinson)")
    s = np.asarray(samples, dtype=np.float64)
    stderr = float(np.std(s, ddof=1) / np.sqrt(s.size)) if s.size > 1 else float("nan")
    return TraceEstimate(float(np.mean(s)), stderr, s)


def slq(matvec: Matvec, like: PyTree, *, key: Array, num_probes: int, num_steps: int,
        reorthogonalize: bool = True, batch_size: int | None = None,
        max_memory_bytes: int = 2**30, tol: float | None = None,
        mesh: Mesh | None = None, offload_basis: bool = False) -> SpectralQuadrature:
    """Stochastic Lanczos quadrature of the spectral density of ``matvec`` (SPEC 1.2, 1.3).

    ``num_probes`` Rademacher probes, each a ``num_steps``-step Lanczos run (re-orthogonalised
    unless ``reorthogonalize=False``), vmapped. Probes are chunked with ``lax.map`` in groups
    of ``batch_size``; by default the group size is the largest whose Lanczos vectors fit in
    ``max_memory_bytes`` per device: ``(num_steps + 1) * D / n`` floats per probe with the
    basis on the device (``n`` devices of ``mesh``, 1 without), 4 vectors without a basis
    (``reorthogonalize=False``). ``offload_basis=True`` keeps each probe's basis in host
    memory (``docs/scaling.md``); its probes run one at a time (``batch_size`` must be None or
    1). ``T_m`` is diagonalised in float64 on the host. Returns the raw quadrature; use
    ``.expect(f)`` for ``(1/D) sum_i f(lambda_i)`` (exact per probe for polynomials of degree
    ``< 2 m``). ``mesh``: see :func:`lanczos` (default: the operator's or ``like``'s).

    Example:
        >>> q = slq(op, params, key=jax.random.key(0), num_probes=16, num_steps=60)
        >>> q.expect(lambda x: x) * q.dim        # trace estimate, q.stderr(...) its error
    """
    op, spec, key = _setup(matvec, like, key)
    num_probes = check_int(num_probes, "num_probes", low=1)
    num_steps = check_int(num_steps, "num_steps", low=1, high=spec.size)
    reorthogonalize = _check_bool(reorthogonalize, "reorthogonalize")
    offload_basis = _check_bool(offload_basis, "offload_basis")
    if offload_basis and not reorthogonalize:
        raise ValueError("offload_basis=True needs reorthogonalize=True (the no-basis mode "
                         "stores no basis)")
    if offload_basis and batch_size not in (None, 1):
        raise ValueError("offload_basis=True runs the probes one at a time: batch_size must "
                         f"be None or 1, got {batch_size!r}")
    layout = FlatLayout.of(spec.size, resolve_mesh(mesh, op, like))
    devices = 1 if layout.mesh is None else layout.mesh.size
    itemsize = np.dtype(spec.dtype).itemsize
    rows = probe_device_rows(num_steps, reorthogonalize, offload_basis)
    per_probe = rows * (layout.padded // devices) * itemsize
    chunk = 1 if offload_basis else _chunk(batch_size, num_probes, per_probe,
                                           max_memory_bytes)
    tol = resolve_tol(tol, spec.dtype, reorthogonalize)
    alphas, betas = _slq_jit(op, key, spec=spec, num_probes=num_probes, num_steps=num_steps,
                             reorthogonalize=reorthogonalize, tol=tol, batch_size=chunk,
                             layout=layout, offload=offload_basis)
    check_finite_result((alphas, betas), "matvec (SLQ)")
    ritz = tridiagonal_eigh(alphas, betas)
    return SpectralQuadrature(ritz.values, ritz.weights, spec.size)
