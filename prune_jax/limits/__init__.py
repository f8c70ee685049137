"""Gaussian widths and the fundamental pruning limit (SPEC section 2).

- :func:`ellipsoid_gaussian_width`: exact ``E ||r * g||`` by a 1-D integral (SPEC 2.2).
- :func:`projected_width_fraction`: ``F(R) = (1/D) sum_i r_i^2 / (R^2 + r_i^2)`` from exact
  eigenvalues or an SLQ quadrature (SPEC 2.2); :func:`trace_width_bound`, its Jensen bound.
- :func:`shuffled_loss_tolerance`: ``eps`` = std of the per-batch training loss on shuffled
  batches of the training batch size, over a few shuffles (SPEC 2.3); :func:`loss_tolerance`
  for batches already stacked (one ordering, optionally split over a mesh).
- :func:`predict_sparsity_limit`: the exact solution of ``s = F(R(s))`` (SPEC 2.3), and
  :func:`regime_diagnostics`: whether a prediction is in the regime the theory describes;
  :func:`training_check`: the prediction against magnitude pruning on the training data.
"""

from prune_jax.limits.predict import SparsityLimit, predict_sparsity_limit
from prune_jax.limits.regime import Regime, TrainingCheck, regime_diagnostics, training_check
from prune_jax.limits.tolerance import LossTolerance, loss_tolerance, shuffled_loss_tolerance
from prune_jax.limits.width import (
    SpectralMeasure,
    ellipsoid_gaussian_width,
    projected_width_fraction,
    spectral_measure,
    trace_width_bound,
)

__all__ = [
    "LossTolerance",
    "Regime",
    "SparsityLimit",
    "SpectralMeasure",
    "TrainingCheck",
    "ellipsoid_gaussian_width",
    "loss_tolerance",
    "predict_sparsity_limit",
    "projected_width_fraction",
    "regime_diagnostics",
    "shuffled_loss_tolerance",
    "spectral_measure",
    "trace_width_bound",
    "training_check",
]
