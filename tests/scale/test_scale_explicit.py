"""The toolkit on a mesh with Explicit axes (``jax.make_mesh``'s default) = one device.

The checks run in a fresh interpreter with 8 simulated CPU devices (``_explicit_check.py``);
this module runs it once and asserts on the JSON it prints. See ``prune_jax.tree.on_auto_mesh``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("_explicit_check.py")


@pytest.fixture(scope="module")
def errors() -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True,
                          text=True, timeout=600, check=False, cwd=SCRIPT.parent)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])["errors"]


@pytest.mark.parametrize("scope", ["global", "layer", "neuron", "large"])
def test_masks_are_identical(errors, scope):
    assert errors[f"mask_{scope}"] == 0


@pytest.mark.parametrize("scope", ["global", "layer", "neuron"])
def test_masks_come_back_sharded_like_the_params(errors, scope):
    """On the caller's Explicit mesh, with each weight's partition spec."""
    assert errors[f"mask_{scope}_placement"] == 0


@pytest.mark.parametrize("check", ["pq_index", "pq_index_masked", "gini", "bound", "sap_pqi",
                                   "slq_nodes", "slq_weights", "trace", "top_values",
                                   "lanczos_alpha", "limit_sparsity", "loss_tolerance"])
def test_results_equal_one_device(errors, check):
    assert errors[check] < 1e-12, errors


@pytest.mark.parametrize("check", ["sap_mask", "fraction_mask"])
def test_pruning_steps_are_identical(errors, check):
    assert errors[check] == 0


def test_closure_over_explicit_arrays_gets_a_clear_error(errors):
    assert errors["closure_hint"] == 0
