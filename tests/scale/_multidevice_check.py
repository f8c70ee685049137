"""Sharded vs one-device results on 8 simulated CPU devices (run by test_scale_sharded.py).

Run as a script, in a fresh process whose environment sets
``XLA_FLAGS=--xla_force_host_platform_device_count=8`` before JAX is imported. Prints one
JSON object: ``{"errors": {check: deviation}, "memory": {...}, "seconds": ...}``. Everything
is float64, so the sharded and one-device results must agree to ~1e-12 (only the order of
floating-point summation differs). Public functions only.
"""

from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

from jax.sharding import NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

from prune_jax import (  # noqa: E402
    estimate_spectrum,
    gini_index,
    hessian_row_zero_mass,
    hvp_operator,
    loss_tolerance,
    magnitude_mask,
    pq_index,
    predict_sparsity_limit,
    slq,
)
from prune_jax.curvature.layout import FlatLayout  # noqa: E402
from prune_jax.curvature.tridiag import lanczos_tridiag  # noqa: E402
from prune_jax.sharding import make_mesh, shard_params  # noqa: E402
from prune_jax.tree import check_finite  # noqa: E402


def _loss(params, batch):
    x, y = batch
    h = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    logp = jax.nn.log_softmax(h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"])
    return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))


def _problem():
    rng = np.random.default_rng(0)
    params = {"Dense_0": {"kernel": rng.normal(size=(12, 40)) / 3.5,
                          "bias": 0.1 * rng.normal(size=40)},
              "Dense_1": {"kernel": rng.normal(size=(40, 7)) / 6.3, "bias": np.zeros(7)}}
    # D = 12*40 + 40 + 40*7 + 7 = 807, not a multiple of 8: the flat vectors get padded
    params = jax.tree.map(jnp.asarray, params)
    batches = (jnp.asarray(rng.normal(size=(6, 16, 12))),
               jnp.asarray(rng.integers(0, 7, (6, 16))))
    sizes = 2.0 * np.arange(1, 7)  # unequal n_b; 6 batches on 8 devices: 2 padding batches
    v = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape)), params)
    return params, batches, sizes, v


def _rel(a, b) -> float:
    """max |a - b| / max |b| over all leaves of two pytrees."""
    la = [np.asarray(x, np.float64) for x in jax.tree.leaves(a)]
    lb = [np.asarray(x, np.float64) for x in jax.tree.leaves(b)]
    return (max(float(np.max(np.abs(x - y))) for x, y in zip(la, lb, strict=True))
            / max(float(np.max(np.abs(y))) for y in lb))


def _diff(a, b) -> float:
    """Number of differing entries of two pytrees (masks, indices)."""
    return float(sum(int(np.sum(np.asarray(x) != np.asarray(y)))
                     for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)))


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


