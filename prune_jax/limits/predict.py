"""Loss tolerance and the predicted pruning limit (SPEC section 2.3).

:func:`loss_tolerance` runs the caller's loss over a stack of batches in one compiled
``lax.map``; with a ``mesh``, the batches are split over its data axis and every device maps
its own batches (one :func:`jax.shard_map`, as the data-parallel HVP does).
:func:`predict_sparsity_limit` solves ``s = F(R(s))`` exactly: one sort of the prunable
magnitudes, float64 block sums of their squares, and an integer bisection on the number of
pruned weights. The sort runs on the host (numpy; XLA's CPU sort is ~60x slower than numpy's
for 25M floats) when every prunable leaf is readable by this process, else (multi-host
arrays, or ``sort="device"``) as one jitted global sort whose sharding XLA handles; the
comparison ``k / D_p`` vs ``F`` is in float64 either way (needed once ``D_p > 1e7``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from prune_jax.limits.width import _as_quadrature, _check_positive, _fraction, _Quadrature
from prune_jax.sharding import DATA_AXIS, check_axis, shard_batches
from prune_jax.tree import (
    PyTree,
    check_finite,
    check_floating,
    constrain,
    fully_addressable,
    on_auto_mesh,
    prunable_leaves,
    replicated_sharding,
)

__all__ = ["LossTolerance", "SparsityLimit", "loss_tolerance", "predict_sparsity_limit"]

LossFn = Callable[[PyTree, PyTree], jax.Array]
SortOn = Literal["auto", "host", "device"]


class LossTolerance(NamedTuple):
    """Per-batch training losses and their spread (SPEC 2.3).

    Attributes:
        std: standard deviation of ``losses`` (the default ``eps``).
        mean: their mean.
        losses: ``(num_batches,)`` loss of each batch (replicated on a mesh, so every
            process can read it).
    """

    std: jax.Array
    mean: jax.Array
    losses: jax.Array


class SparsityLimit(NamedTuple):
    """Solution of ``s = F(R(s))`` (SPEC 2.3) and the curves behind it.

    Attributes:
        sparsity: predicted maximal sparsity ``s*`` (fraction of prunable weights removed).
        density: minimal density ``1 - s*`` (fraction kept).
        distance: ``R(s*)``, l2 norm of the ``num_pruned`` smallest prunable weights.
        num_pruned: ``floor(s* D_p)``.
        num_prunable: ``D_p``.
        eps: the loss tolerance used.
        curve_sparsity: sparsity grid ``linspace(0, 1, num_curve)``.
        curve_width_fraction: ``F(R(s))`` on that grid (the right-hand side).
    """

    sparsity: float
    density: float
    distance: float
    num_pruned: int
    num_prunable: int
    eps: float
    curve_sparsity: np.ndarray
    curve_width_fraction: np.ndarray


# --------------------------------------------------------------------------- loss tolerance

def _stats(losses: jax.Array, ddof: int) -> LossTolerance:
    return LossTolerance(jnp.std(losses, ddof=ddof), jnp.mean(losses), losses)


@functools.partial(jax.jit, static_argnames=("loss_fn", "ddof", "sharding"))
def _loss_stats(loss_fn: LossFn, params: PyTree, batches: PyTree, ddof: int,
                sharding: NamedSharding | None = None) -> LossTolerance:
    losses = lax.map(lambda batch: loss_fn(params, batch), batches)
    if sharding is not None:  # multi-host inputs: a result every process can read
        losses = constrain(losses, sharding)
    return _stats(losses, ddof)


@functools.partial(jax.jit, static_argnames=("loss_fn", "mesh", "data_axis", "ddof",
                                             "num_batches"))
def _sharded_loss_stats(loss_fn: LossFn, mesh: Mesh, data_axis: str, params: PyTree,
                        batches: PyTree, real: jax.Array, *, ddof: int,
                        num_batches: int) -> LossTolerance:
    """Every device ``lax.map``s its own batches; the real (non-padding) losses, replicated."""

    def local(params: PyTree, batches: PyTree) -> jax.Array:
        return lax.map(lambda batch: loss_fn(params, batch), batches)

    # manual over data_axis only: parameters sharded over the other axes (FSDP) keep their
    # layout and XLA partitions each batch's forward pass over them
    padded = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(data_axis)),
                           out_specs=P(data_axis), axis_names={data_axis})(params, batches)
    keep = jnp.nonzero(real > 0, size=num_batches)[0]  # padding batches have size 0
    losses = constrain(padded[keep], NamedSharding(mesh, P()))
    return _stats(losses, ddof)


def _leading_lengths(batches: PyTree) -> set[int]:
    return {int(jnp.shape(x)[0]) if jnp.ndim(x) else 0 for x in jax.tree.leaves(batches)}


@on_auto_mesh
def loss_tolerance(loss_fn: LossFn, params: PyTree, batches: PyTree, *, ddof: int = 0,
                   mesh: Mesh | None = None, data_axis: str = DATA_AXIS,
                   process_local: bool = False) -> LossTolerance:
    """Default loss tolerance ``eps``: std of the per-batch training loss (SPEC 2.3).

    ``loss_fn(params, batch) -> scalar`` is evaluated on every slice of ``batches`` along
    its leading axis, inside one jitted ``lax.map`` with ``params`` and ``batches`` as jit
    arguments. As in the reference code, the caller's ``loss_fn`` must include the l1 term
    (it shifts the mean, not the spread) and evaluate the model in inference mode (no
    dropout, BatchNorm running statistics); this function cannot check either. ``ddof=0``
    matches the reference's ``np.std``.

    Beyond one device (``docs/scaling.md``): without ``mesh``, sharded ``params`` (e.g.
    :func:`prune_jax.sharding.shard_params`) and batches are laid out by ``jit``'s sharding
    propagation. With ``mesh``, the batches are split over its axis ``data_axis`` (whole
    batches per device, by :func:`prune_jax.sharding.shard_batches`: padded to a multiple
    of the axis size with copies of the first batch, whose losses are dropped), every device
    maps its own batches inside one :func:`jax.shard_map` that is manual over ``data_axis``
    only (``params`` may stay sharded over the other axes), and the per-batch losses are
    gathered (``num_batches`` numbers, replicated). ``process_local=True`` (multi-host,
    after :func:`jax.distributed.initialize`): each process passes only its own batches,
    the same number in every process; ``losses`` then lists them in process order. The
    results equal the one-device results up to floating-point summation order.

    Args:
        loss_fn: ``(params, batch) -> scalar`` loss, hashable (it is a static jit argument).
        params: model parameters (pytree).
        batches: pytree whose leaves share a leading axis of length ``num_batches >= 2``
            (with ``process_local=True``: this process's batches, ``>= 2`` in total).
        ddof: delta degrees of freedom of the standard deviation.
        mesh: optional :class:`jax.sharding.Mesh` to split the batches over.
        data_axis: the mesh axis the batches are split over (with ``mesh``).
        process_local: each process passes only its own batches (with ``mesh``).

    Returns:
        :class:`LossTolerance` with ``std``, ``mean`` and the per-batch ``losses``.

    Example:
        >>> mse = lambda p, b: jnp.mean((b["x"] @ p - b["y"]) ** 2)
        >>> xs, ys = jnp.ones((4, 8, 3)), jnp.arange(32.0).reshape(4, 8)  # 4 batches of 8
        >>> tol = loss_tolerance(mse, jnp.zeros(3), {"x": xs, "y": ys})
        >>> tol.losses.shape, round(float(tol.std), 1)
        ((4,), 284.6)
        >>> mesh = pj.sharding.make_mesh()                  # every device on "data"
        >>> round(float(loss_tolerance(mse, jnp.zeros(3), {"x": xs, "y": ys}, mesh=mesh).std), 1)
        284.6
    """
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    if isinstance(ddof, bool) or not isinstance(ddof, int | np.integer) or ddof < 0:
        raise ValueError(f"ddof must be an int >= 0, got {ddof!r}")
    if not isinstance(process_local, bool):
        raise TypeError(f"process_local must be a bool, got {type(process_local).__name__}")
    if mesh is not None and not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh or None (e.g. prune_jax.sharding."
                        f"make_mesh()), got {type(mesh).__name__}")
    if process_local and mesh is None:
        raise ValueError("process_local=True needs a mesh (the global mesh of every process)")
    lengths = _leading_lengths(batches)
    local_min = 1 if process_local else 2
    if len(lengths) != 1 or min(lengths) < local_min:
        raise ValueError("batches must be a pytree whose leaves share one leading (batch) "
                         f"axis of length >= {local_min}; got leading lengths "
                         f"{sorted(lengths)}")
    (num,) = lengths
    total = num * jax.process_count() if process_local else num
    if total < 2:
        raise ValueError(f"batches must hold >= 2 batches in total, got {total}")
    check_finite(params, "params")
    out = jax.eval_shape(lambda p, b: loss_fn(p, jax.tree.map(lambda x: x[0], b)),
                         params, batches)
    if not hasattr(out, "shape") or out.shape != () or not jnp.issubdtype(out.dtype,
                                                                          jnp.floating):
        raise ValueError(f"loss_fn must return a floating scalar per batch, got {out}")
    if mesh is None:
        result = _loss_stats(loss_fn, params, batches, int(ddof),
                             replicated_sharding((params, batches)))
    else:
        check_axis(mesh, data_axis, "data_axis")
        placed = shard_batches(batches, mesh, data_axis, process_local=process_local)
        result = _sharded_loss_stats(loss_fn, mesh, data_axis, params, placed.batches,
                                     placed.sizes, ddof=int(ddof), num_batches=total)
    if not bool(jnp.all(jnp.isfinite(result.losses))):
        raise ValueError("loss_fn returned NaN or Inf on some batch")
    return result


# --------------------------------------------------------------------------- limit solver

class _SortedSquares(NamedTuple):
    """Sorted prunable magnitudes and float64 prefix sums of their squares per block.

    Host (numpy) arrays after the host sort; :class:`jax.Array` after the device sort (then
    ``mags`` may be sharded or replicated as XLA chose; ``block_cum`` is small).
    """

    mags: np.ndarray | jax.Array       # (D_p,) ascending |w|, float32 (float64 for float64)
    block_cum: np.ndarray | jax.Array  # (D_p // _BLOCK + 1,) sum of squares before each block
    top: float                         # the largest magnitude (NaN/Inf sort last)
    sharding: NamedSharding | None = None  # replicated sharding for device results (multi-host)


_BLOCK = 2048


def _mags_dtype(leaves: list[Any]) -> Any:
    return np.float32 if max(np.dtype(x.dtype).itemsize for x in leaves) <= 4 else np.float64


def _sorted_squares(leaves: list[Any]) -> _SortedSquares:
    """One host sort of the prunable magnitudes (no float64 copy of all ``D_p`` of them)."""
    arrays = [np.asarray(x) for x in leaves]
    dtype = _mags_dtype(arrays)
    mags = np.empty(sum(a.size for a in arrays), dtype)
    start = 0
    for a in arrays:
        np.abs(a.reshape(-1).astype(dtype, copy=False), out=mags[start:start + a.size])
        start += a.size
    mags.sort()
    full = mags[: mags.size - mags.size % _BLOCK].reshape(-1, _BLOCK)
    per_block = np.einsum("ij,ij->i", full, full, dtype=np.float64)
    return _SortedSquares(mags, np.concatenate([[0.0], np.cumsum(per_block)]),
                          float(mags[-1]))


@functools.partial(jax.jit, static_argnames=("sharding",))
def _sorted_squares_jit(leaves: list[jax.Array], sharding: NamedSharding | None
                        ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The device twin of :func:`_sorted_squares` (traced with 64-bit types enabled).

    One global ``jnp.sort`` of the concatenated magnitudes of (possibly sharded) leaves: XLA's
    SPMD partitioner lays the sort out (it gathers the ``D_p`` magnitudes onto every device
    of the mesh, the memory of one copy per device). The block sums are float64.
    """
    dtype = _mags_dtype(leaves)
    mags = jnp.sort(jnp.concatenate([jnp.abs(jnp.ravel(x).astype(dtype)) for x in leaves]))
    n = mags.shape[0]
    full = mags[: n - n % _BLOCK].reshape(-1, _BLOCK).astype(jnp.float64)
    block_cum = jnp.concatenate([jnp.zeros((1,), jnp.float64),
                                 jnp.cumsum(jnp.sum(full * full, axis=1))])
    top = mags[-1]
    if sharding is not None:  # small results that every process must read
        block_cum = constrain(block_cum, sharding)
        top = constrain(top, sharding)
    return mags, block_cum, top


def _sorted_squares_device(leaves: list[jax.Array]) -> _SortedSquares:
    sharding = replicated_sharding(leaves)
    with jax.enable_x64(True):
        mags, block_cum, top = _sorted_squares_jit([jnp.asarray(x) for x in leaves], sharding)
        return _SortedSquares(mags, block_cum, float(top), sharding)


@functools.partial(jax.jit, static_argnames=("sharding",))
def _radius_jit(mags: jax.Array, block_cum: jax.Array, k: jax.Array,
                sharding: NamedSharding | None) -> jax.Array:
    """:func:`_radius` on the device (64-bit types enabled): ``len(k) * _BLOCK`` gathers."""
    block = k // _BLOCK
    idx = block[..., None] * _BLOCK + jnp.arange(_BLOCK)
    part = mags[jnp.minimum(idx, mags.shape[0] - 1)].astype(jnp.float64)
    tail = jnp.where(idx < k[..., None], part, 0.0)
    out = jnp.sqrt(block_cum[block] + jnp.sum(tail * tail, axis=-1))
    return out if sharding is None else constrain(out, sharding)


def _radius(sq: _SortedSquares, k: np.ndarray) -> np.ndarray:
    """``R_k`` = l2 norm of the ``k`` smallest magnitudes, for integer arrays ``k``."""
    if not isinstance(sq.mags, np.ndarray):
        with jax.enable_x64(True):
            out = _radius_jit(sq.mags, sq.block_cum, np.asarray(k, np.int64), sq.sharding)
            return np.asarray(out, np.float64)
    block = k // _BLOCK
    idx = block[..., None] * _BLOCK + np.arange(_BLOCK)
    tail = np.where(idx < k[..., None], sq.mags[np.minimum(idx, sq.mags.size - 1)], 0.0)
    return np.sqrt(sq.block_cum[block] + np.sum(np.square(tail, dtype=np.float64), axis=-1))


def _width_at(quad: _Quadrature, sq: _SortedSquares, k: np.ndarray, eps: float) -> np.ndarray:
    """``F(R_k)`` for integer counts ``k``."""
    return _fraction(quad, _radius(sq, k), eps)


def _crossing(quad: _Quadrature, sq: _SortedSquares, eps: float,
              grid_k: np.ndarray, grid_f: np.ndarray) -> tuple[int, float]:
    """Smallest ``k`` with ``g(k) = k / D_p - F(R_k) >= 0``, and ``F(R_{k-1})``.

    ``g`` is strictly increasing, ``g(0) = -1`` and ``g(D_p) >= 0``; the curve values
    bracket the root and an integer bisection narrows the bracket to one step.
    """
    n = int(sq.mags.size)
    first = int(np.argmax(grid_k / n - grid_f >= 0))   # exists: g(D_p) = 1 - F >= 0
    lo, hi, f_lo = int(grid_k[first - 1]), int(grid_k[first]), float(grid_f[first - 1])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        f_mid = float(_width_at(quad, sq, np.array(mid), eps))
        if mid / n - f_mid >= 0:
            hi = mid
        else:
            lo, f_lo = mid, f_mid
    return hi, f_lo


@on_auto_mesh
def predict_sparsity_limit(params: PyTree, spectrum: Any, eps: float, *,
                           prunable: Any = None, zero_mass: float = 0.0,
                           num_curve: int = 512, sort: SortOn = "auto") -> SparsityLimit:
    """Predicted maximal sparsity ``s*`` solving ``s = F(R(s))`` (SPEC 2.3).

    ``R(s)`` is the l2 norm of the ``floor(s D_p)`` smallest-magnitude prunable weights (what
    global one-shot magnitude pruning to sparsity ``s`` removes) and ``F`` is
    :func:`projected_width_fraction` of ``spectrum`` (with ``zero_mass``). The left side
    increases and ``F(R(s))`` does not, so the crossing is unique. It is found exactly: with
    ``R_k`` from the sorted cumulative squares, ``g(k) = k/D_p - F(R_k)`` is strictly
    increasing and integer bisection gives the smallest ``k*`` with ``g(k*) >= 0``. On
    ``[(k*-1)/D_p, k*/D_p)`` the right side is the constant ``F(R_{k*-1}) > (k*-1)/D_p``, so

    ``s* = min(F(R_{k*-1}), k*/D_p)``:

    the exact solution inside that step when ``F(R_{k*-1}) < k*/D_p``, else the step edge
    ``k*/D_p`` where the right side jumps below the diagonal.

    Sharded and multi-host parameters (``docs/scaling.md``): ``sort="auto"`` sorts on the host
    (numpy) when this process can read every prunable leaf (one process, any sharding: the
    leaves are gathered to host memory), and otherwise (leaves spanning the devices of
    several processes) with ``sort="device"``: one jitted global sort and float64 block sums
    under ``jit``, laid out by XLA over the leaves' mesh; each ``R_k`` is then a small jitted
    gather whose replicated result every process reads, so every process gets the same
    :class:`SparsityLimit`. Both give the same result up to the float64 summation order.

    Args:
        params: model parameters (pytree); its prunable leaves must be finite and floating
            (the other leaves are not read).
        spectrum: Hessian eigenvalues (array) or an SLQ result with ``.nodes``/``.weights``.
        eps: loss tolerance ``> 0`` (e.g. ``loss_tolerance(...).std``).
        prunable: which leaves are prunable (see :func:`prune_jax.tree.prunable_tree`);
            default: Dense/Conv kernels.
        zero_mass: fraction in ``[0, 1]`` of eigenvalues treated as exact zeros.
        num_curve: points of the plotting curves (``>= 2``).
        sort: where the magnitudes are sorted: ``"host"`` (numpy; the fastest on CPU),
            ``"device"`` (jitted, on the leaves' devices; for accelerators and arrays that
            this process cannot read), or ``"auto"`` (host when every prunable leaf is
            readable here, else device).

    Returns:
        :class:`SparsityLimit`.

    Example:
        >>> params = {"Dense_0": {"kernel": jnp.array([[0.1, -0.2], [0.3, 2.0]])}}
        >>> lim = predict_sparsity_limit(params, jnp.array([0.0, 1.0, 4.0, 9.0]), eps=0.05)
        >>> round(lim.sparsity, 4), lim.num_pruned   # F(R_2) = 0.5455 < 3/4: inside the step
        (0.5455, 2)
    """
    eps = _check_positive(eps, "eps")
    quad = _as_quadrature(spectrum, zero_mass)
    if isinstance(num_curve, bool) or int(num_curve) != num_curve or num_curve < 2:
        raise ValueError(f"num_curve must be an integer >= 2, got {num_curve!r}")
    if sort not in ("auto", "host", "device"):
        raise ValueError(f"sort must be 'auto', 'host' or 'device', got {sort!r}")
    leaves = prunable_leaves(params, prunable)
    check_floating(leaves, "params")
    n = sum(int(np.prod(np.shape(x), dtype=np.int64)) for x in leaves)
    if n == 0:
        raise ValueError("params has no prunable weights (all prunable leaves are empty)")
    readable = fully_addressable(leaves)
    if sort == "host" and not readable:
        raise ValueError("sort='host' needs prunable leaves that this process can read; these "
                         "span the devices of other processes: use sort='auto' or 'device'")
    on_host = sort == "host" or (sort == "auto" and readable)
    sq = _sorted_squares(leaves) if on_host else _sorted_squares_device(leaves)
    if not np.isfinite(sq.top):  # NaN sorts last and Inf is the maximum
        check_finite(params, "params")
    if not np.isfinite(_radius(sq, np.array(n))):
        raise ValueError("params: the l2 norm of the prunable weights overflows float64")
    curve_s = np.linspace(0.0, 1.0, int(num_curve))
    grid_k = np.minimum(np.floor(curve_s * n).astype(np.int64), n)
    grid_f = _width_at(quad, sq, grid_k, eps)
    k_star, f_before = _crossing(quad, sq, eps, grid_k, grid_f)
    sparsity = min(f_before, k_star / n)
    pruned = k_star - 1 if f_before < k_star / n else k_star
    return SparsityLimit(
        sparsity=float(sparsity), density=float(1.0 - sparsity),
        distance=float(_radius(sq, np.array(pruned))), num_pruned=int(pruned), num_prunable=int(n),
        eps=eps, curve_sparsity=curve_s, curve_width_fraction=grid_f)
