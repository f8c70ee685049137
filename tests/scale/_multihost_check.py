"""One process of a two-process data-parallel HVP on localhost (run by test_scale_multihost.py).

    python _multihost_check.py PORT PROCESS_ID NUM_PROCESSES OUT_JSON

Each process is started with ``XLA_FLAGS=--xla_force_host_platform_device_count=2`` (2 CPU
devices each), calls :func:`jax.distributed.initialize` with a localhost coordinator, builds
one global ``(data=4, model=1)`` mesh over the 4 devices of both processes, passes only its
own half of the batches (``process_local=True``), and computes the exact full-data-set HVP, a
Hutchinson trace and a short SLQ with the same code as on one host. Process 0 also computes
the one-process reference on its local device and writes the deviations to ``OUT_JSON``.
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
    hutchinson_trace,
    hvp_operator,
    sharded_hvp_operator,
    slq,
)
from prune_jax.sharding import make_mesh, replicate  # noqa: E402


def _loss(params, batch):
    x, y = batch
    return jnp.mean((jnp.tanh(x @ params["w"]) @ params["u"] - y) ** 2)


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
    op = sharded_hvp_operator(_loss, gparams, (xs[mine], ys[mine]), mesh=mesh,
                              batch_sizes=sizes[mine], process_local=True)
    hv = jax.tree.map(np.asarray, op(gv))  # replicated: readable in every process
    key = jax.random.key(1)
    trace = hutchinson_trace(op, gparams, key=key, num_probes=3).samples
    quad = slq(op, gparams, key=key, num_probes=2, num_steps=6)
    if PID == 0:
        local = jax.local_devices()[0]
        with jax.default_device(local):
            p1 = jax.tree.map(jnp.asarray, params)
            op1 = hvp_operator(_loss, p1, (jnp.asarray(xs), jnp.asarray(ys)),
                               batch_sizes=sizes)
            ref = jax.tree.map(np.asarray, op1(jax.tree.map(jnp.asarray, v)))
            ref_trace = hutchinson_trace(op1, p1, key=key, num_probes=3).samples
            ref_quad = slq(op1, p1, key=key, num_probes=2, num_steps=6)

        def rel(a, b):
            return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) /
                         np.max(np.abs(np.asarray(b))))

        out = {"hvp": max(rel(hv[k], ref[k]) for k in ref),
               "trace": rel(trace, ref_trace),
               "slq_nodes": rel(quad.nodes, ref_quad.nodes),
               "devices": mesh.size, "processes": jax.process_count(),
               "seconds": time.perf_counter() - start}
        with open(OUT, "w") as f:
            json.dump(out, f)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
