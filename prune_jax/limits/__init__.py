"""Gaussian widths and the fundamental pruning limit (SPEC section 2).

- :func:`ellipsoid_gaussian_width`: exact ``E ||r * g||`` by a 1-D integral (SPEC 2.2).
- :func:`projected_width_fraction`: ``F(R) = (1/D) sum_i r_i^2 / (R^2 + r_i^2)`` from exact
  eigenvalues or an SLQ quadrature (SPEC 2.2); :func:`trace_width_bound`, its Jensen bound.
- :func:`loss_tolerance`: ``eps`` = std of the per-batch training loss (SPEC 2.3).
- :func:`predict_sparsity_limit`: the exact solution of ``s = F(R(s))`` (SPEC 2.3).
"""

from prune_jax.limits.predict import (
    LossTolerance,
    SparsityLimit,
    loss_tolerance,
    predict_sparsity_limit,
)
from prune_jax.limits.width import (
    ellipsoid_gaussian_width,
    projected_width_fraction,
    trace_width_bound,
)

__all__ = [
    "LossTolerance",
    "SparsityLimit",
    "ellipsoid_gaussian_width",
    "loss_tolerance",
    "predict_sparsity_limit",
    "projected_width_fraction",
    "trace_width_bound",
]
