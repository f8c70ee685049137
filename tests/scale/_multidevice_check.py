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
    hessian_row_zero_mass,
    hutchinson_trace,
    hvp_operator,
    sharded_hvp_operator,
    slq,
    top_eigenvalues,
)
from prune_jax.curvature._checks import LikeSpec  # noqa: E402
from prune_jax.curvature._layout import FlatLayout  # noqa: E402
from prune_jax.curvature.spectrum import _slq_jit  # noqa: E402
from prune_jax.limits import loss_tolerance, predict_sparsity_limit  # noqa: E402
from prune_jax.sharding import make_mesh, shard_params  # noqa: E402
from prune_jax.sparsity import gini_index, magnitude_mask, pq_index  # noqa: E402
from prune_jax.tree import check_finite  # noqa: E402


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


def _limit_gap(a, b) -> float:
    """Largest deviation between two SparsityLimit results (relative; counts exact)."""
    return max(abs(a.sparsity - b.sparsity) / b.sparsity, abs(a.distance - b.distance) /
               b.distance, _rel(a.curve_width_fraction, b.curve_width_fraction),
               float(abs(a.num_pruned - b.num_pruned)), float(a.num_prunable != b.num_prunable))


def _error_message(f, *args, **kwargs) -> str:
    try:
        f(*args, **kwargs)
    except ValueError as err:
        return str(err)
    return ""


