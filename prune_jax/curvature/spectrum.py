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
from prune_jax.tree import Array, PyTree, on_auto_mesh

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
    """A Monte-Carlo estimate with its standard error across probes (SPEC 1.3).

    ``stderr`` is the sample standard deviation over probes divided by ``sqrt(num_probes)``
    (NaN for a single probe).
    """

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
    """Top-k Ritz pairs of one Lanczos run (SPEC 1.2, 1.3), largest first.

    Attributes:
        eigenvalues: ``(k,)`` float64 Ritz values ``theta_k``, descending.
        eigenvectors: unit Ritz vectors ``y_k`` as a pytree shaped like ``like`` with a leading
            axis ``k``.
        residuals: ``(k,)`` float64 *true* residual norms ``||H y_k - theta_k y_k||_2`` of the
            returned vectors, from ``k`` extra products with the operator: the convergence
            certificate. They are computed in the operator's dtype, so they have a rounding
            floor of about ``eps ||H||`` (``~1e-7 ||H||`` in float32).
        lanczos_residuals: ``(k,)`` float64 Lanczos estimates ``|beta_m s_{m,k}|`` (SPEC 1.2)
            from the float64 tridiagonal ``T_m``. They equal the true residuals in exact
            arithmetic but ignore rounding in the basis: a converged pair may show 0 or
            ``1e-30`` here while its true residual is at the rounding floor.
    """

    eigenvalues: np.ndarray
    eigenvectors: PyTree
    residuals: np.ndarray
    lanczos_residuals: np.ndarray


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
            >>> import numpy as np
            >>> q = SpectralQuadrature(np.array([[1.0, 3.0]]), np.array([[0.5, 0.5]]), dim=4)
            >>> q.expect(lambda x: x) * q.dim        # trace estimate
            8.0
            >>> q.expect(lambda x: x ** 2)           # (1/D) sum_i lambda_i^2
            5.0
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
    storage = (HostBasis if offload else DeviceBasis).for_steps(layout, num_steps)

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
    storage = (HostBasis if offload else DeviceBasis).for_steps(layout, num_steps)
    z, kr = _probe(key, spec.size, spec.dtype)
    return lanczos_reorth(op, layout.pad(z), kr, num_steps, tol, layout=layout,
                          storage=storage)


def _unit_pairs(matvec: Partial, vectors: Array, thetas: Array, *, spec: LikeSpec,
                layout: FlatLayout, batch_size: int) -> tuple[PyTree, Array]:
    """Normalise the flat (padded) Ritz vectors and compute ``||H y - theta y||_2`` for each.

    The ``k`` products with the operator are vmapped (chunked with ``lax.map`` when
    ``batch_size < k``); padding entries are zero in ``y`` and in ``H y``.
    """
    op = layout_operator(matvec, spec.unravel(), spec.dtype, layout)
    norms = jnp.linalg.norm(vectors, axis=-1, keepdims=True)
    vectors = layout.constrain(vectors / jnp.where(norms > 0, norms, 1).astype(vectors.dtype))

    def residual(yt: tuple[Array, Array]) -> Array:
        y, theta = yt
        return jnp.linalg.norm(op(y) - theta.astype(y.dtype) * y)

    if batch_size >= thetas.shape[0]:
        res = jax.vmap(residual)((vectors, thetas))
    else:
        res = jax.lax.map(residual, (vectors, thetas), batch_size=batch_size)
    return jax.vmap(spec.unravel())(layout.unpad(vectors)), res


@jax.jit(static_argnames=("spec", "layout", "batch_size"))
def _ritz_pairs(matvec: Partial, basis: Array, coeffs: Array, thetas: Array, *,
                spec: LikeSpec, layout: FlatLayout | None = None,
                batch_size: int = 1) -> tuple[PyTree, Array]:
    """Unit Ritz vectors ``S^T Q`` and their true residuals, from a device basis."""
    layout = _layout(spec, layout)
    vectors = jnp.matmul(coeffs.astype(basis.dtype), basis, precision=jax.lax.Precision.HIGHEST)
    return _unit_pairs(matvec, layout.constrain(vectors), thetas, spec=spec, layout=layout,
                       batch_size=batch_size)


@jax.jit(static_argnames=("spec", "layout", "batch_size"))
def _ritz_pairs_offloaded(matvec: Partial, basis: Array, coeffs: Array, thetas: Array, *,
                          spec: LikeSpec, layout: FlatLayout,
                          batch_size: int = 1) -> tuple[PyTree, Array]:
    """``S^T Q`` from a host-memory basis, one block of rows at a time (``HostBasis``), then
    as :func:`_ritz_pairs` (the residual products do not touch the host basis)."""
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
    return _unit_pairs(matvec, vectors, thetas, spec=spec, layout=layout,
                       batch_size=batch_size)


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


