"""Sparsity core (SPEC 3): measures (:func:`pq_index`, :func:`gini_index`,
:func:`pqi_retained_bound`), masks (:func:`magnitude_mask`, :func:`apply_mask`,
:func:`sparsity_report`), optax transforms (:func:`l1`, :func:`l1_prox`, :func:`keep_pruned`)
and pruning steps (:func:`sap_step`, :func:`fraction_step`, :func:`prune_step` with the
policies :class:`SAP`, :class:`LotteryTicket`, :class:`OneShot`).
Which weights go is decided by :mod:`prune_jax.ranking`; readable arrays are processed with
numpy on the host (no compilation), others (traced, multi-host) in ``jax.numpy``.
"""

from __future__ import annotations

from prune_jax.sparsity.iterative import (
    SAP,
    LotteryTicket,
    OneShot,
    Policy,
    PruneStepResult,
    UnitStats,
    fraction_step,
    prune_step,
    sap_step,
)
from prune_jax.sparsity.masks import (
    MaskCount,
    Scope,
    SparsityReport,
    apply_mask,
    magnitude_mask,
    sparsity_report,
)
from prune_jax.sparsity.measures import gini_index, pq_index, pqi_retained_bound
from prune_jax.sparsity.transforms import keep_pruned, l1, l1_prox

__all__ = ["SAP", "LotteryTicket", "MaskCount", "OneShot", "Policy", "PruneStepResult", "Scope",
           "SparsityReport", "UnitStats", "apply_mask", "fraction_step", "gini_index",
           "keep_pruned", "l1", "l1_prox", "magnitude_mask", "pq_index", "pqi_retained_bound",
           "prune_step", "sap_step", "sparsity_report"]