def _limits_and_friends(errors, params, batches, sizes, v, op1, q1, mesh8, mesh, sp, sv,
                        hv) -> None:
    """Loss tolerance, sparsity limit, Hessian-row zero mass, linearised sharded operator."""
    # loss tolerance (SPEC 2.3): 6 batches over 8 devices (2 padding batches), and 4-way data
    # x FSDP parameters; and without a mesh, jit propagation on FSDP parameters
    tol1 = loss_tolerance(_loss, params, batches)
    for name, tol in (("loss_tol_data8", loss_tolerance(_loss, params, batches, mesh=mesh8)),
                      ("loss_tol_data4_model2", loss_tolerance(_loss, sp, batches, mesh=mesh)),
                      ("loss_tol_fsdp_no_mesh", loss_tolerance(_loss, sp, batches))):
        errors[name] = max(_rel(tol.losses, tol1.losses), _rel(tol.std, tol1.std),
                           _rel(tol.mean, tol1.mean), float(tol.losses.shape != (6,)))

    # predicted limit (SPEC 2.3) on kernels split 8-way over both mesh axes: D_p = 6020,
    # two full 2048-blocks and a tail; host sort (auto) and the jitted global sort
    rng = np.random.default_rng(5)
    big = {"Dense_0": {"kernel": jnp.asarray(rng.laplace(0, 0.05, (64, 80)), jnp.float32),
                       "bias": jnp.ones(80, jnp.float32)},
           "Dense_1": {"kernel": jnp.asarray(rng.laplace(0, 0.2, (80, 11)), jnp.float32)}}
    sbig = shard_params(big, mesh, axis=("data", "model"), min_size=64)
    lams = rng.lognormal(-1.0, 2.5, 300)
    lams[:30] = 0.0
    errors["limit_sharded"] = max(
        _limit_gap(predict_sparsity_limit(sbig, lams, eps), predict_sparsity_limit(big, lams, eps))
        for eps in (1e-4, 3e-3, 0.1))

    # Hessian-row zero mass (SPEC 1.3): sharded operator and FSDP parameters; global quantiles
    op = sharded_hvp_operator(_loss, sp, batches, mesh=mesh, batch_sizes=sizes)
    for name, key in (("quantiles", None), ("stratified", jax.random.key(7))):
        z1 = hessian_row_zero_mass(op1, params, num_rows=12, tol=0.05, key=key)
        z2 = hessian_row_zero_mass(op, sp, num_rows=12, tol=0.05, key=key, batch_size=5)
        errors[f"zero_mass_{name}"] = max(_rel(z2.row_l1, z1.row_l1),
                                          _rel(z2.magnitudes, z1.magnitudes),
                                          float(np.sum(z2.indices != z1.indices)),
                                          abs(z2.fraction - z1.fraction))

    # linearize=True (SPEC 1.1, amortised form): = non-linearised sharded = one device
    lin8 = sharded_hvp_operator(_loss, params, batches, mesh=mesh8, batch_sizes=sizes,
                                linearize=True)
    errors["hvp_linear_data8"] = _rel(lin8(v), op1(v))
    lin = sharded_hvp_operator(_loss, sp, batches, mesh=mesh, batch_sizes=sizes,
                               linearize=True)
    hv_lin = lin(sv)
    errors["hvp_linear_data4_model2"] = _rel(hv_lin, op1(v))
    errors["hvp_linear_vs_sharded"] = _rel(hv_lin, hv)
    errors["slq_linear_nodes"] = _rel(slq(lin, sp, key=jax.random.key(3), num_probes=3,
                                          num_steps=10).nodes, q1.nodes)

    # host value checks on sharded arrays: a NaN is found and its leaf named
    bad = jax.tree.map(lambda x: x, sp)
    bad["Dense_0"]["kernel"] = jax.device_put(bad["Dense_0"]["kernel"].at[3, 5].set(jnp.nan),
                                              sp["Dense_0"]["kernel"].sharding)
    messages = [_error_message(check_finite, bad, "params"),
                _error_message(magnitude_mask, bad, 0.5),
                _error_message(pq_index, bad),
                _error_message(gini_index, bad),
                _error_message(loss_tolerance, _loss, bad, batches, mesh=mesh),
                _error_message(predict_sparsity_limit, bad, lams, 0.1)]
    errors["nan_checks_missed"] = float(sum("NaN" not in m for m in messages))
    errors["nan_leaf_unnamed"] = float(sum("Dense_0/kernel" not in m for m in messages[:4]))
    errors["clean_gini"] = _rel(gini_index(sp), gini_index(params))


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
    # a prunable unit of 2^17 + 1200 weights takes the bracket refinement (_select.py)
    big = {"Dense_0": {"kernel": jax.random.laplace(jax.random.key(9), (520, 256))},
           "Dense_1": {"kernel": jax.random.normal(jax.random.key(10), (256, 5))}}
    sbig = shard_params(big, make_mesh(model=8), min_size=64)
    b1, b2 = magnitude_mask(big, 0.6), magnitude_mask(sbig, 0.6)
    errors["mask_large_global"] = float(sum(
        int(np.sum(np.asarray(a) != np.asarray(b)))
        for a, b in zip(jax.tree.leaves(b1), jax.tree.leaves(b2), strict=True)))
    nan_big = {"Dense_0": {"kernel": jax.device_put(
        sbig["Dense_0"]["kernel"].at[7, 3].set(jnp.inf), sbig["Dense_0"]["kernel"].sharding)},
        "Dense_1": sbig["Dense_1"]}
    message = _error_message(magnitude_mask, nan_big, 0.5)
    errors["nan_large_unnamed"] = float("NaN or Inf (leaf 'Dense_0/kernel')" not in message)
    kernels = {"a": jax.random.normal(jax.random.key(11), (64, 1024)),
               "b": jax.random.normal(jax.random.key(12), (512, 64))}
    sk = jax.device_put(kernels, jax.sharding.NamedSharding(
        make_mesh(model=8), jax.sharding.PartitionSpec(None, "model")))
    errors["pq_split_last_axis"] = _rel(pq_index(sk), pq_index(kernels))
    errors["pq_index"] = _rel(pq_index(sp, 0.5, 1.0), pq_index(params, 0.5, 1.0))
    errors["pq_index_masked"] = _rel(pq_index(sp, 1.0, 2.0, mask=m2),
                                     pq_index(params, 1.0, 2.0, mask=m1))

    # 4. the rest of the toolkit on sharded inputs (limits, zero mass, linearised operator)
    _limits_and_friends(errors, params, batches, sizes, v, op1, q1, mesh8, mesh, sp, sv, hv)

    # 5. measured, not guessed: per-device compiled memory of SLQ (one probe, 16 steps) for a
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
