"""Peak memory of SLQ in each Lanczos memory mode vs the ``m x D`` estimate (SPEC 1.2, issue #7).

    python benchmarks/bench_memory.py [--dim 25000000] [--steps 8] [--probes 1]
                                      [--modes device,host,none] [--no-sharded]

A synthetic operator, not a network: ``H = diag(d)`` on a pytree of ``--dim`` float32
parameters (four leaves shaped like a conv kernel, two dense kernels and a bias), so that the
memory of the Lanczos vectors dominates and one product is cheap. Each memory mode runs in a
fresh process (so peaks do not mix) with ``--probes`` probes of ``--steps`` steps:

* ``device``: full re-orthogonalisation, the ``(m + 1, D)`` basis in device memory;
* ``host``:   the basis offloaded to host memory (``offload_basis=True``; on CPU the memory
  kinds are the same RAM, so the *total* is unchanged and only the device-resident estimate
  differs; on a GPU the device part is what the accelerator holds);
* ``none``:   no stored basis (``reorthogonalize=False``), three vectors in flight.

Measured: the peak resident set size (RSS, sampled every 2 ms by a thread with ``psutil``)
during ``slq`` minus the RSS just before it (parameters, operator and JAX runtime excluded),
the process's ``ru_maxrss``, and XLA's compiled ``temp_size_in_bytes`` for one Lanczos run
built from the public factory (``lanczos_tridiag`` with the device or host basis);
``jax.devices()[0].memory_stats()`` where the backend reports it (not on CPU). The estimate
is ``rows x D x 4`` bytes with ``rows`` = ``m + 1`` basis rows with the basis on the device, a
streamed block plus 4 vectors when it is offloaded, 4 vectors without a basis, and, for the
total, the host basis added back.

Then, unless ``--no-sharded``: the per-device memory XLA plans for the same Lanczos run on 8
simulated CPU devices (compiled, not run), with the flat basis split over the devices (what
the estimators do on a mesh) and without the constraint, against ``(m + 1) D / 8``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

MB = 2.0**20


def _params_shapes(dim: int) -> dict[str, tuple[int, ...]]:
    """Leaf shapes summing to exactly ``dim`` (a conv kernel, two dense kernels, a bias)."""
    conv = (3, 3, 64, 128)  # 73,728
    dense1 = (2048, 2048) if dim >= 2**23 else (64, 64)
    bias = (1000,)
    used = int(sum(int(_prod(s)) for s in (conv, dense1, bias)))
    rest = dim - used
    if rest < 1:
        raise SystemExit(f"--dim must be larger than {used}")
    return {"conv": conv, "dense1": dense1, "dense2": (rest,), "bias": bias}


def _prod(shape: tuple[int, ...]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


class _PeakRSS:
    """Peak RSS of this process, sampled by a background thread."""

    def __init__(self, interval: float = 0.002) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> _PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _lanczos_temp(diag: object, dim: int, steps: int, mode: str, mesh: object = None) -> int:
    """XLA temp bytes (per device) of one compiled Lanczos run on ``x -> diag * x``."""
    import jax

    from prune_jax.curvature.layout import FlatLayout
    from prune_jax.curvature.offload import host_basis
    from prune_jax.curvature.tridiag import lanczos_tridiag

    layout = FlatLayout.of(dim, mesh)
    run = lanczos_tridiag(steps, reortho="none" if mode == "none" else "full", layout=layout,
                          basis=host_basis(layout, steps) if mode == "host" else None)
    fn = jax.jit(lambda d: run(lambda y: layout.pad(layout.unpad(y) * d), layout.pad(d),
                               layout.pad(d))[:2])
    return int(fn.lower(diag).compile().memory_analysis().temp_size_in_bytes)


def worker(mode: str, dim: int, steps: int, probes: int) -> dict:
    """One memory mode in this (fresh) process; returns the measurements."""
    import jax
    import jax.numpy as jnp
    import psutil

    from prune_jax.curvature import slq
    from prune_jax.curvature.offload import block_rows

    shapes = _params_shapes(dim)
    keys = jax.random.split(jax.random.key(0), len(shapes))
    diag = {n: jax.random.uniform(k, s, jnp.float32) for k, (n, s) in
            zip(keys, shapes.items(), strict=True)}
    like = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), diag)
    jax.block_until_ready(diag)
    reorth = mode != "none"
    offload = mode == "host"
    kwargs = dict(num_probes=probes, num_steps=steps, reorthogonalize=reorth,
                  offload_basis=offload, max_memory_bytes=2**40)

    # the first call, compilation included: a warm-up would leave the runtime's freed
    # buffers pooled, and the pool would hide the Lanczos vectors from an RSS difference
    before = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    with _PeakRSS() as peak:
        quad = slq(lambda v: jax.tree.map(jnp.multiply, diag, v), like, key=jax.random.key(1),
                   **kwargs)
    seconds = time.perf_counter() - t0
    temp = _lanczos_temp(jax.ShapeDtypeStruct((dim,), jnp.float32), dim, steps, mode)
    rows = (block_rows(steps) + 4) if offload else (steps + 1 if reorth else 4)
    per_probe = probes if not offload else 1
    device_est = rows * dim * 4 * per_probe
    total_est = device_est + ((steps + 1) * dim * 4 if offload else 0)  # + the host basis
    stats = jax.devices()[0].memory_stats()
    return {"mode": mode, "dim": dim, "steps": steps, "probes": probes,
            "peak_rss_increase": peak.peak - before,
            "ru_maxrss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "xla_temp": temp, "device_estimate": device_est, "total_estimate": total_est,
            "device_peak_bytes": None if not stats else stats.get("peak_bytes_in_use"),
            "seconds": seconds, "max_node": float(quad.nodes.max())}


def sharded_worker(dim: int, steps: int) -> dict:
    """Per-device compiled memory on 8 simulated devices, basis split vs unconstrained."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from prune_jax.curvature.layout import FlatLayout
    from prune_jax.sharding import make_mesh

    mesh = make_mesh(data=8)
    # replicated diagonal (like a pure data-parallel HVP's replicated output)
    diag = jax.ShapeDtypeStruct((dim,), jnp.float32, sharding=NamedSharding(mesh, P()))
    return {"dim": dim, "steps": steps, "devices": 8,
            "split": _lanczos_temp(diag, dim, steps, "device", mesh),
            "unconstrained": _lanczos_temp(diag, dim, steps, "device"),
            "padded": FlatLayout.of(dim, mesh).padded}


