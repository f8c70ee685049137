"""One pruning step of SAP, One Shot and Lottery Ticket, and the policies naming them (SPEC 3.2).

This is the *prune* half of iterative pruning: pure functions from ``(params, mask)`` to a
smaller mask plus per-unit diagnostics. The driver (``prune_jax.experiments``) calls
:func:`prune_step` once per iteration and reads from the policy which weights rank the
pruning, whether to retrain and where to rewind (seed paper, sections 3.2 and 4.1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import numpy as np

from prune_jax.ranking import remove_smallest, unit_sizes, unit_view
from prune_jax.sparsity.masks import SCOPES, Scope, floor_count, prunable_leaves
from prune_jax.sparsity.measures import check_pq, power_sums, pq_bound
from prune_jax.tree import Prunable, PyTree
from prune_jax.validate import check_choice, check_fraction, check_positive

__all__ = ["SAP", "LotteryTicket", "OneShot", "Policy", "PruneStepResult", "UnitStats",
           "fraction_step", "prune_step", "sap_step"]


class UnitStats(NamedTuple):
    """Per scope unit (numpy): ``d`` live weights before the step, ``pqi`` their PQ Index and
    ``r`` eq. 2's bound (NaN if all are zero), ``c`` weights removed (SPEC 3.2)."""

    d: np.ndarray
    pqi: np.ndarray
    r: np.ndarray
    c: np.ndarray


class PruneStepResult(NamedTuple):
    """The new keep-mask (it only shrinks) and ``units``: :class:`UnitStats` per prunable leaf
    name (``"Dense_0/kernel"``), or under ``"global"`` scope the single key ``"global"``."""

    mask: PyTree
    units: dict[str, UnitStats]


