"""The one harness of the curvature benchmarks: flags, machine, threads, timing, tables, JSON.

Every curvature benchmark builds its command line with :func:`parser` (``--threads``,
``--repeats``, ``--seed``, ``--json``), calls :func:`start` (threads, then one line about the
machine and its load), times its contenders with :func:`interleaved` (short calls, medians)
or :func:`alternate` (whole end-to-end runs), and ends with :func:`finish` (the load at the
end, and the JSON file when asked).

Timing on a shared machine: contenders alternate inside one run (round-robin, the order
rotated every round), so that the load of other processes hits all of them alike; JAX results
go through ``jax.block_until_ready``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

try:  # torch is needed only by the benchmarks with a PyTorch peer
    import torch
except ImportError:  # pragma: no cover
    torch = None

_THREADS: list[int] = []


def num_cores() -> int:
    """CPU cores this process may use (the affinity mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def configure_threads(threads: int | None = None) -> int:
    """Give XLA's CPU backend and torch the same number of threads (``None``: all cores).

    XLA sizes its thread pool from the CPU affinity mask when its backend starts, so the mask
    is narrowed to ``threads`` cores while the backend starts and then restored; torch gets
    ``torch.set_num_threads``. Call before the first JAX computation.
    """
    allowed = sorted(os.sched_getaffinity(0))
    n = len(allowed) if threads is None else max(1, min(int(threads), len(allowed)))
    if n < len(allowed):
        os.sched_setaffinity(0, set(allowed[:n]))
        try:
            jax.devices()
        finally:
            os.sched_setaffinity(0, set(allowed))
    else:
        jax.devices()
    if torch is not None:
        torch.set_num_threads(n)
    _THREADS[:] = [n]
    return n


def cpu_model() -> str:
    """``lscpu`` model name (or ``platform.processor()``)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    """The 1/5/15-minute load averages as ``"a / b / c"`` (``uptime``)."""
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> dict[str, Any]:
    """The machine, the versions, the threads and the current load."""
    dev = jax.devices()[0]
    return {"device": f"{dev.platform} ({dev.device_kind})", "cpu": cpu_model(),
            "cores": num_cores(), "jax": jax.__version__,
            "torch": None if torch is None else torch.__version__,
            "threads": _THREADS[0] if _THREADS else num_cores(), "load": load_average()}


def machine_header() -> str:
    """:func:`machine` as one line."""
    return "; ".join(f"{k} {v}" for k, v in machine().items())


def parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser with the flags every benchmark shares."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=None,
                    help="threads for XLA and torch alike (default: all cores)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of alternated timing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    return ap


def start(args: argparse.Namespace) -> dict[str, Any]:
    """Configure the threads and print the machine line; return the record to fill."""
    configure_threads(args.threads)
    record = {"machine": machine(), "args": vars(args)}
    print(machine_header())
    return record


def finish(args: argparse.Namespace, record: dict[str, Any]) -> None:
    """Print the load at the end; write ``record`` to ``--json`` when given."""
    record["load_end"] = load_average()
    print(f"load average at the end: {record['load_end']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(record, f, indent=2, default=_jsonable)


def _jsonable(x: Any) -> Any:
    if isinstance(x, np.ndarray | np.generic | jax.Array):
        return np.asarray(x).tolist()
    return str(x)


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1,
                budget_s: float = float("inf"), min_samples: int = 2,
                sample_s: float = 0.05) -> dict[str, list[float]]:
    """Seconds per call of each ``fn()`` over ``repeats`` rounds, contenders alternated.

    Each function is warmed up first (compilation); the last warm-up call sets how many calls
    make one sample (about ``sample_s`` seconds). A contender whose samples add up to more
    than ``budget_s`` (with ``min_samples``) sits out the remaining rounds.
    """
    number: dict[str, int] = {}
    for name, fn in fns.items():
        for _ in range(max(warmup, 1)):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            last = time.perf_counter() - t0
        number[name] = max(1, int(sample_s / max(last, 1e-9)))
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            if len(times[name]) >= min_samples and sum(times[name]) * number[name] > budget_s:
                continue
            t0 = time.perf_counter()
            for _ in range(number[name]):
                jax.block_until_ready(fns[name]())
            times[name].append((time.perf_counter() - t0) / number[name])
    return times


def alternate(runs: dict[str, Callable[[], dict[str, Any]]],
              rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Whole runs (each returns a dict, e.g. of timings and values), alternated over rounds."""
    names = list(runs)
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            out[name].append(runs[name]())
    return out


def median(xs: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return statistics.median(xs)


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median over rounds of ``num[i] / den[i]`` (pairs measured in the same round)."""
    return statistics.median(a / b for a, b in zip(num, den, strict=False))


def fmt_ms(seconds: float) -> str:
    """Seconds as milliseconds with 3 significant digits."""
    return f"{seconds * 1e3:.3g}"


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A markdown table under a title line."""
    cells = [[str(c) for c in columns]] + [[str(x) for x in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    print(f"\n{title}")
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
    print(line(cells[0]))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for r in cells[1:]:
        print(line(r))
