"""Curvature engine (SPEC 1): Hessian-vector products, Lanczos, spectra, zero mass.

A few composable pieces, each in its own module: :mod:`~prune_jax.curvature.hvp` (THE operator
constructor, one device or a mesh), :mod:`~prune_jax.curvature.hoist` (any matvec becomes a
compiled-program argument, amortised when memory allows), :mod:`~prune_jax.curvature.tridiag`
(the Lanczos factory and its public run), :mod:`~prune_jax.curvature.spectrum` (estimators as
samplers composed with integrands), :mod:`~prune_jax.curvature.zero_mass`,
:mod:`~prune_jax.curvature.layout` / :mod:`~prune_jax.curvature.offload` (where the Lanczos
vectors live) and :mod:`~prune_jax.curvature.exact` (dense oracles for small models). Core
math: imports :mod:`prune_jax.tree`, ``prune_jax.validate`` and :mod:`prune_jax.sharding`.
"""

from __future__ import annotations

from prune_jax.curvature.exact import dense_hessian, exact_eigenvalues
from prune_jax.curvature.hvp import dataset_hvp, hvp, hvp_operator
from prune_jax.curvature.spectrum import (
    Estimate,
    SpectralQuadrature,
    Spectrum,
    TopEigenpairs,
    TraceEstimate,
    estimate_spectrum,
    hutchinson_trace,
    slq,
    top_eigenvalues,
)
from prune_jax.curvature.tridiag import (
    LanczosResult,
    RitzDecomposition,
    default_tol,
    lanczos,
    lanczos_tridiag,
    tridiagonal_eigh,
)
from prune_jax.curvature.zero_mass import (
    RowZeroMass,
    add_zero_atom,
    hessian_row_zero_mass,
    slq_zero_mass,
)

__all__ = [
    "Estimate",
    "LanczosResult",
    "RitzDecomposition",
    "RowZeroMass",
    "SpectralQuadrature",
    "Spectrum",
    "TopEigenpairs",
    "TraceEstimate",
    "add_zero_atom",
    "dataset_hvp",
    "default_tol",
    "dense_hessian",
    "estimate_spectrum",
    "exact_eigenvalues",
    "hessian_row_zero_mass",
    "hutchinson_trace",
    "hvp",
    "hvp_operator",
    "lanczos",
    "lanczos_tridiag",
    "slq",
    "slq_zero_mass",
    "top_eigenvalues",
    "tridiagonal_eigh",
]
