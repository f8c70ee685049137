"""One process of a two-process data-parallel HVP on localhost (run by test_scale_multihost.py).

    python _multihost_check.py PORT PROCESS_ID NUM_PROCESSES OUT_JSON

Each process is started with ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (2 CPU
devices each), calls :func:`jax.distributed.initialize` with a localhost coordinator, builds
one global ``(data=4, model=1)`` mesh over the 4 devices of both processes, passes only its
own half of the batches (``process_local=True``), and computes the exact full-data-set HVP
(also linearised), a Hutchinson trace and a short SLQ with the same code as on one host. On
a second model whose leaves are split 4-way over both processes (arrays that no process can
read alone), it runs the host value checks, the sparsity measures, the loss tolerance, the
predicted limit and the Hessian-row zero mass. Process 0 also computes the one-process
references on its local device and writes the deviations to ``OUT_JSON``.
"""

from __future__ import annotations

import json
import sys
import time

import jax

PORT, PID, NPROC, OUT = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(coordinator_address=f"127.0.0.1:{PORT}", num_processes=NPROC,
                           process_id=PID, initialization_timeout=60)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from prune_jax.curvature import (  # noqa: E402
    hessian_row_zero_mass,
    hutchinson_trace,
    hvp_operator,
    slq,
)
from prune_jax.limits import loss_tolerance, predict_sparsity_limit  # noqa: E402
from prune_jax.sharding import make_mesh, replicate, shard_params  # noqa: E402
from prune_jax.sparsity import (  # noqa: E402
    gini_index,
    magnitude_mask,
    pq_index,
    pqi_retained_bound,
    sap_step,
)
from prune_jax.tree import check_finite, fully_addressable, to_host  # noqa: E402


def _loss(params, batch):
    x, y = batch
    return jnp.mean((jnp.tanh(x @ params["w"]) @ params["u"] - y) ** 2)


EXACT = ("mask_kept", "sap_mask", "zero_idx")  # selections: must be identical


def _mlp_loss(params, batch):
    x, y = batch
    h = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    return jnp.mean((h @ params["Dense_1"]["kernel"] - y[:, None]) ** 2)


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def _message(f, *args, **kwargs) -> str:
    try:
        f(*args, **kwargs)
    except ValueError as err:
        return str(err)
    return ""


def _split_model(mesh, xs, ys, sizes, mine, rng) -> tuple[dict, dict]:
    """Checks on parameters split over both processes; (results, one-process inputs)."""
    params = {"Dense_0": {"kernel": rng.normal(size=(6, 8)) / 2.5,
                          "bias": 0.1 * rng.normal(size=8)},
              "Dense_1": {"kernel": rng.normal(size=(8, 4)) / 3.0}}
    lams = rng.lognormal(-1.0, 2.0, 6 * 8 + 8 * 4)  # one per prunable weight (D_p)
    sp = shard_params(params, mesh, axis="data", min_size=1)  # every leaf split 4-way
    out: dict = {"split_unreadable": not any(fully_addressable(x) for x in jax.tree.leaves(sp))}
    bad_host = jax.tree.map(np.copy, params)
    bad_host["Dense_1"]["kernel"][2, 1] = np.nan
    bad = shard_params(bad_host, mesh, axis="data", min_size=1)
    out["messages"] = [_message(check_finite, bad, "params"), _message(magnitude_mask, bad, 0.5),
                       _message(pq_index, bad), _message(gini_index, bad),
                       _message(predict_sparsity_limit, bad, lams, 0.1)]
    check_finite(sp, "params")  # passes
    mask = to_host(magnitude_mask(sp, 0.5))
    sap = to_host(sap_step(sp, None, p=1.0, q=2.0, scope="neuron").mask)
    out["values"] = {"pq": float(pq_index(sp)), "gini": float(gini_index(sp)),
                     "pqi_bound": pqi_retained_bound(sp),
                     "mask_kept": int(sum(np.sum(m) for m in jax.tree.leaves(mask))),
                     "sap_mask": [np.asarray(m).tolist() for m in jax.tree.leaves(sap)]}
    tol = loss_tolerance(_mlp_loss, sp, (xs[mine], ys[mine]), mesh=mesh, process_local=True)
    out["values"].update(tol_std=float(tol.std), tol_losses=np.asarray(tol.losses).tolist())
    lim = predict_sparsity_limit(sp, lams, 0.05)
    out["values"].update(limit=[lim.sparsity, lim.distance, lim.num_pruned])
    op = hvp_operator(_mlp_loss, sp, (xs[mine], ys[mine]), mesh=mesh,
                      batch_sizes=sizes[mine], process_local=True, linearize=False)
    zm = hessian_row_zero_mass(op, sp, num_rows=10, tol=0.05)
    out["values"].update(zero_l1=zm.row_l1.tolist(), zero_idx=zm.indices.tolist())
    return out, {"params": params, "lams": lams}


