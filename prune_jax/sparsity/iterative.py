"""One pruning step of SAP, One Shot and Lottery Ticket, and the policies naming them (SPEC 3.2).

Iterative pruning alternates *train* and *prune*. This module is the *prune* half: pure
functions from ``(params, mask)`` to a new, smaller mask plus per-unit diagnostics. The driver
that trains, rewinds and checkpoints (``prune_jax.experiments``) calls :func:`prune_step` once
per iteration and reads from the policy object what else distinguishes the methods:

==================  ==============================  =================  ==========
policy              weights ranked by magnitude     retrain each step  rewind to
==================  ==============================  =================  ==========
``SAP``             ``w_t`` (current, trained)      yes                ``w_init * m``
``LotteryTicket``   ``w_t`` (current, trained)      yes                ``w_init * m``
``OneShot``         ``w_0`` (trained once, dense)   no                 (none)
==================  ==============================  =================  ==========

(seed paper, sections 3.2 and 4.1: "'One Shot' prunes d P model parameters at each pruning
iteration from w_0 instead of w_t"; One Shot "does not retrain the model at each pruning
iteration"; Lottery Ticket and SAP train ``w_init * m_t`` for E epochs at every iteration.)

Per scope unit with ``d_t`` live weights, SAP removes
``c_t = floor(d_t * min(gamma (1 - r_t/d_t), beta))`` weights, where ``r_t`` is eq. 2's bound
from the PQ Index of the live weights; One Shot and Lottery Ticket remove
``c_t = floor(fraction * d_t)`` (``fraction = P = 0.2``: a sparsity relative to the *remaining*
weights). The ``c_t`` smallest-magnitude live weights go, exactly and with deterministic ties
(:func:`prune_jax.sparsity.magnitude_mask`'s order, :mod:`prune_jax.ranking`). Power sums and
counts are computed in float64 with a tolerance on the floor (SPEC 3.2).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np

from prune_jax.ranking import remove_smallest, unit_sizes, unit_view
from prune_jax.sparsity.masks import SCOPES, Scope, floor_count, prunable_leaves
from prune_jax.sparsity.measures import check_pq, power_sums, pq_bound
from prune_jax.tree import Prunable, PyTree
from prune_jax.validate import check_choice, check_fraction, check_positive

__all__ = [
    "SAP",
    "LotteryTicket",
    "OneShot",
    "Policy",
    "PruneStepResult",
    "UnitStats",
    "fraction_step",
    "prune_step",
    "sap_step",
]


class UnitStats(NamedTuple):
    """Diagnostics of one pruning step for a group of scope units (numpy arrays, one entry
    per unit; a single entry under ``"layer"`` and ``"global"`` scope).

    ``d``: live weights before the step; ``pqi``: PQ Index of the live weights (NaN when no
    live weight is non-zero); ``r``: eq. 2's lower bound on weights to retain (float64, NaN
    where ``pqi`` is); ``c``: weights removed by this step. These are the quantities
    ``d_t``, ``I(w)``, ``r_t`` and ``c_t`` of SPEC 3.2.
    """

    d: np.ndarray
    pqi: np.ndarray
    r: np.ndarray
    c: np.ndarray


class PruneStepResult(NamedTuple):
    """Result of one pruning step: the new keep-mask and its diagnostics.

    ``units`` maps a prunable leaf name (``"Dense_0/kernel"``) to that leaf's units under
    ``"layer"``/``"neuron"`` scope; under ``"global"`` scope it has the single key
    ``"global"``. The new mask only shrinks: pruned weights stay pruned. Returned by
    :func:`sap_step`, :func:`fraction_step` and :func:`prune_step` (SPEC 3.2).
    """

    mask: PyTree
    units: dict[str, UnitStats]


CountRule = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _step(params: PyTree, mask: PyTree | None, *, scope: Scope, prunable: Prunable | PyTree | None,
          p: float, q: float, eta: float, removed: CountRule) -> PruneStepResult:
    """Shared body: per-unit float64 power sums and counts, then the selection
    (:func:`prune_jax.ranking.remove_smallest`).

    ``removed(d, r)`` gives the number of live weights to prune per unit from the live counts
    ``d`` and eq. 2's bound ``r`` (float64 arrays).
    """
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


def _check_beta(beta: float) -> float:
    beta = check_positive(beta, "beta")
    if beta > 1:
        raise ValueError(f"beta must be in (0, 1], got {beta}")
    return beta


def sap_step(params: PyTree, mask: PyTree | None, *, p: float = 0.5, q: float = 1.0,
             eta: float = 0.0, gamma: float = 1.0, beta: float = 0.9,
             scope: Scope = "global",
             prunable: Prunable | PyTree | None = None) -> PruneStepResult:
    """One step of Sparsity-informed Adaptive Pruning (SPEC 3.2, seed Algorithm 1).

    For every scope unit with ``d_t`` live weights (``mask`` True): ``I = pq_index`` of the
    live weights, ``r_t = d_t (1 + eta)^(-q/(q-p)) (1 - I)^(qp/(q-p))`` (eq. 2), and
    ``c_t = floor(d_t * min(gamma (1 - r_t/d_t), beta))`` smallest-magnitude live weights are
    pruned. ``r_t`` and ``c_t`` are computed in float64 on the host with a 1e-9 relative
    tolerance on the floor. A unit whose live weights are all zero (PQI undefined) or that has
    none is left unchanged (``c = 0``).

    Args:
      params: trained weights ``w_t`` (floating pytree; NaN/Inf is a ValueError).
      mask: current keep-mask ``m_t`` (booleans shaped like params; None = all live).
      p, q: PQ Index exponents (``0 < p <= 1 <= q``, ``p < q``); paper: (0.5, 1) or (1, 2).
      eta: ``eta_r >= 0`` (paper: 0). gamma: scaling factor ``> 0`` (paper: 1).
      beta: maximum fraction of the live weights removed per step, in ``(0, 1]`` (paper: 0.9).
      scope: ``"global"``, ``"layer"`` or ``"neuron"`` (last kernel axis = output unit).
      prunable: which leaves may be pruned (default: Dense/Conv kernels).

    Returns:
      :class:`PruneStepResult`: ``mask = m_{t+1}`` and per-unit ``d, pqi, r, c``.

    Example:
      A one-hot kernel of ``d = 8`` weights has ``I = 1 - 8^(1-2) = 0.875`` and ``r = 1``, so
      ``c = floor(8 * min(1 - 1/8, 0.9)) = 7``: only the non-zero weight survives. A constant
      kernel has ``I = 0`` and ``r = d``: nothing is pruned.

      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> import prune_jax as pj
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
    p, q = check_pq(p, q)
    eta = check_positive(eta, "eta", allow_zero=True)
    gamma = check_positive(gamma, "gamma")
    beta = _check_beta(beta)

    def removed(d: np.ndarray, r: np.ndarray) -> np.ndarray:
        return floor_count(np.minimum(gamma * (d - np.where(np.isnan(r), d, r)), beta * d))

    return _step(params, mask, scope=scope, prunable=prunable, p=p, q=q, eta=eta,
                 removed=removed)