def _curvature(errors: dict, params, batches, sizes, v, mesh8, mesh, sp) -> str:
    """hvp_operator(mesh=...) (plain and linearised), estimate_spectrum, offloaded SLQ and
    Hessian-row zero mass with the Lanczos vectors split over the mesh."""
    key = jax.random.key(3)
    op1 = hvp_operator(_loss, params, batches, batch_sizes=sizes, linearize=False)
    op8 = hvp_operator(_loss, params, batches, batch_sizes=sizes, mesh=mesh8, linearize=False)
    errors["hvp_data8"] = _rel(op8(v), op1(v))
    sv = jax.tree.map(lambda x, r: jax.device_put(x, r.sharding), v, sp)
    op = hvp_operator(_loss, sp, batches, batch_sizes=sizes, mesh=mesh, linearize=False)
    hv = op(sv)
    errors["hvp_data4_model2"] = _rel(hv, op1(v))
    lin = hvp_operator(_loss, sp, batches, batch_sizes=sizes, mesh=mesh, linearize=True)
    errors["hvp_linear_data4_model2"] = _rel(lin(sv), op1(v))

    kw = dict(key=key, num_probes=3, num_steps=10, top_steps=12, k=3, trace_rtol=None)
    s1, s2 = estimate_spectrum(op1, params, **kw), estimate_spectrum(op, sp, **kw)
    errors["spectrum_nodes"] = _rel(s2.quadrature.nodes, s1.quadrature.nodes)
    errors["spectrum_weights"] = _rel(s2.quadrature.weights, s1.quadrature.weights)
    errors["trace"] = _rel(s2.trace.samples, s1.trace.samples)
    errors["top_values"] = _rel(s2.top.eigenvalues, s1.top.eigenvalues)
    errors["top_vectors"] = _rel(jax.tree.map(jnp.abs, s2.top.eigenvectors),
                                 jax.tree.map(jnp.abs, s1.top.eigenvectors))
    q1 = slq(op1, params, key=key, num_probes=2, num_steps=10)
    q2 = slq(lin, sp, key=key, num_probes=2, num_steps=10, offload_basis=True)
    errors["slq_linear_offload_nodes"] = _rel(q2.nodes, q1.nodes)
    for name, k in (("quantiles", None), ("stratified", jax.random.key(7))):
        z1 = hessian_row_zero_mass(op1, params, num_rows=12, tol=0.05, key=k)
        z2 = hessian_row_zero_mass(op, sp, num_rows=12, tol=0.05, key=k, batch_size=5)
        errors[f"zero_mass_{name}"] = max(_rel(z2.row_l1, z1.row_l1), _diff(z2.indices,
                                                                            z1.indices))
    return str(hv["Dense_0"]["kernel"].sharding.spec)


def _sparsity_and_limits(errors: dict, params, batches, mesh8, mesh, sp) -> None:
    for scope in ("global", "neuron"):
        errors[f"mask_{scope}"] = _diff(magnitude_mask(sp, 0.6, scope=scope),
                                        magnitude_mask(params, 0.6, scope=scope))
    # a prunable unit of 2^17 + 1200 weights split 8-way
    big = {"Dense_0": {"kernel": jax.random.laplace(jax.random.key(9), (520, 256))},
           "Dense_1": {"kernel": jax.random.normal(jax.random.key(10), (256, 5))}}
    sbig = shard_params(big, make_mesh(model=8), min_size=64)
    errors["mask_large_global"] = _diff(magnitude_mask(sbig, 0.6), magnitude_mask(big, 0.6))
    m1, m2 = magnitude_mask(params, 0.6), magnitude_mask(sp, 0.6)
    kernels = {"a": jax.random.normal(jax.random.key(11), (64, 1024)),
               "b": jax.random.normal(jax.random.key(12), (512, 64))}
    sk = jax.device_put(kernels, NamedSharding(make_mesh(model=8), P(None, "model")))
    errors["pq_split_last_axis"] = _rel(pq_index(sk), pq_index(kernels))
    errors["pq_index"] = _rel(pq_index(sp, 0.5, 1.0), pq_index(params, 0.5, 1.0))
    errors["pq_index_masked"] = _rel(pq_index(sp, 1.0, 2.0, mask=m2),
                                     pq_index(params, 1.0, 2.0, mask=m1))
    errors["gini"] = _rel(gini_index(sp), gini_index(params))

    # loss tolerance (SPEC 2.3): 6 batches over 8 devices (2 padding batches), 4-way data x
    # FSDP parameters, and FSDP parameters without a mesh (jit propagation)
    tol1 = loss_tolerance(_loss, params, batches)
    for name, tol in (("loss_tol_data8", loss_tolerance(_loss, params, batches, mesh=mesh8)),
                      ("loss_tol_data4_model2", loss_tolerance(_loss, sp, batches, mesh=mesh)),
                      ("loss_tol_fsdp_no_mesh", loss_tolerance(_loss, sp, batches))):
        errors[name] = max(_rel(tol.losses, tol1.losses), _rel(tol.std, tol1.std),
                           _rel(tol.mean, tol1.mean), float(tol.losses.shape != (6,)))

    # predicted limit (SPEC 2.3) on kernels split 8-way over both mesh axes
    rng = np.random.default_rng(5)
    lim = {"Dense_0": {"kernel": jnp.asarray(rng.laplace(0, 0.05, (64, 80)), jnp.float32),
                       "bias": jnp.ones(80, jnp.float32)},
           "Dense_1": {"kernel": jnp.asarray(rng.laplace(0, 0.2, (80, 11)), jnp.float32)}}
    slim = shard_params(lim, mesh, axis=("data", "model"), min_size=64)
    lams = rng.lognormal(-1.0, 2.5, 64 * 80 + 80 * 11)  # D_p eigenvalues, 10% of them 0
    lams[:600] = 0.0
    errors["limit_sharded"] = max(
        _limit_gap(predict_sparsity_limit(slim, lams, eps), predict_sparsity_limit(lim, lams, eps))
        for eps in (1e-4, 3e-3, 0.1))

    # host value checks on sharded arrays: a NaN is found and its leaf named
    bad = jax.tree.map(lambda x: x, sp)
    bad["Dense_0"]["kernel"] = jax.device_put(bad["Dense_0"]["kernel"].at[3, 5].set(jnp.nan),
                                              sp["Dense_0"]["kernel"].sharding)
    messages = [_error_message(check_finite, bad, "params"),
                _error_message(magnitude_mask, bad, 0.5),
                _error_message(pq_index, bad),
                _error_message(gini_index, bad),
                _error_message(loss_tolerance, _loss, bad, batches, mesh=mesh),
                _error_message(predict_sparsity_limit, bad, np.ones(12 * 40 + 40 * 7), 0.1)]
    errors["nan_checks_missed"] = float(sum("NaN" not in m for m in messages))
    errors["nan_leaf_unnamed"] = float(sum("Dense_0/kernel" not in m for m in messages[:4]))
    nan_big = {"Dense_0": {"kernel": jax.device_put(
        sbig["Dense_0"]["kernel"].at[7, 3].set(jnp.inf), sbig["Dense_0"]["kernel"].sharding)},
        "Dense_1": sbig["Dense_1"]}
    message = _error_message(magnitude_mask, nan_big, 0.5)
    errors["nan_large_unnamed"] = float("NaN or Inf (leaf 'Dense_0/kernel')" not in message)


