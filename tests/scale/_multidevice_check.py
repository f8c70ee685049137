"""Sharded vs one-device results on 8 simulated CPU devices (run by test_scale_sharded.py).

Run as a script, in a fresh process whose environment sets
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX is imported. Prints one
JSON object: ``{"errors": {check: max relative deviation}, "memory": {...}, "seconds": ...}``.
Everything is float64, so the sharded and one-device results must agree to ~1e-12 (only the
order of floating-point summation differs).
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.tree_util import Partial

jax.config.update("jax_enable_x64", True)

from prune_jax.curvature import (  # noqa: E402
    hutchinson_trace,
    hvp_operator,
    sharded_hvp_operator,
    slq,
    top_eigenvalues,
)
from prune_jax.curvature._checks import LikeSpec  # noqa: E402
from prune_jax.curvature._layout import FlatLayout  # noqa: E402
from prune_jax.curvature.spectrum import _slq_jit  # noqa: E402
from prune_jax.sharding import make_mesh, shard_params  # noqa: E402
from prune_jax.sparsity import magnitude_mask, pq_index  # noqa: E402


def _loss(params, batch):
    x, y = batch
    h = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    logp = jax.nn.log_softmax(h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"])
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _problem(num_batches: int = 6):
    rng = np.random.default_rng(0)
    params = {"Dense_0": {"kernel": rng.normal(size=(12, 40)) / 3.5,
                          "bias": 0.1 * rng.normal(size=40)},
              "Dense_1": {"kernel": rng.normal(size=(40, 7)) / 6.3, "bias": np.zeros(7)}}
    # D = 12*40 + 40 + 40*7 + 7 = 807, not a multiple of 8: the flat vectors get padded
    params = jax.tree.map(jnp.asarray, params)
    batches = (jnp.asarray(rng.normal(size=(num_batches, 16, 12))),
               jnp.asarray(rng.integers(0, 7, (num_batches, 16))))
    sizes = 2.0 * np.arange(1, num_batches + 1)  # unequal n_b
    v = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)
    return params, batches, sizes, v


def _rel(a, b) -> float:
    """max |a - b| / max |b| over all leaves of two pytrees."""
    la = [np.asarray(x, np.float64) for x in jax.tree.leaves(a)]
    lb = [np.asarray(x, np.float64) for x in jax.tree.leaves(b)]
    num = max(float(np.max(np.abs(x - y))) for x, y in zip(la, lb, strict=True))
    den = max(float(np.max(np.abs(y))) for y in lb)
    return num / den


def _like(tree, ref):
    """``tree`` placed with the shardings of ``ref``'s leaves."""
    return jax.tree.map(lambda x, r: jax.device_put(x, r.sharding), tree, ref)


def main() -> None:
    start = time.perf_counter()
    assert jax.device_count() == 8, jax.devices()
    errors: dict[str, float] = {}
    params, batches, sizes, v = _problem()
    op1 = hvp_operator(_loss, params, batches, batch_sizes=sizes)
    key = jax.random.key(3)

    # 1. pure data parallelism, 8 devices, 6 batches (2 zero-size padding batches)
    mesh8 = make_mesh(data=8)
    op8 = sharded_hvp_operator(_loss, params, batches, mesh=mesh8, batch_sizes=sizes)
    errors["hvp_data8"] = _rel(op8(v), op1(v))

    # 2. data x FSDP: 4-way data, kernels split 2-way over "model"
    mesh = make_mesh(data=4, model=2)
    sp = shard_params(params, mesh, min_size=64)
    sv = _like(v, sp)
    op = sharded_hvp_operator(_loss, sp, batches, mesh=mesh, batch_sizes=sizes)
    hv = op(sv)
    errors["hvp_data4_model2"] = _rel(hv, op1(v))
    kernel_spec = str(hv["Dense_0"]["kernel"].sharding.spec)

    q1 = slq(op1, params, key=key, num_probes=3, num_steps=10)
    q2 = slq(op, sp, key=key, num_probes=3, num_steps=10)
    errors["slq_nodes"] = _rel(q2.nodes, q1.nodes)
    errors["slq_weights"] = _rel(q2.weights, q1.weights)
    q3 = slq(op, sp, key=key, num_probes=3, num_steps=10, offload_basis=True)
    errors["slq_offload_nodes"] = _rel(q3.nodes, q1.nodes)
    q4 = slq(op, sp, key=key, num_probes=3, num_steps=10, reorthogonalize=False)
    q5 = slq(op1, params, key=key, num_probes=3, num_steps=10, reorthogonalize=False)
    errors["slq_nobasis_nodes"] = _rel(q4.nodes, q5.nodes)

    t1 = hutchinson_trace(op1, params, key=key, num_probes=4)
    t2 = hutchinson_trace(op, sp, key=key, num_probes=4)
    errors["trace_samples"] = _rel(t2.samples, t1.samples)

    k1 = top_eigenvalues(op1, params, key=key, k=3, num_steps=12)
    k2 = top_eigenvalues(op, sp, key=key, k=3, num_steps=12)
    errors["top_values"] = _rel(k2.eigenvalues, k1.eigenvalues)
    errors["top_vectors"] = _rel(k2.eigenvectors, k1.eigenvectors)
    k3 = top_eigenvalues(op, sp, key=key, k=3, num_steps=12, offload_basis=True)
    errors["top_offload_values"] = _rel(k3.eigenvalues, k1.eigenvalues)
    errors["top_offload_vectors"] = _rel(k3.eigenvectors, k1.eigenvectors)

    # 3. sparsity on sharded parameters
    for scope in ("global", "neuron"):
        m1 = magnitude_mask(params, 0.6, scope=scope)
        m2 = magnitude_mask(sp, 0.6, scope=scope)
        errors[f"mask_{scope}"] = float(sum(int(np.sum(np.asarray(a) != np.asarray(b)))
                                            for a, b in zip(jax.tree.leaves(m1),
                                                            jax.tree.leaves(m2), strict=True)))
    errors["pq_index"] = _rel(pq_index(sp, 0.5, 1.0), pq_index(params, 0.5, 1.0))
    errors["pq_index_masked"] = _rel(pq_index(sp, 1.0, 2.0, mask=m2),
                                     pq_index(params, 1.0, 2.0, mask=m1))

    # 4. measured, not guessed: per-device compiled memory of SLQ (one probe, 16 steps) for a
    #    replicated diagonal operator (D = 2^18 + 3), with the flat basis split over the 8
    #    devices (FlatLayout, what slq does) vs left to XLA's propagation (no constraint).
    dim, steps = 2**18 + 3, 16
    diag = jax.device_put(jnp.linspace(0.0, 1.0, dim),
                          jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec()))
    dop = Partial(lambda d, x: d * x, diag)
    spec = LikeSpec.of(jax.ShapeDtypeStruct((dim,), jnp.float64))
    memory = {"basis_bytes_one_device": (steps + 1) * dim * 8}
    for name, layout in (("sharded", FlatLayout.of(dim, mesh)), ("unconstrained", None)):
        compiled = _slq_jit.lower(dop, key, spec=spec, num_probes=1, num_steps=steps,
                                  reorthogonalize=True, tol=1e-12, batch_size=1,
                                  layout=layout).compile()
        stats = compiled.memory_analysis()
        memory[f"temp_bytes_per_device_{name}"] = int(stats.temp_size_in_bytes)
    print(json.dumps({"errors": errors, "memory": memory, "kernel_spec": kernel_spec,
                      "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    sys.exit(main())
