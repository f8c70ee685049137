"""Sharded = one-device results on 8 simulated CPU devices (SPEC 1.1-1.3, 2.3, 3.1, issue #7).

XLA's device count is fixed when JAX starts, so the checks run in a fresh interpreter
(``_multidevice_check.py``) with ``XLA_FLAGS=--xla_force_host_platform_device_count=8``;
this module runs it once and asserts on the JSON it prints. Everything is float64: the only
difference between the runs is the order of floating-point summation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("_multidevice_check.py")
TOL = 1e-12


@pytest.fixture(scope="module")
def report() -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, str(SCRIPT)], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("check", [
    "hvp_data8",            # pure data parallelism, 6 batches padded to 8 (zero-size)
    "hvp_data4_model2",     # 4-way data x 2-way FSDP parameters
    "slq_nodes", "slq_weights", "slq_offload_nodes", "slq_nobasis_nodes",
    "trace_samples",
    "top_values", "top_vectors", "top_offload_values", "top_offload_vectors",
    "pq_index", "pq_index_masked", "clean_gini",
    "pq_split_last_axis",       # pq_index of kernels split 8-way on their last axis
    "loss_tol_data8",           # loss_tolerance(mesh=): 6 batches on 8 devices (2 padding)
    "loss_tol_data4_model2",    # ... 4-way data x FSDP parameters
    "loss_tol_fsdp_no_mesh",    # ... FSDP parameters, no mesh (jit propagation)
    "limit_sharded",            # predict_sparsity_limit, kernels split 8-way
    "zero_mass_quantiles",      # hessian_row_zero_mass, sharded operator + FSDP params
    "zero_mass_stratified",     # ... with a key (one pick per magnitude bin)
    "hvp_linear_data8",         # sharded_hvp_operator(linearize=True) = one device
    "hvp_linear_data4_model2",
    "hvp_linear_vs_sharded",    # ... = the non-linearised sharded operator
    "slq_linear_nodes",
])
def test_sharded_equals_one_device(report, check):
    assert report["errors"][check] < TOL, report["errors"]


@pytest.mark.parametrize("scope", ["global", "neuron", "large_global"])
def test_magnitude_mask_on_sharded_params_is_identical(report, scope):
    """Small units and a 2^17-weight kernel split 8-way."""
    assert report["errors"][f"mask_{scope}"] == 0


@pytest.mark.parametrize("check", ["nan_checks_missed", "nan_leaf_unnamed",
                                   "nan_large_unnamed"])
def test_host_value_checks_find_nan_in_sharded_params(report, check):
    """check_finite, magnitude_mask, pq_index, gini_index, loss_tolerance and
    predict_sparsity_limit raise on a NaN in an FSDP-sharded kernel (naming the leaf)."""
    assert report["errors"][check] == 0, report["errors"]


def test_parameter_sharding_propagates_to_the_hvp(report):
    assert report["kernel_spec"].replace("PartitionSpec", "P") == "P(None, 'model')"


def test_lanczos_basis_is_split_over_the_devices(report):
    """Measured per-device temp memory of compiled SLQ: well below one full basis."""
    mem = report["memory"]
    assert mem["temp_bytes_per_device_sharded"] < 0.5 * mem["basis_bytes_one_device"], mem