def _split_reference(inputs, xs, ys, sizes) -> dict:
    params = jax.tree.map(jnp.asarray, inputs["params"])
    batches = (jnp.asarray(xs), jnp.asarray(ys))
    mask = magnitude_mask(params, 0.5)
    sap = sap_step(params, None, p=1.0, q=2.0, scope="neuron").mask
    tol = loss_tolerance(_mlp_loss, params, batches)
    lim = predict_sparsity_limit(params, inputs["lams"], 0.05)
    zm = hessian_row_zero_mass(hvp_operator(_mlp_loss, params, batches, batch_sizes=sizes),
                               params, num_rows=10, tol=0.05)
    return {"pq": float(pq_index(params)), "gini": float(gini_index(params)),
            "pqi_bound": pqi_retained_bound(params),
            "mask_kept": int(sum(np.sum(np.asarray(m)) for m in jax.tree.leaves(mask))),
            "sap_mask": [np.asarray(m).tolist() for m in jax.tree.leaves(sap)],
            "tol_std": float(tol.std), "tol_losses": np.asarray(tol.losses).tolist(),
            "limit": [lim.sparsity, lim.distance, lim.num_pruned],
            "zero_l1": zm.row_l1.tolist(), "zero_idx": zm.indices.tolist()}


def main() -> None:
    start = time.perf_counter()
    rng = np.random.default_rng(0)  # the same data in every process
    params = {"w": rng.normal(size=(6, 10)) / 2.5, "u": rng.normal(size=(10,)) / 3.0}
    num_batches = 4 * NPROC
    xs = rng.normal(size=(num_batches, 8, 6))
    ys = rng.normal(size=(num_batches, 8))
    sizes = np.arange(1.0, num_batches + 1.0)
    v = {"w": rng.normal(size=(6, 10)), "u": rng.normal(size=(10,))}

    mesh = make_mesh()  # every device of every process on "data"
    assert mesh.size == 2 * NPROC, mesh
    mine = slice(PID * 4, (PID + 1) * 4)  # this process's own batches
    gparams, gv = replicate(params, mesh), replicate(v, mesh)
    op = hvp_operator(_loss, gparams, (xs[mine], ys[mine]), mesh=mesh,
                      batch_sizes=sizes[mine], process_local=True, linearize=False)
    hv = jax.tree.map(np.asarray, op(gv))  # replicated: readable in every process
    key = jax.random.key(1)
    trace = hutchinson_trace(op, gparams, key=key, num_probes=3).samples
    quad = slq(op, gparams, key=key, num_probes=2, num_steps=6)
    lin = hvp_operator(_loss, gparams, (xs[mine], ys[mine]), mesh=mesh,
                       batch_sizes=sizes[mine], process_local=True, linearize=True)
    hv_lin = jax.tree.map(np.asarray, lin(gv))
    split, split_inputs = _split_model(mesh, xs, ys, sizes, mine, rng)
    if PID == 0:
        local = jax.local_devices()[0]
        with jax.default_device(local):
            p1 = jax.tree.map(jnp.asarray, params)
            op1 = hvp_operator(_loss, p1, (jnp.asarray(xs), jnp.asarray(ys)),
                               batch_sizes=sizes)
            ref = jax.tree.map(np.asarray, op1(jax.tree.map(jnp.asarray, v)))
            ref_trace = hutchinson_trace(op1, p1, key=key, num_probes=3).samples
            ref_quad = slq(op1, p1, key=key, num_probes=2, num_steps=6)
            split_ref = _split_reference(split_inputs, xs, ys, sizes)

        got = split["values"]
        out = {"hvp": max(_rel(hv[k], ref[k]) for k in ref),
               "hvp_linear": max(_rel(hv_lin[k], ref[k]) for k in ref),
               "trace": _rel(trace, ref_trace),
               "slq_nodes": _rel(quad.nodes, ref_quad.nodes),
               "split_unreadable": split["split_unreadable"],
               "nan_messages": split["messages"],
               "split": {k: _rel(got[k], split_ref[k]) for k in split_ref
                         if k not in EXACT},
               "split_exact": {k: got[k] == split_ref[k] for k in EXACT},
               "devices": mesh.size, "processes": jax.process_count(),
               "seconds": time.perf_counter() - start}
        with open(OUT, "w") as f:
            json.dump(out, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
