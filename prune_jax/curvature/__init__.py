"""Curvature engine (SPEC section 1): Hessian-vector products, Lanczos, spectra, zero mass.

Operators are :class:`jax.tree_util.Partial` objects (see :func:`hvp_operator`) passed to the
compiled routines as jit arguments. Core math: imports :mod:`prune_jax.tree` only.
"""

from __future__ import annotations

from prune_jax.curvature.distributed import sharded_dataset_hvp, sharded_hvp_operator
from prune_jax.curvature.hvp import dataset_hvp, hvp, hvp_operator
from prune_jax.curvature.lanczos import (
    LanczosResult,
    RitzDecomposition,
    default_tol,
    lanczos,
    tridiagonal_eigh,
)
from prune_jax.curvature.spectrum import (
    Estimate,
    SpectralQuadrature,
    TopEigenpairs,
    TraceEstimate,
    hutchinson_trace,
    slq,
    top_eigenvalues,
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
    "TopEigenpairs",
    "TraceEstimate",
    "add_zero_atom",
    "dataset_hvp",
    "default_tol",
    "hessian_row_zero_mass",
    "hutchinson_trace",
    "hvp",
    "hvp_operator",
    "lanczos",
    "sharded_dataset_hvp",
    "sharded_hvp_operator",
    "slq",
    "slq_zero_mass",
    "top_eigenvalues",
    "tridiagonal_eigh",
]
