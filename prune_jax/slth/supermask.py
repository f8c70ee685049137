"""ILLUSTRATION ONLY: a practical gradient supermask search (edge-popup style; SPEC 4).

Scores ``z`` per unit (neuron masks) or per hidden and output weight (weight masks). The
forward pass uses the hard mask ``1[z > 0]`` (or the top ``density`` fraction of scores); the
backward pass is straight-through (``m = hard(z) + z - stop_gradient(z)``). The loss is the
mean squared error on fresh sphere samples, optimised with optax. With the output ReLU it acts
on the pre-activation ``h`` (``(f - h)^2`` where ``f > 0``, ``relu(h)^2`` elsewhere: equal to
``(f - relu(h))^2`` except where ``f > 0 > h``), because a dead output ReLU has no gradient.

It GUARANTEES nothing about the best mask: its masks are feasible (achievable errors), but
typically far above the subset-sum construction.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from prune_jax.slth.networks import Net, Pool, WeightMask, forward, residual
from prune_jax.tree import Array
from prune_jax.validate import check_int, check_positive, check_real, check_shape

__all__ = ["SupermaskResult", "SupermaskSearch", "train_supermask"]


@dataclasses.dataclass(frozen=True)
class SupermaskSearch:
    """Options: ``per_weight`` (weight masks) or neuron masks; ``density`` = fraction KEPT
    (top-k of the scores, as edge-popup) or None (keep positive scores)."""

    per_weight: bool = True
    output_relu: bool = True
    steps: int = 2000
    learning_rate: float = 0.01
    batch_size: int = 256
    density: float | None = None
    init_scale: float = 0.01

    def __post_init__(self) -> None:
        check_int(self.steps, "steps", low=1)
        check_int(self.batch_size, "batch_size", low=1)
        check_positive(self.learning_rate, "learning_rate")
        check_positive(self.init_scale, "init_scale")
        if self.density is not None and not 0.0 < check_real(self.density, "density") < 1.0:
            raise ValueError(f"density must lie in (0, 1), got {self.density}")


class SupermaskResult(NamedTuple):
    """The final hard mask (a :class:`WeightMask`; neuron masks repeat per row) and the losses."""

    mask: WeightMask
    losses: Array


def _hard(z: Array, density: float | None) -> Array:
    if density is None:
        return (z > 0).astype(z.dtype)
    k = max(1, round(density * z.size))
    threshold = jax.lax.top_k(z.ravel(), k)[0][-1]
    return (z >= threshold).astype(z.dtype)


def _masks(scores: dict[str, Array], density: float | None,
           straight_through: bool) -> dict[str, Array]:
    hard = jax.tree.map(lambda z: _hard(z, density), scores)
    if not straight_through:
        return hard
    return jax.tree.map(lambda h, z: h + z - jax.lax.stop_gradient(z), hard, scores)


@partial(jax.jit, static_argnames="search")
def _train(key: Array, w_star: Array, pool: Pool, search: SupermaskSearch
           ) -> tuple[dict[str, Array], Array]:
    n, d = pool.w.shape
    key, k_hidden, k_out = jax.random.split(key, 3)
    init = lambda k, shape: search.init_scale * jax.random.uniform(k, shape, pool.w.dtype, -1, 1)
    scores = ({"hidden": init(k_hidden, (n, d)), "output": init(k_out, (n,))}
              if search.per_weight else {"unit": init(k_out, (n,))})
    optimizer = optax.adam(search.learning_rate)

    def loss_fn(scores: dict[str, Array], x: Array) -> Array:
        m = _masks(scores, search.density, straight_through=True)
        net = (Net(pool.w, m["unit"] * pool.alpha) if "unit" in m else  # neuron mask
               Net(m["hidden"] * pool.w, m["output"] * pool.alpha))
        if not search.output_relu:
            return jnp.mean(residual(w_star, net, x) ** 2)
        f, h = jax.nn.relu(x @ w_star), forward(net, x)
        return jnp.mean(jnp.where(f > 0, (f - h) ** 2, jax.nn.relu(h) ** 2))

    def step(carry: tuple[dict[str, Array], optax.OptState], k: Array
             ) -> tuple[tuple[dict[str, Array], optax.OptState], Array]:
        scores, state = carry
        x = jax.random.normal(k, (search.batch_size, d), pool.w.dtype)
        x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
        loss, grads = jax.value_and_grad(loss_fn)(scores, x)
        updates, state = optimizer.update(grads, state, scores)
        return (optax.apply_updates(scores, updates), state), loss

    (scores, _), losses = jax.lax.scan(step, (scores, optimizer.init(scores)),
                                       jax.random.split(key, search.steps))
    return _masks(scores, search.density, straight_through=False), losses


def train_supermask(key: Array, w_star: Array, pool: Pool,
                    search: SupermaskSearch = SupermaskSearch()) -> SupermaskResult:
    """Edge-popup style supermask search over ``pool`` (ILLUSTRATION; guarantees nothing): the
    hard mask (evaluate it with ``weight_net`` and :func:`~prune_jax.slth.supnorm.sup_error`)
    and the training losses (steps,)."""
    check_shape(w_star, (None,), "w_star")
    check_shape(pool.w, (None, jnp.shape(w_star)[0]), "pool.w")
    check_shape(pool.alpha, (pool.w.shape[0],), "pool.alpha")
    masks, losses = _train(key, jnp.asarray(w_star, pool.w.dtype), pool, search)
    if "unit" in masks:
        unit = masks["unit"].astype(bool)
        mask = WeightMask(jnp.broadcast_to(unit[:, None], pool.w.shape), unit)
    else:
        mask = WeightMask(masks["hidden"].astype(bool), masks["output"].astype(bool))
    return SupermaskResult(mask, losses)
