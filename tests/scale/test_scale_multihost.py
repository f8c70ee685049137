"""Two processes on localhost = one process (multi-host launch, docs/scaling.md; slow).

Starts ``_multihost_check.py`` twice with a localhost coordinator
(``jax.distributed.initialize``), 2 simulated CPU devices each (a global 4-device mesh, CPU
collectives over gloo), each process passing only its own half of the batches; process 0
writes the deviation of the data-parallel HVP (also linearised), Hutchinson samples and SLQ
nodes from the one-process results. A second model has every leaf split 4-way over both
processes (no process can read it alone): the host value checks must still find a NaN, and
the sparsity measures, magnitude mask, a neuron-scope SAP step, loss tolerance, predicted
limit (device sort) and Hessian-row zero mass must equal the one-process results.
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
pytestmark = pytest.mark.slow  # two interpreters and a coordinator: run with -m slow


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


@pytest.mark.parametrize("check", ["hvp", "hvp_linear", "trace", "slq_nodes"])
def test_multihost_equals_one_process(report, check):
    assert report[check] < 1e-12, report


def test_split_parameters_are_not_readable_by_one_process(report):
    assert report["split_unreadable"] is True


def test_host_value_checks_find_nan_in_multiprocess_arrays(report):
    """check_finite, magnitude_mask, pq_index, gini_index and predict_sparsity_limit."""
    messages = report["nan_messages"]
    assert len(messages) == 5 and all("NaN" in m for m in messages), messages
    assert all("Dense_1/kernel" in m for m in messages[:2] + messages[3:]), messages


@pytest.mark.parametrize("check", ["pq", "gini", "pqi_bound", "tol_std", "tol_losses",
                                   "limit", "zero_l1"])
def test_multiprocess_parameters_equal_one_process(report, check):
    assert report["split"][check] < 1e-12, report["split"]


@pytest.mark.parametrize("check", ["mask_kept", "sap_mask", "zero_idx"])
def test_multiprocess_selection_is_identical(report, check):
    assert report["split_exact"][check] is True, report["split_exact"]
