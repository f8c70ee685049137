"""Arrays on a mesh with Explicit axes get one clear error; the Auto mesh works (scaling.md).

``jax.make_mesh`` gives Explicit axes by default; the toolkit needs Auto axes
(``prune_jax.sharding.make_mesh``). Each public function below raises
``prune_jax.validate.check_no_explicit_mesh``'s error, which names the fix, and gives a
result for the same arrays on the Auto mesh. A one-device mesh is enough to tell the two
apart (the multi-device results are in ``test_scale_sharded.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import prune_jax as pj
from prune_jax.sharding import make_mesh

PARAMS = {"Dense_0": {"kernel": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4),
                      "bias": jnp.zeros(4)}}
BATCHES = jnp.ones((2, 5, 3))


def _loss(params, batch):
    return jnp.mean(jnp.tanh(batch @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]))


CALLS = {
    "magnitude_mask": lambda p: pj.magnitude_mask(p, 0.5),
    "pq_index": lambda p: pj.pq_index(p),
    "hvp_operator": lambda p: pj.hvp_operator(_loss, p, BATCHES),
    "slq": lambda p: pj.slq(lambda v: jax.tree.map(lambda x: 2.0 * x, v), p,
                            key=jax.random.key(0), num_probes=2, num_steps=3),
    "predict_sparsity_limit": lambda p: pj.predict_sparsity_limit(p, np.ones(12), 0.1),
}


def _on(mesh):
    return jax.device_put(PARAMS, NamedSharding(mesh, P()))


@pytest.mark.parametrize("name", [
    "magnitude_mask", "pq_index", "hvp_operator", "slq", "predict_sparsity_limit",
])
def test_explicit_mesh_gets_one_clear_error_and_auto_mesh_works(name):
    CALLS[name](_on(make_mesh()))  # Auto axes: a result
    explicit = jax.make_mesh((1, 1), ("data", "model"), axis_types=(AxisType.Explicit,) * 2)
    with pytest.raises(ValueError, match=r"Explicit axes.*prune_jax\.sharding\.make_mesh"):
        CALLS[name](_on(explicit))
