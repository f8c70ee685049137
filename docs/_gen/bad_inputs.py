"""Run every bad input of docs/bad_inputs.md and write that page (exact messages and timings).

    .venv/bin/python docs/_gen/bad_inputs.py            # rewrites docs/bad_inputs.md

Command-line cases run as subprocesses (``prune-jax ...``); the time is the whole process,
start-up and imports included, until the error. Library cases run in one Python process each;
the time is that of the failing call alone (imports excluded).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "bad_inputs.md"
CLI = [sys.executable, "-m", "prune_jax.cli"]

COMMANDS = [
    "limit --eps -1",
    "limit --eps nan",
    "limit --learning-rate nan",
    "limit --learning-rate 0",
    "limit --probes 0",
    "limit --steps 1",
    "limit --epochs 0",
    "limit --l1=-1e-4",
    "limit --tolerance 2",
    "limit --sweep-resolution 0",
    "limit --model foo",
    "limit --dataset imagenet",
    "limit --spectrum dense",
    "limit --out /proc/x",
    "limit --model cnn_small --dataset mnist1d --out {tmp}/a",
    "limit --batch-size 5000 --out {tmp}/b",
    "limit --model mlp --spectrum exact --out {tmp}/c",
    "limit --learning-rate 1e38 --epochs 2 --model linear --out {tmp}/d",
    "sap --iterations 0",
    "sap --methods sap-2-1",
    "sap --methods magic",
    "sap --beta 1.5",
    "calibrate --runs digits",
    "calibrate --l1-budgets -1",
    "gap --smoke --dims 3",
]

LIBRARY = [
    ("magnitude_mask(params, 1.5)", "pj.magnitude_mask(params, 1.5)"),
    ("magnitude_mask(params, 0.5, scope='row')", "pj.magnitude_mask(params, 0.5, scope='row')"),
    ("keep_pruned(float mask 0.5)",
     "pj.keep_pruned(jax.tree.map(lambda x: jnp.full(x.shape, 0.5), params))"),
    ("apply_mask(params, int mask)",
     "pj.apply_mask(params, jax.tree.map(lambda x: jnp.ones(x.shape, int), params))"),
    ("pq_index(w, p=2, q=1)", "pj.pq_index(params, p=2.0, q=1.0)"),
    ("pq_index of all-zero weights", "pj.pq_index(jax.tree.map(jnp.zeros_like, params))"),
    ("predict_sparsity_limit: 10 eigenvalues for 56 weights",
     "pj.predict_sparsity_limit(params, jnp.ones(10), 0.1)"),
    ("predict_sparsity_limit(eps=0)", "pj.predict_sparsity_limit(params, jnp.ones(56), 0.0)"),
    ("projected_width_fraction(zero_mass=2)",
     "pj.projected_width_fraction(jnp.ones(3), 1.0, 0.1, zero_mass=2.0)"),
    ("hvp with v of another shape",
     "pj.hvp(lambda p: jnp.sum(p['Dense_0']['kernel'] ** 4), params, "
     "jax.tree.map(lambda x: jnp.ones(x.shape + (1,)), params))"),
    ("slq(num_probes=0)",
     "pj.slq(lambda v: v, params, key=jax.random.key(0), num_probes=0, num_steps=4)"),
    ("top_eigenvalues(key=0)",
     "pj.top_eigenvalues(lambda v: v, params, key=0, k=1, num_steps=4)"),
    ("shuffled_loss_tolerance(batch_size larger than half the data)",
     "pj.shuffled_loss_tolerance(lambda p, b: jnp.mean(b['x']), params, "
     "{'x': jnp.ones(10)}, batch_size=8, key=jax.random.key(0))"),
]

PRELUDE = """
import time, jax, jax.numpy as jnp, prune_jax as pj
params = {'Dense_0': {'kernel': jnp.ones((4, 8)) * jnp.arange(1, 33.0).reshape(4, 8),
                      'bias': jnp.zeros(8)},
          'Dense_1': {'kernel': jnp.arange(1, 25.0).reshape(8, 3), 'bias': jnp.zeros(3)}}
t0 = time.perf_counter()
try:
    CALL
    out = {'error': None}
except Exception as err:
    out = {'error': type(err).__name__, 'message': str(err)}
out['seconds'] = time.perf_counter() - t0
print('@@' + __import__('json').dumps(out))
"""


def _env() -> dict[str, str]:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3",
            "MPLBACKEND": "Agg", "PYTHONPATH": str(ROOT)}


def run_command(args: str, tmp: str) -> dict:
    argv = args.format(tmp=tmp).split()
    t0 = time.perf_counter()
    proc = subprocess.run([*CLI, *argv, "--no-progress"] if argv[0] != "gap" else [*CLI, *argv],
                          capture_output=True, text=True, env=_env(), cwd=tmp)
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    msg = next((ln for ln in lines if "error" in ln or "diverged" in ln), lines[-1] if lines
               else "")
    return {"input": f"prune-jax {args.format(tmp='...')}", "exit": proc.returncode,
            "seconds": time.perf_counter() - t0, "message": msg,
            "traceback": "Traceback" in proc.stderr}


def run_library(name: str, call: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", PRELUDE.replace("CALL", call)], capture_output=True,
                          text=True, env=_env())
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("@@")), None)
    if line is None:
        return {"input": name, "exit": "crash", "seconds": float("nan"),
                "message": proc.stderr.strip().splitlines()[-1:]}
    out = json.loads(line[2:])
    return {"input": name, "exit": out["error"] or "no error", "seconds": out["seconds"],
            "message": out.get("message", "")}


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for args in COMMANDS:
            rows.append(run_command(args, tmp))
            print(rows[-1], file=sys.stderr)
        for name, call in LIBRARY:
            rows.append(run_library(name, call))
            print(rows[-1], file=sys.stderr)
    load = os.getloadavg()[0]
    lines = [
        "# Bad input: what each one says, and how fast",
        "",
        "Every row was run by `docs/_gen/bad_inputs.py`, which writes this page. Command-line",
        "errors exit with status 2 (as argparse does) and print one message that names the flag,",
        "with no traceback; a diverging run exits with status 1. The time of a command is the",
        "whole process (start-up and imports included); that of a library call is the call alone.",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} when run.",
        "",
        "| # | input | exit | time (s) | message |",
        "|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows, 1):
        msg = str(r["message"]).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {i} | `{r['input']}` | {r['exit']} | {r['seconds']:.2f} | {msg} |")
    PAGE.write_text("\n".join(lines) + "\n")
    bad = [r for r in rows if r.get("traceback") or r["exit"] in (0, "no error", "crash")]
    print(f"wrote {PAGE} ({len(rows)} rows; {len(bad)} without a clean error)", file=sys.stderr)
    for r in bad:
        print("  not clean:", r, file=sys.stderr)


if __name__ == "__main__":
    main()