def fraction_step(params: PyTree, mask: PyTree | None, *, fraction: float = 0.2,
                  scope: Scope = "global", prunable: Prunable | PyTree | None = None,
                  p: float = 0.5, q: float = 1.0) -> PruneStepResult:
    """Prune ``floor(fraction * d_t)`` smallest live weights per unit (One Shot / LT step).

    The step of the fixed-rate baselines (SPEC 3.2, seed section 4.1, ``P = 0.2``):
    ``fraction`` is the sparsity applied to the *remaining* weights of each unit, so after
    ``t`` steps a unit keeps about ``(1 - fraction)^t`` of its weights. ``p, q`` only choose
    the PQ Index reported in the diagnostics (the paper plots PQI for every method).

    Args:
      params: weights whose magnitudes rank the pruning (``w_t`` for Lottery Ticket, ``w_0``
        for One Shot; see the policies).
      mask: current keep-mask (None = all live).
      fraction: in ``[0, 1)`` (``ValueError`` naming fraction).
      scope, prunable: as in :func:`sap_step`.

    Returns:
      :class:`PruneStepResult`: the new mask and per-unit ``d, pqi, r, c``.

    Example:
      ``floor(0.2 * 10) = 2`` of 10 weights go, then ``floor(0.2 * 8) = 1`` of the 8 left:

      >>> import jax.numpy as jnp
      >>> import numpy as np
      >>> import prune_jax as pj
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

    def removed(d: np.ndarray, r: np.ndarray) -> np.ndarray:
        return floor_count(fraction * d)

    return _step(params, mask, scope=scope, prunable=prunable, p=p, q=q, eta=0.0,
                 removed=removed)


# --------------------------------------------------------------------------- policies

@dataclasses.dataclass(frozen=True)
class SAP:
    """Sparsity-informed Adaptive Pruning (SPEC 3.2, seed Algorithm 1); defaults are the paper's.

    Each step is :func:`sap_step` with these ``p, q, eta, gamma, beta``; weights are ranked by
    the current ``w_t``, the model is retrained every iteration and rewound to
    ``w_init * m_t``.
    """

    p: float = 0.5
    q: float = 1.0
    eta: float = 0.0
    gamma: float = 1.0
    beta: float = 0.9
    ranks: Literal["current", "dense"] = dataclasses.field(default="current", init=False)
    retrain: bool = dataclasses.field(default=True, init=False)
    rewind: Literal["init"] | None = dataclasses.field(default="init", init=False)

    def __post_init__(self) -> None:
        check_pq(self.p, self.q)
        check_positive(self.eta, "eta", allow_zero=True)
        check_positive(self.gamma, "gamma")
        _check_beta(self.beta)


@dataclasses.dataclass(frozen=True)
class LotteryTicket:
    """Lottery Ticket (Frankle & Carbin), the baseline of SPEC 3.2: prune ``fraction``
    (``P = 0.2``) of the remaining weights of ``w_t`` (:func:`fraction_step`), then rewind to
    ``w_init * m_{t+1}`` and retrain.
    """

    fraction: float = 0.2
    ranks: Literal["current", "dense"] = dataclasses.field(default="current", init=False)
    retrain: bool = dataclasses.field(default=True, init=False)
    rewind: Literal["init"] | None = dataclasses.field(default="init", init=False)

    def __post_init__(self) -> None:
        check_fraction(self.fraction, "fraction")


@dataclasses.dataclass(frozen=True)
class OneShot:
    """One Shot, the baseline of SPEC 3.2: prune ``fraction`` (``P = 0.2``) of the remaining
    weights ranked by ``w_0`` (the dense model trained once, at iteration 0;
    :func:`fraction_step`); never retrained, the model at iteration ``t`` is ``w_0 * m_t``.
    """

    fraction: float = 0.2
    ranks: Literal["current", "dense"] = dataclasses.field(default="dense", init=False)
    retrain: bool = dataclasses.field(default=False, init=False)
    rewind: Literal["init"] | None = dataclasses.field(default=None, init=False)

    def __post_init__(self) -> None:
        check_fraction(self.fraction, "fraction")


Policy = SAP | LotteryTicket | OneShot


def prune_step(policy: Policy, params: PyTree, mask: PyTree | None, *, scope: Scope = "global",
               prunable: Prunable | PyTree | None = None) -> PruneStepResult:
    """One pruning step of ``policy`` (SPEC 3.2): :func:`sap_step` or :func:`fraction_step`.

    ``params`` must be the weights the policy ranks by (``policy.ranks``: ``"current"`` =
    ``w_t``, the weights just trained; ``"dense"`` = ``w_0``, the dense model trained once).
    The caller (the iterative driver) then applies ``policy.retrain`` and ``policy.rewind``.

    Example:
      >>> import jax.numpy as jnp
      >>> import prune_jax as pj
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
