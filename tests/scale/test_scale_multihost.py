"""Two processes on localhost = one process (multi-host launch, docs/scaling.md, issue #7).

Starts ``_multihost_check.py`` twice with a localhost coordinator
(``jax.distributed.initialize``), 2 simulated CPU devices each (a global 4-device mesh, CPU
collectives over gloo), each process passing only its own half of the batches; process 0
writes the deviation of the data-parallel HVP, Hutchinson samples and SLQ nodes from the
one-process results.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("_multihost_check.py")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("multihost") / "out.json"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, str(SCRIPT), str(port), str(pid), "2", str(out)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for pid in (0, 1)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(x[-3000:] for x in logs)
    return json.loads(out.read_text())


def test_two_processes_form_one_mesh(report):
    assert report["processes"] == 2 and report["devices"] == 4


@pytest.mark.parametrize("check", ["hvp", "trace", "slq_nodes"])
def test_multihost_equals_one_process(report, check):
    assert report[check] < 1e-12, report
