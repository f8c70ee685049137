"""The loss tolerance ``eps``: the spread of the per-batch training loss (SPEC 2.3).

:func:`shuffled_loss_tolerance` measures it as the paper does: the per-batch losses of the
trained model on **shuffled** batches of the training batch size, over a few shuffles (the
reference code uses one shuffle at batch 128), all inside one compiled program.
:func:`loss_tolerance` takes batches that are already stacked (one fixed ordering) and can
split them over a mesh: with ``mesh``, every device maps its own batches inside one
:func:`jax.shard_map`, as the data-parallel HVP does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from prune_jax.sharding import DATA_AXIS, check_axis, shard_batches
from prune_jax.tree import PyTree, check_finite, constrain, replicated_sharding
from prune_jax.validate import check_bool, check_int, check_key, check_no_explicit_mesh

__all__ = ["LossTolerance", "loss_tolerance", "shuffled_loss_tolerance"]

LossFn = Callable[[PyTree, PyTree], jax.Array]


class LossTolerance(NamedTuple):
    """Per-batch training losses and their spread (SPEC 2.3).

    Attributes:
        std: the default ``eps``: the standard deviation of the per-batch losses (for several
            shuffles, the mean over shuffles of each shuffle's standard deviation).
        mean: the mean of all per-batch losses.
        losses: ``(num_batches,)`` loss of each batch, or ``(num_shuffles, num_batches)``
            (replicated on a mesh, so every process can read it).
        spread: the standard deviation over shuffles of each shuffle's standard deviation
            (``ddof=1``; 0 for one ordering): how much ``eps`` depends on the shuffle.
    """

    std: jax.Array
    mean: jax.Array
    losses: jax.Array
    spread: jax.Array | float = 0.0


def _stats(losses: jax.Array, ddof: int) -> LossTolerance:
    return LossTolerance(jnp.std(losses, ddof=ddof), jnp.mean(losses), losses)


@functools.partial(jax.jit, static_argnames=("loss_fn", "ddof", "sharding"))
def _loss_stats(loss_fn: LossFn, params: PyTree, batches: PyTree, ddof: int,
                sharding: NamedSharding | None = None) -> LossTolerance:
    losses = lax.map(lambda batch: _batch_loss(loss_fn, params, batch), batches)
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
        return lax.map(lambda batch: _batch_loss(loss_fn, params, batch), batches)

    # manual over data_axis only: parameters sharded over the other axes (FSDP) keep their
    # layout and XLA partitions each batch's forward pass over them
    padded = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(data_axis)),
                           out_specs=P(data_axis), axis_names={data_axis})(params, batches)
    keep = jnp.nonzero(real > 0, size=num_batches)[0]  # padding batches have size 0
    losses = constrain(padded[keep], NamedSharding(mesh, P()))
    return _stats(losses, ddof)


def _leading_lengths(batches: PyTree) -> set[int]:
    return {int(jnp.shape(x)[0]) if jnp.ndim(x) else 0 for x in jax.tree.leaves(batches)}


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
    _check_loss_fn(loss_fn)
    ddof = check_int(ddof, "ddof", low=0)
    process_local = check_bool(process_local, "process_local")
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
    check_no_explicit_mesh((params, batches), "params and batches")
    if mesh is None:
        result = _loss_stats(loss_fn, params, batches, int(ddof),
                             replicated_sharding((params, batches)))
    else:
        check_axis(mesh, data_axis, "data_axis")
        placed = shard_batches(batches, mesh, data_axis, process_local=process_local)
        result = _sharded_loss_stats(loss_fn, mesh, data_axis, params, placed.batches,
                                     placed.sizes, ddof=int(ddof), num_batches=total)
    _check_finite_losses(result, params)
    return result


def _check_loss_fn(loss_fn: Any) -> None:
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable as loss_fn(params, batch) -> scalar, got "
                        f"{type(loss_fn).__name__}")


def _batch_loss(loss_fn: LossFn, params: PyTree, batch: PyTree) -> jax.Array:
    """``loss_fn(params, batch)``, checked while tracing (free on later calls)."""
    out = loss_fn(params, batch)
    if jnp.shape(out) != () or not jnp.issubdtype(jnp.result_type(out), jnp.floating):
        raise ValueError("loss_fn must return a floating scalar per batch, got "
                         f"{jnp.result_type(out)}{list(jnp.shape(out))}")
    return out


def _check_finite_losses(result: LossTolerance, params: PyTree) -> None:
    """The host reads the losses anyway: NaN/Inf there name params' bad leaf, if any."""
    if not bool(jnp.all(jnp.isfinite(result.losses))):
        check_finite(params, "params")
        raise ValueError("loss_fn returned NaN or Inf on some batch (params are finite)")


def _shuffle_stats(losses: jax.Array, ddof: int) -> LossTolerance:
    stds = jnp.std(losses, axis=1, ddof=ddof)
    spread = jnp.std(stds, ddof=1) if losses.shape[0] > 1 else jnp.zeros((), stds.dtype)
    return LossTolerance(jnp.mean(stds), jnp.mean(losses), losses, spread)


@functools.partial(jax.jit, static_argnames=("loss_fn", "batch_size", "num_shuffles",
                                             "ddof"))
def _shuffled_losses(loss_fn: LossFn, params: PyTree, examples: PyTree, key: jax.Array, *,
                     batch_size: int, num_shuffles: int, ddof: int) -> LossTolerance:
    n = jax.tree.leaves(examples)[0].shape[0]
    num_batches = n // batch_size

    def one_shuffle(k: jax.Array) -> jax.Array:
        order = jax.random.permutation(k, n)[: num_batches * batch_size]
        batches = order.reshape(num_batches, batch_size)
        return lax.map(lambda idx: _batch_loss(loss_fn, params,
                                               jax.tree.map(lambda x: x[idx], examples)),
                       batches)

    losses = lax.map(one_shuffle, jax.random.split(key, num_shuffles))
    return _shuffle_stats(losses, ddof)


def shuffled_loss_tolerance(loss_fn: LossFn, params: PyTree, examples: PyTree, *,
                            batch_size: int, key: jax.Array, num_shuffles: int = 5,
                            ddof: int = 0) -> LossTolerance:
    """``eps`` as the paper measures it: the spread of per-batch losses on shuffled batches
    (SPEC 2.3).

    For each of ``num_shuffles`` shuffles (shuffle ``j`` uses the ``j``-th key of
    ``jax.random.split(key, num_shuffles)`` and ``jax.random.permutation``), the examples are
    cut into ``N // batch_size`` batches of ``batch_size`` (the last ``N % batch_size``
    examples of the permutation are left out, a different set each shuffle) and
    ``loss_fn(params, batch)`` is evaluated on each. ``std`` is the mean over shuffles of the
    standard deviation of that shuffle's losses (``ddof=0`` matches the reference code's
    ``np.std``), and ``spread`` is their standard deviation across shuffles. One compiled
    program, with ``params`` and ``examples`` as jit arguments.

    As in the reference code, ``loss_fn`` must include the l1 term and evaluate the model in
    inference mode (no dropout, BatchNorm running statistics); this function cannot check
    either. ``batch_size`` should be the training batch size.

    Args:
        loss_fn: ``(params, batch) -> scalar``, the mean loss of one batch; hashable (a
            static jit argument: reuse the same function object).
        params: model parameters (pytree).
        examples: pytree whose leaves share a leading example axis of length ``N``.
        batch_size: examples per batch, ``1 <= batch_size <= N // 2`` (two batches at least).
        key: PRNG key of the shuffles.
        num_shuffles: number of shuffles (``>= 1``).
        ddof: delta degrees of freedom of each shuffle's standard deviation.

    Returns:
        :class:`LossTolerance` with ``losses`` of shape ``(num_shuffles, N // batch_size)``.

    Example:
        >>> mse = lambda p, b: jnp.mean((b["x"] @ p - b["y"]) ** 2)
        >>> data = {"x": jnp.ones((40, 3)), "y": jnp.arange(40.0)}
        >>> tol = shuffled_loss_tolerance(mse, jnp.zeros(3), data, batch_size=8,
        ...                               key=jax.random.key(0), num_shuffles=3)
        >>> tol.losses.shape, bool(tol.std > 0), bool(tol.spread >= 0)
        ((3, 5), True, True)
    """
    _check_loss_fn(loss_fn)
    key = check_key(key)
    lengths = {int(x.shape[0]) if jnp.ndim(x) else 0 for x in jax.tree.leaves(examples)}
    if len(lengths) != 1:
        raise ValueError("examples must be a pytree whose leaves share one leading (example) "
                         f"axis; got leading lengths {sorted(lengths)}")
    (n,) = lengths
    batch_size = check_int(batch_size, "batch_size", low=1, high=max(1, n // 2))
    num_shuffles = check_int(num_shuffles, "num_shuffles", low=1)
    ddof = check_int(ddof, "ddof", low=0, high=n // batch_size - 1)
    check_no_explicit_mesh((params, examples), "params and examples")
    result = _shuffled_losses(loss_fn, params, examples, key, batch_size=batch_size,
                              num_shuffles=num_shuffles, ddof=ddof)
    _check_finite_losses(result, params)
    return result