def _step(params: PyTree, mask: PyTree | None, *, scope: Scope, prunable: Prunable | PyTree | None,
          p: float, q: float, eta: float,
          removed: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> PruneStepResult:
    """Per-unit float64 power sums and counts, then the selection. ``removed(d, r)``: how many
    live weights each unit loses, from its live count ``d`` and eq. 2's bound ``r``."""
    check_choice(scope, "scope", SCOPES)
    part = prunable_leaves(params, prunable, mask)
    sums = power_sums(part.leaves, part.live, p=p, q=q, scope=scope, wide=True)
    pqi, r = pq_bound(sums, p=p, q=q, eta=eta)
    d = np.asarray(sums.d, np.int64)
    c = np.clip(removed(d.astype(np.float64), r), 0, d)
    sizes = unit_sizes([np.shape(x) for x in part.leaves], scope)
    kept = [~x for x in remove_smallest(part.leaves, sizes - d + c, scope=scope,
                                        live=part.live)]
    stats = UnitStats(d=d, pqi=pqi, r=r, c=c)
    if scope == "global":
        units = {"global": stats}
    else:
        ends = np.cumsum([unit_view(x, scope).shape[1] for x in part.leaves])[:-1]
        units = {name: UnitStats(*u) for name, *u in zip(
            part.names, *(np.split(v, ends) for v in stats), strict=True)}
    return PruneStepResult(mask=part.merge(kept), units=units)


def _check_sap(p: Any, q: Any, eta: Any, gamma: Any, beta: Any) -> tuple[float, ...]:
    p, q = check_pq(p, q)
    eta, gamma = check_positive(eta, "eta", allow_zero=True), check_positive(gamma, "gamma")
    beta = check_positive(beta, "beta")
    if beta > 1:
        raise ValueError(f"beta must be in (0, 1], got {beta}")
    return p, q, eta, gamma, beta


def sap_step(params: PyTree, mask: PyTree | None, *, p: float = 0.5, q: float = 1.0,
             eta: float = 0.0, gamma: float = 1.0, beta: float = 0.9,
             scope: Scope = "global",
             prunable: Prunable | PyTree | None = None) -> PruneStepResult:
    """One step of Sparsity-informed Adaptive Pruning (SPEC 3.2, seed Algorithm 1).

    Every scope unit with ``d_t`` live weights loses its
    ``c_t = floor(d_t * min(gamma (1 - r_t/d_t), beta))`` smallest live weights, where
    ``r_t = d_t (1 + eta)^(-q/(q-p)) (1 - I)^(qp/(q-p))`` (eq. 2) and ``I`` is the PQ Index of
    the live weights (float64; a unit without a non-zero live weight is left unchanged).

    Args:
      params: trained weights ``w_t`` (floating pytree; NaN/Inf is a ValueError).
      mask: current keep-mask ``m_t`` (booleans shaped like params; None = all live).
      p, q: PQ Index exponents (``0 < p <= 1 <= q``, ``p < q``); paper: (0.5, 1) or (1, 2).
      eta: ``>= 0``; gamma: ``> 0``; beta: the most of the live weights removed per step, in
        ``(0, 1]`` (paper: 0, 1, 0.9).
      scope, prunable: as in :func:`prune_jax.magnitude_mask`.

    Returns:
      :class:`PruneStepResult`: ``mask = m_{t+1}`` and per-unit ``d, pqi, r, c``.

    Example:
      A one-hot kernel (``d = 8``) has ``I = 0.875``, ``r = 1``: ``c = 7``; a constant, ``c = 0``.

      >>> kernel = jnp.zeros((2, 4)).at[1, 2].set(5.0)
      >>> result = pj.sap_step({"Dense_0": {"kernel": kernel}}, None)
      >>> stats = result.units["global"]
      >>> stats.d.tolist(), stats.pqi.round(4).tolist(), stats.r.round(4).tolist(), stats.c.tolist()
      ([8], [0.875], [1.0], [7])
      >>> np.asarray(result.mask["Dense_0"]["kernel"]).tolist()
      [[False, False, False, False], [False, False, True, False]]
      >>> pj.sap_step({"Dense_0": {"kernel": jnp.ones((2, 4))}}, None).units["global"].c.tolist()
      [0]
    """
    p, q, eta, gamma, beta = _check_sap(p, q, eta, gamma, beta)
    return _step(params, mask, scope=scope, prunable=prunable, p=p, q=q, eta=eta,
                 removed=lambda d, r: floor_count(
                     np.minimum(gamma * (d - np.where(np.isnan(r), d, r)), beta * d)))


def fraction_step(params: PyTree, mask: PyTree | None, *, fraction: float = 0.2,
                  scope: Scope = "global", prunable: Prunable | PyTree | None = None,
                  p: float = 0.5, q: float = 1.0) -> PruneStepResult:
    """Prune ``floor(fraction * d_t)`` smallest live weights per unit (One Shot / LT step).

    ``fraction`` (paper: ``P = 0.2``) applies to the *remaining* weights, so after ``t`` steps
    a unit keeps about ``(1 - fraction)^t``. ``params`` are the weights that rank the pruning
    (``w_t`` for Lottery Ticket, ``w_0`` for One Shot); ``mask``, ``scope``, ``prunable`` as
    in :func:`sap_step`; ``p, q`` only choose the PQ Index reported in the diagnostics.

    Example:
      >>> params = {"Dense_0": {"kernel": jnp.arange(1.0, 11.0).reshape(2, 5)}}
      >>> first = pj.fraction_step(params, None, fraction=0.2)
      >>> first.units["global"].c.tolist()
      [2]
      >>> np.asarray(first.mask["Dense_0"]["kernel"]).tolist()
      [[False, False, True, True, True], [True, True, True, True, True]]
      >>> second = pj.fraction_step(params, first.mask, fraction=0.2)
      >>> second.units["global"].c.tolist(), int(second.mask["Dense_0"]["kernel"].sum())
      ([1], 7)
    """
    fraction = check_fraction(fraction, "fraction")
    p, q = check_pq(p, q)
    return _step(params, mask, scope=scope, prunable=prunable, p=p, q=q, eta=0.0,
                 removed=lambda d, r: floor_count(fraction * d))


def _fixed(value: Any) -> Any:   # a policy attribute that is not an argument
    return dataclasses.field(default=value, init=False)


@dataclasses.dataclass(frozen=True)
class SAP:
    """Sparsity-informed Adaptive Pruning (SPEC 3.2): :func:`sap_step` with these parameters
    (defaults: the paper's); ranks ``w_t``, retrains and rewinds to ``w_init * m_t``."""

    p: float = 0.5
    q: float = 1.0
    eta: float = 0.0
    gamma: float = 1.0
    beta: float = 0.9
    ranks: Literal["current", "dense"] = _fixed("current")
    retrain: bool = _fixed(True)
    rewind: Literal["init"] | None = _fixed("init")

    def __post_init__(self) -> None:
        _check_sap(self.p, self.q, self.eta, self.gamma, self.beta)


@dataclasses.dataclass(frozen=True)
class LotteryTicket:
    """Lottery Ticket (Frankle & Carbin), SPEC 3.2: prune ``fraction`` of the remaining weights
    of ``w_t`` (:func:`fraction_step`), rewind to ``w_init * m_{t+1}`` and retrain."""

    fraction: float = 0.2
    ranks: Literal["current", "dense"] = _fixed("current")
    retrain: bool = _fixed(True)
    rewind: Literal["init"] | None = _fixed("init")

    def __post_init__(self) -> None:
        check_fraction(self.fraction, "fraction")


@dataclasses.dataclass(frozen=True)
class OneShot:
    """One Shot, SPEC 3.2: prune ``fraction`` of the remaining weights ranked by ``w_0`` (the
    dense model trained once; :func:`fraction_step`); never retrained (``w_0 * m_t``)."""

    fraction: float = 0.2
    ranks: Literal["current", "dense"] = _fixed("dense")
    retrain: bool = _fixed(False)
    rewind: Literal["init"] | None = _fixed(None)

    def __post_init__(self) -> None:
        check_fraction(self.fraction, "fraction")


Policy = SAP | LotteryTicket | OneShot


def prune_step(policy: Policy, params: PyTree, mask: PyTree | None, *, scope: Scope = "global",
               prunable: Prunable | PyTree | None = None) -> PruneStepResult:
    """One pruning step of ``policy`` (SPEC 3.2): :func:`sap_step` or :func:`fraction_step` on
    the weights it ranks by (``policy.ranks``: ``"current"`` = ``w_t``, ``"dense"`` = ``w_0``).

    Example:
      >>> params = {"Dense_0": {"kernel": jnp.arange(1.0, 11.0).reshape(2, 5)}}
      >>> pj.prune_step(pj.OneShot(), params, None).units["global"].c.tolist()  # floor(0.2 * 10)
      [2]
      >>> onehot = {"Dense_0": {"kernel": jnp.zeros((2, 4)).at[1, 2].set(5.0)}}
      >>> pj.prune_step(pj.SAP(), onehot, None).units["global"].c.tolist()  # keeps r = 1
      [7]
    """
    if isinstance(policy, SAP):
        return sap_step(params, mask, p=policy.p, q=policy.q, eta=policy.eta,
                        gamma=policy.gamma, beta=policy.beta, scope=scope, prunable=prunable)
    if isinstance(policy, LotteryTicket | OneShot):
        return fraction_step(params, mask, fraction=policy.fraction, scope=scope,
                             prunable=prunable)
    raise TypeError(f"policy must be SAP, LotteryTicket or OneShot, got {type(policy).__name__}")
