"""The toolkit on a mesh with Explicit axes, 8 simulated CPU devices (run by
test_scale_explicit.py).

``jax.make_mesh`` gives Explicit axes by default: shardings are part of the array types, and
the toolkit's public functions run on the mesh's Auto twin (``prune_jax.tree.on_auto_mesh``)
and give array results back on the caller's mesh. Run as a script in a fresh process with
``XLA_FLAGS=--xla_force_host_platform_device_count=8``; prints one JSON object
``{"errors": {check: deviation}}``. float64, so results must equal one device to ~1e-12.
"""

from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from _multidevice_check import _error_message, _loss, _problem, _rel  # x64 is enabled there
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from prune_jax import (
    fraction_step,
    gini_index,
    hutchinson_trace,
    hvp,
    hvp_operator,
    lanczos,
    loss_tolerance,
    magnitude_mask,
    pq_index,
    pqi_retained_bound,
    predict_sparsity_limit,
    sap_step,
    slq,
    top_eigenvalues,
)


def _mask_diff(a, b) -> float:
    return float(sum(int(np.sum(np.asarray(x) != np.asarray(y)))
                     for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)))


def _placement_errors(masks, params) -> float:
    """Mask leaves not on the params' Explicit mesh with the params' specs."""
    bad = 0
    for m, x in zip(jax.tree.leaves(masks), jax.tree.leaves(params), strict=True):
        s = m.sharding
        bad += int(not isinstance(s, NamedSharding) or s.mesh != x.sharding.mesh
                   or s.spec != x.sharding.spec)
    return float(bad)


def main() -> None:
    assert jax.device_count() == 8, jax.devices()
    errors: dict[str, float] = {}
    mesh = jax.make_mesh((4, 2), ("data", "model"))
    assert all(t == AxisType.Explicit for t in mesh.axis_types), mesh.axis_types
    params, batches, sizes, _ = _problem()

    def place(x, spec):
        return jax.device_put(x, NamedSharding(mesh, spec))

    # kernels split on their LAST axis: flattening them is a sharding type error in Explicit
    # mode, which is what the Auto twin avoids
    specs = {"Dense_0": {"kernel": P(None, "model"), "bias": P()},
             "Dense_1": {"kernel": P("model", None), "bias": P()}}
    sp = jax.tree.map(place, params, specs)
    sb = (place(batches[0], P(None, "data", None)), place(batches[1], P(None, "data")))

    # sparsity: small units (bisection) and a 2^17-weight kernel (bracket refinement)
    for scope in ("global", "layer", "neuron"):
        m1, m2 = magnitude_mask(params, 0.6, scope=scope), magnitude_mask(sp, 0.6, scope=scope)
        errors[f"mask_{scope}"] = _mask_diff(m1, m2)
        errors[f"mask_{scope}_placement"] = _placement_errors(m2, sp)
    big = {"Dense_0": {"kernel": jax.random.laplace(jax.random.key(9), (520, 256))}}
    sbig = {"Dense_0": {"kernel": place(big["Dense_0"]["kernel"], P(None, ("data", "model")))}}
    errors["mask_large"] = _mask_diff(magnitude_mask(big, 0.6), magnitude_mask(sbig, 0.6))
    m1, m2 = magnitude_mask(params, 0.5), magnitude_mask(sp, 0.5)
    errors["pq_index"] = _rel(pq_index(sp), pq_index(params))
    errors["pq_index_masked"] = _rel(pq_index(sp, 1.0, 2.0, mask=m2),
                                     pq_index(params, 1.0, 2.0, mask=m1))
    errors["gini"] = _rel(gini_index(sp), gini_index(params))
    errors["bound"] = _rel(pqi_retained_bound(sp), pqi_retained_bound(params))
    s1, s2 = sap_step(params, m1, gamma=1.0), sap_step(sp, m2, gamma=1.0)
    errors["sap_mask"] = _mask_diff(s1.mask, s2.mask)
    errors["sap_pqi"] = _rel(s2.units["global"].pqi, s1.units["global"].pqi)
    errors["fraction_mask"] = _mask_diff(fraction_step(params, m1).mask,
                                         fraction_step(sp, m2).mask)

    # curvature through the toolkit's operator (its arrays are pytree leaves, re-wrapped too)
    key = jax.random.key(3)
    op1 = hvp_operator(_loss, params, batches, batch_sizes=sizes)
    op2 = hvp_operator(_loss, sp, sb, batch_sizes=sizes)
    q1 = slq(op1, params, key=key, num_probes=3, num_steps=10)
    q2 = slq(op2, sp, key=key, num_probes=3, num_steps=10)
    errors["slq_nodes"] = _rel(q2.nodes, q1.nodes)
    errors["slq_weights"] = _rel(q2.weights, q1.weights)
    errors["trace"] = _rel(hutchinson_trace(op2, sp, key=key, num_probes=4).samples,
                           hutchinson_trace(op1, params, key=key, num_probes=4).samples)
    errors["top_values"] = _rel(top_eigenvalues(op2, sp, key=key, k=3, num_steps=12).eigenvalues,
                                top_eigenvalues(op1, params, key=key, k=3,
                                                num_steps=12).eigenvalues)
    v0 = jax.tree.map(jnp.ones_like, params)
    errors["lanczos_alpha"] = _rel(lanczos(op2, jax.tree.map(place, v0, specs), 6).alphas,
                                   lanczos(op1, v0, 6).alphas)
    l1 = predict_sparsity_limit(params, q1, 0.05)
    l2 = predict_sparsity_limit(sp, q2, 0.05)
    errors["limit_sparsity"] = abs(l1.sparsity - l2.sparsity)
    errors["loss_tolerance"] = _rel(loss_tolerance(_loss, sp, sb).mean,
                                    loss_tolerance(_loss, params, batches).mean)
    # a closure over explicitly sharded arrays cannot be re-wrapped: a clear error says so
    def closure(v):
        return hvp(lambda p: _loss(p, (sb[0][0], sb[1][0])), sp, v)

    message = _error_message(slq, closure, sp, key=key, num_probes=2, num_steps=4)
    errors["closure_hint"] = float("Explicit axes" not in message
                                   or "jax.tree_util.Partial" not in message)
    print(json.dumps({"errors": errors}))


if __name__ == "__main__":
    sys.exit(main())