def _platform(layout: FlatLayout) -> str:
    """Platform (``"cpu"``, ``"gpu"``, ``"tpu"``) of the devices the Lanczos vectors live on."""
    if layout.mesh is not None:
        return str(layout.mesh.devices.flat[0].platform)
    return jax.default_backend()


def _chunk(batch_size: int | None, num_probes: int, per_probe_bytes: int,
           max_memory_bytes: int, platform: str) -> int:
    """Probes per vmapped chunk: ``batch_size``, or the default from the memory budget.

    The default on CPU is 1 (probes one after the other, no ``vmap``): XLA:CPU runs the
    batched re-orthogonalisation 1.3 to 3 times slower than the same probes in sequence
    (``benchmarks/bench_probes.py``). On accelerators it is the largest chunk that fits.
    """
    if batch_size is not None:
        return check_int(batch_size, "batch_size", low=1)
    max_memory_bytes = check_int(max_memory_bytes, "max_memory_bytes", low=1)
    if platform == "cpu":
        return 1
    return int(max(1, min(num_probes, max_memory_bytes // max(per_probe_bytes, 1))))


def probe_device_rows(num_steps: int, reorthogonalize: bool, offload_basis: bool) -> int:
    """Flat vectors of length ``D_pad / n`` one SLQ probe keeps on each device (estimate).

    The stored basis (``m + 1`` rows, padded to whole blocks: fewer extra rows than blocks)
    when it is on the device, a streamed block of it when it is offloaded to host memory,
    plus the vectors in flight (``q``, ``w``, the restart seed and its shift; 4 rows in the
    no-basis mode).
    """
    if not reorthogonalize:
        return 4
    if offload_basis:
        return offload_block_rows(num_steps) + 4
    return DeviceBasis.for_steps(FlatLayout.of(1, None), num_steps).rows(num_steps)


# --------------------------------------------------------------------------- public API

@on_auto_mesh
def top_eigenvalues(matvec: Matvec, like: PyTree, *, key: Array, k: int, num_steps: int,
                    by_magnitude: bool = False, tol: float | None = None,
                    mesh: Mesh | None = None, offload_basis: bool = False,
                    batch_size: int | None = None) -> TopEigenpairs:
    """Top-``k`` eigenpairs from one re-orthogonalised Lanczos run (SPEC 1.2, 1.3).

    Starts from a Rademacher vector drawn from ``key``; the Ritz pairs of ``T_m``
    (``m = num_steps``, ``k <= m <= D``) are ranked by algebraic value (``by_magnitude=False``,
    largest first) or by ``|theta|``. Extremal eigenvalues converge first; ``num_steps`` of a
    few times ``k`` is typical.

    Convergence: ``.residuals`` are the true residual norms ``||H y_k - theta_k y_k||_2`` of
    the returned unit Ritz vectors, from ``k`` extra products with the operator (vmapped;
    ``batch_size``, default all ``k``, chunks them with ``lax.map``, each product in flight
    holding the activations of one HVP). This is the certificate: some eigenvalue of ``H``
    lies within ``residuals[k]`` of ``theta_k``. It has a rounding floor of about
    ``eps ||H||`` in the operator's dtype. ``.lanczos_residuals`` are the Lanczos estimates
    ``|beta_m s_{m,k}|`` of SPEC 1.2 (free, from ``T_m`` in float64; they ignore rounding and
    can be 0 for a converged pair).

    ``offload_basis=True`` keeps the ``(m + 1, D)`` basis in host memory and forms the Ritz
    vectors from it block by block; ``mesh`` splits the flat vectors and the basis over the
    devices of a mesh (default: the operator's or ``like``'s mesh); see :func:`lanczos` and
    ``docs/scaling.md``.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> from jax.tree_util import Partial
        >>> op = Partial(lambda v: jnp.arange(1.0, 6.0) * v)       # diag(1, ..., 5)
        >>> top = top_eigenvalues(op, jnp.zeros(5), key=jax.random.key(0), k=2, num_steps=5)
        >>> np.round(top.eigenvalues, 4).tolist()
        [5.0, 4.0]
        >>> np.abs(np.round(np.asarray(top.eigenvectors), 4)).tolist()  # e_5, e_4
        [[0.0, 0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0, 0.0]]
        >>> bool(np.all(top.residuals < 1e-5))      # ||H y - theta y||: float32 rounding only
        True
    """
    op, spec, key = _setup(matvec, like, key)
    num_steps = check_int(num_steps, "num_steps", low=1, high=spec.size)
    k = check_int(k, "k", low=1, high=num_steps)
    _check_bool(by_magnitude, "by_magnitude")
    offload_basis = _check_bool(offload_basis, "offload_basis")
    batch_size = k if batch_size is None else check_int(batch_size, "batch_size", low=1)
    tol = resolve_tol(tol, spec.dtype, True)
    layout = FlatLayout.of(spec.size, resolve_mesh(mesh, op, like))
    alphas, betas, basis = _top_jit(op, key, spec=spec, num_steps=num_steps, tol=tol,
                                    layout=layout, offload=offload_basis)
    check_finite_result((alphas, betas), "matvec (Lanczos)")
    ritz = tridiagonal_eigh(alphas, betas)
    rank = np.abs(ritz.values) if by_magnitude else ritz.values
    order = np.argsort(-rank, kind="stable")[:k]
    coeffs = jnp.asarray(ritz.vectors[:, order].T)
    thetas = jnp.asarray(ritz.values[order], spec.dtype)
    pairs = _ritz_pairs_offloaded if offload_basis else _ritz_pairs
    vectors, residuals = pairs(op, basis, coeffs, thetas, spec=spec, layout=layout,
                               batch_size=min(batch_size, k))
    check_finite_result(residuals, "matvec (Ritz residuals)")
    return TopEigenpairs(ritz.values[order], vectors,
                         np.asarray(residuals, dtype=np.float64), ritz.residuals[order])


@on_auto_mesh
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


@on_auto_mesh
def slq(matvec: Matvec, like: PyTree, *, key: Array, num_probes: int, num_steps: int,
        reorthogonalize: bool = True, batch_size: int | None = None,
        max_memory_bytes: int = 2**30, tol: float | None = None,
        mesh: Mesh | None = None, offload_basis: bool = False) -> SpectralQuadrature:
    """Stochastic Lanczos quadrature of the spectral density of ``matvec`` (SPEC 1.2, 1.3).

    ``num_probes`` Rademacher probes, each a ``num_steps``-step Lanczos run (re-orthogonalised
    unless ``reorthogonalize=False``), vmapped. Probes are chunked with ``lax.map`` in groups
    of ``batch_size`` (``batch_size=1``: one probe after the other, no ``vmap``). By default,
    on GPU/TPU the group size is the largest whose Lanczos vectors fit in
    ``max_memory_bytes`` per device: ``(num_steps + 1) * D / n`` floats per probe with the
    basis on the device (``n`` devices of ``mesh``, 1 without), 4 vectors without a basis
    (``reorthogonalize=False``); on CPU it is 1, because XLA:CPU runs batched probes slower
    than sequential ones (``benchmarks/RESULTS.md``, bench_probes). ``offload_basis=True``
    keeps each probe's basis in host memory (``docs/scaling.md``); its probes run one at a
    time (``batch_size`` must be None or 1). ``T_m`` is diagonalised in float64 on the host.
    Returns the raw quadrature; use ``.expect(f)`` for ``(1/D) sum_i f(lambda_i)`` (exact per
    probe for polynomials of degree ``< 2 m``). ``mesh``: see :func:`lanczos` (default: the
    operator's or ``like``'s).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from jax.tree_util import Partial
        >>> op = Partial(lambda v: jnp.arange(1.0, 6.0) * v)       # diag(1, ..., 5)
        >>> q = slq(op, jnp.zeros(5), key=jax.random.key(0), num_probes=4, num_steps=5)
        >>> q.nodes.shape, q.weights.shape
        ((4, 5), (4, 5))
        >>> round(q.expect(lambda x: x) * q.dim, 4)         # trace (q.stderr(f): its error)
        15.0
        >>> round(q.expect(lambda x: x ** 2) * q.dim, 3)    # ||H||_F^2 = 1 + 4 + ... + 25
        55.0
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
                                           max_memory_bytes, _platform(layout))
    tol = resolve_tol(tol, spec.dtype, reorthogonalize)
    alphas, betas = _slq_jit(op, key, spec=spec, num_probes=num_probes, num_steps=num_steps,
                             reorthogonalize=reorthogonalize, tol=tol, batch_size=chunk,
                             layout=layout, offload=offload_basis)
    check_finite_result((alphas, betas), "matvec (SLQ)")
    ritz = tridiagonal_eigh(alphas, betas)
    return SpectralQuadrature(ritz.values, ritz.weights, spec.size)
