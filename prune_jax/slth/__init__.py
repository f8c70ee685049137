"""Structured vs unstructured pruning: the exponential-gap experiment (SPEC 4).

Approximating one bias-free ReLU neuron by pruning a random bias-free two-layer ReLU network
(strong lottery tickets). What each part GUARANTEES:

* :mod:`~prune_jax.slth.networks` -- targets, nested pools, neuron and weight masks, forward.
* :mod:`~prune_jax.slth.supnorm` -- sup error: EXACT in d = 2, a LOWER estimate in d > 2.
* :mod:`~prune_jax.slth.subset_sum` -- EXACT meet-in-the-middle subset sum (float64, JAX).
* :mod:`~prune_jax.slth.pensia` -- weight arm: CERTIFIED UPPER bound (Pensia et al. 2020).
* :mod:`~prune_jax.slth.neuron_lp` -- neuron arm: CERTIFIED LOWER bound (LP relaxation).
* :mod:`~prune_jax.slth.neuron_milp` -- neuron arm: lower bound by MILP (HiGHS dual bound),
  the exact best subset where it finishes (N ~ 64 in d = 2); much tighter with the output ReLU.
* :mod:`~prune_jax.slth.neuron_subsets` -- neuron arm: achievable subsets (upper bounds).
* :mod:`~prune_jax.slth.supermask` -- ILLUSTRATION: gradient supermask search (no guarantee).
* :mod:`~prune_jax.slth.sweep` -- required widths per arm and their quantiles over seeds.
"""

from prune_jax.slth.networks import (
    Net,
    Pool,
    WeightMask,
    forward,
    neuron_net,
    pool_prefix,
    residual,
    sample_pool,
    sample_sphere,
    sample_target,
    target,
    weight_net,
)
from prune_jax.slth.neuron_lp import (
    CuttingPlanes,
    LPBound,
    neuron_lp_bound,
    neuron_lp_bound_output_relu,
)
from prune_jax.slth.neuron_milp import MilpBound, neuron_milp_bound_2d
from prune_jax.slth.neuron_subsets import (
    Subset,
    SubsetBatch,
    brute_force_2d,
    local_search_2d,
    random_subsets_2d,
    rounded_subset,
    subset_errors_2d,
)
from prune_jax.slth.pensia import (
    PensiaNetwork,
    PensiaTable,
    pensia_certificate,
    pensia_network,
    pensia_table,
    required_width,
)
from prune_jax.slth.subset_sum import SubsetSum, subset_sum, subset_sum_brute_force
from prune_jax.slth.supermask import SupermaskResult, SupermaskSearch, train_supermask
from prune_jax.slth.supnorm import (
    Candidates,
    SupEstimate,
    SupResult,
    SupSearch,
    arc_maxima_2d,
    sup_error,
    sup_error_2d,
    sup_error_2d_batch,
    sup_error_grid_2d,
    sup_error_search,
    worst_points,
)

__all__ = ["Candidates", "CuttingPlanes", "LPBound", "MilpBound", "Net", "PensiaNetwork",
           "PensiaTable", "Pool", "Subset", "SubsetBatch", "SubsetSum", "SupEstimate", "SupResult",
           "SupSearch", "SupermaskResult", "SupermaskSearch", "WeightMask", "arc_maxima_2d",
           "brute_force_2d", "forward", "local_search_2d", "neuron_lp_bound",
           "neuron_lp_bound_output_relu", "neuron_milp_bound_2d", "neuron_net",
           "pensia_certificate", "pensia_network", "pensia_table", "pool_prefix",
           "random_subsets_2d", "required_width", "residual", "rounded_subset", "sample_pool",
           "sample_sphere", "sample_target", "subset_errors_2d", "subset_sum",
           "subset_sum_brute_force", "sup_error", "sup_error_2d", "sup_error_2d_batch",
           "sup_error_grid_2d", "sup_error_search", "target", "train_supermask", "weight_net",
           "worst_points"]