def _run_worker(args: list[str], env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *args],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dim", type=int, default=25_000_000)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--probes", type=int, default=1)
    parser.add_argument("--modes", default="device,host,none")
    parser.add_argument("--no-sharded", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "sharded":
        print(json.dumps(sharded_worker(args.dim, args.steps)))
        return
    if args.worker:
        print(json.dumps(worker(args.worker, args.dim, args.steps, args.probes)))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _harness import load_average, machine_header, print_table  # not in the workers

    print(machine_header())
    print(f"D = {args.dim:,} float32 (diagonal operator), m = {args.steps} steps, "
          f"{args.probes} probe(s); one vector = {args.dim * 4 / MB:.0f} MiB")
    rows = []
    common = ["--dim", str(args.dim), "--steps", str(args.steps), "--probes", str(args.probes)]
    for mode in args.modes.split(","):
        r = _run_worker(["--worker", mode, *common])
        rows.append([mode, f"{r['device_estimate'] / MB:.0f}", f"{r['total_estimate'] / MB:.0f}",
                     f"{r['peak_rss_increase'] / MB:.0f}",
                     f"{r['peak_rss_increase'] / r['total_estimate']:.2f}",
                     f"{r['xla_temp'] / MB:.0f}", f"{r['ru_maxrss'] / MB:.0f}",
                     f"{r['seconds']:.1f}"])
    print_table("SLQ peak memory by Lanczos memory mode (MiB)",
                ["mode", "device est.", "total est.", "peak RSS incr.", "measured/total est.",
                 "XLA temp", "ru_maxrss", "time s"], rows)

    if not args.no_sharded:
        env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
               "JAX_PLATFORMS": "cpu"}
        s = _run_worker(["--worker", "sharded", "--dim", str(args.dim), "--steps",
                         str(args.steps)], env=env)
        est = (args.steps + 1) * s["padded"] // 8 * 4
        full = (args.steps + 1) * args.dim * 4
        print_table(f"Per-device XLA temp memory of one Lanczos run on 8 simulated devices "
                    f"(MiB; basis {full / MB:.0f} on one device, {est / MB:.0f} per device "
                    "when split)",
                    ["flat basis", "per-device temp", "measured/split est."],
                    [["split over the mesh (slq on a mesh)", f"{s['split'] / MB:.0f}",
                      f"{s['split'] / est:.2f}"],
                     ["unconstrained (XLA propagation only)",
                      f"{s['unconstrained'] / MB:.0f}", f"{s['unconstrained'] / est:.2f}"]])
    print(f"load average at the end: {load_average()}")


if __name__ == "__main__":
    main()
