"""Host-side argument validation for :mod:`prune_jax.sparsity` (private).

Every public function of the package validates its arguments here, on the host, before it calls
a jitted core; each error names the offending argument. Value checks (finiteness) only run on
concrete arrays: under an outer ``jit`` the arguments are tracers and only static properties
(structure, shapes, dtypes) can be checked.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp

from prune_jax.tree import PyTree, check_finite, check_floating, check_same_structure

Scope = Literal["global", "layer", "neuron"]
SCOPES: tuple[str, ...] = get_args(Scope)


def is_concrete(tree: PyTree) -> bool:
    """True when no leaf of ``tree`` is a tracer (so values may be pulled to the host)."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def check_real(value: Any, name: str) -> float:
    """Return ``value`` as a Python float, or raise ``TypeError``/``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def check_pq(p: Any, q: Any) -> tuple[float, float]:
    """Validate the PQ Index exponents (SPEC 3.1): ``0 < p <= 1 <= q`` and ``p < q``."""
    p, q = check_real(p, "p"), check_real(q, "q")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"p must satisfy 0 < p <= 1, got p={p}")
    if q < 1.0:
        raise ValueError(f"q must satisfy q >= 1, got q={q}")
    if not p < q:
        raise ValueError(f"p and q must satisfy p < q, got p={p}, q={q}")
    return p, q


def check_fraction(value: Any, name: str) -> float:
    """Validate a sparsity-like fraction in ``[0, 1)`` (fraction removed; 1 would remove all)."""
    value = check_real(value, name)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}")
    return value


def check_scope(scope: Any) -> Scope:
    """Validate a pruning scope: one of ``"global"``, ``"layer"``, ``"neuron"``."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    return scope


def check_values(tree: PyTree, name: str) -> None:
    """Floating dtypes (``TypeError``) and, for concrete arrays, no NaN/Inf (``ValueError``).

    The finiteness check is :func:`prune_jax.tree.check_finite`: one jitted all-finite flag
    per leaf, fetched as one small replicated vector, so it works on sharded and multi-host
    (not fully addressable) arrays; the error names the first bad leaf.
    """
    if not jax.tree.leaves(tree):
        raise ValueError(f"{name} has no array leaves")
    check_floating(tree, name)
    if is_concrete(tree):
        check_finite(tree, name)


def check_mask(params: PyTree, mask: PyTree) -> None:
    """``mask`` must match ``params`` leaf for leaf (structure, shapes) and hold booleans."""
    check_same_structure(params, mask, "params", "mask")
    for x in jax.tree.leaves(mask):
        if jnp.result_type(x) != jnp.bool_:
            raise TypeError(f"mask leaves must be boolean (True = kept), got {jnp.result_type(x)}")
