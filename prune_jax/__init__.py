"""prune_jax: a JAX-native functional toolkit for neural-network pruning.

The public API is re-exported here and nothing else happens at import time.
See README.md and docs/ for the guide; SPEC.md (in ../shared) for the mathematics.
"""

from prune_jax import tree

__version__ = "0.1.0"

__all__ = ["tree"]