def _memory(mesh) -> dict:
    """Per-device compiled memory of one 16-step Lanczos run (D = 2^18 + 3, a replicated
    diagonal operator) with the flat basis split over the 8 devices (what the estimators do
    on a mesh) vs left to XLA's propagation."""
    dim, steps = 2**18 + 3, 16
    diag = jax.device_put(jnp.linspace(0.0, 1.0, dim), NamedSharding(mesh, P()))
    out = {"basis_bytes_one_device": (steps + 1) * dim * 8}
    for name, lay in (("sharded", FlatLayout.of(dim, mesh)),
                      ("unconstrained", FlatLayout.of(dim))):
        run = lanczos_tridiag(steps, layout=lay)
        program = jax.jit(lambda d, run=run, lay=lay: run(
            lambda y: lay.pad(lay.unpad(y) * d), lay.pad(d), lay.pad(d))[:2])
        stats = program.lower(diag).compile().memory_analysis()
        out[f"temp_bytes_per_device_{name}"] = int(stats.temp_size_in_bytes)
    return out


def main() -> None:
    start = time.perf_counter()
    assert jax.device_count() == 8, jax.devices()
    errors: dict[str, float] = {}
    params, batches, sizes, v = _problem()
    mesh8, mesh = make_mesh(data=8), make_mesh(data=4, model=2)
    sp = shard_params(params, mesh, min_size=64)  # kernels split 2-way over "model"
    kernel_spec = _curvature(errors, params, batches, sizes, v, mesh8, mesh, sp)
    t1 = time.perf_counter()
    _sparsity_and_limits(errors, params, batches, mesh8, mesh, sp)
    t2 = time.perf_counter()
    memory = _memory(mesh)
    seconds = {"curvature": t1 - start, "sparsity_and_limits": t2 - t1,
               "memory": time.perf_counter() - t2}
    print(json.dumps({"errors": errors, "memory": memory, "kernel_spec": kernel_spec,
                      "seconds": seconds}))


if __name__ == "__main__":
    sys.exit(main())
