"""Curvature engine (SPEC 1): Hessian-vector products, Lanczos, spectra, zero mass.

Modules, one concept each: ``hvp`` (the operator), ``hoist`` (matvecs as compiled-program
arguments), ``tridiag`` (Lanczos), ``spectrum`` (the estimators), ``zero_mass``, ``layout`` and
``offload`` (where the Lanczos vectors live), ``exact`` (dense oracles for small models).
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
    "Estimate", "LanczosResult", "RitzDecomposition", "RowZeroMass", "SpectralQuadrature",
    "Spectrum", "TopEigenpairs", "TraceEstimate", "add_zero_atom", "dataset_hvp", "default_tol",
    "dense_hessian", "estimate_spectrum", "exact_eigenvalues", "hessian_row_zero_mass",
    "hutchinson_trace", "hvp", "hvp_operator", "lanczos", "lanczos_tridiag", "slq",
    "slq_zero_mass", "top_eigenvalues", "tridiagonal_eigh",
]
