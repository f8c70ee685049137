"""The iterative-pruning driver: policies, records, kill-and-resume equals uninterrupted."""

import dataclasses
import itertools
import json

import jax
import numpy as np
import pytest

from prune_jax import sparsity as S
from prune_jax.experiments import common
from prune_jax.experiments import sap as SAPX


@pytest.fixture(scope="module")
def setup():
    return common.set_up("mlp_small", "digits", key=jax.random.key(0))


def _cfg(tmp_path, **kw):
    base = dict(model="mlp_small", iterations=3, epochs=2, progress=False, out=tmp_path)
    return SAPX.Config(**{**base, **kw})


def test_make_policy():
    cfg = SAPX.Config()
    assert SAPX.make_policy("sap-1-2", cfg) == S.SAP(p=1.0, q=2.0)
    assert isinstance(SAPX.make_policy("one-shot", cfg), S.OneShot)
    with pytest.raises(ValueError, match="methods"):
        SAPX.make_policy("sap-x", cfg)
    with pytest.raises(ValueError, match="methods"):
        SAPX.make_policy("magnitude", cfg)


@pytest.mark.parametrize("method", ["sap-0.5-1", "one-shot"])
def test_records_and_resume(setup, tmp_path, method):
    key = jax.random.key(1)
    cfg = _cfg(tmp_path / "full")
    full = SAPX.run_method(method, cfg, setup, key, cfg.out)
    assert [r["iteration"] for r in full] == [0, 1, 2]
    dens = [r["density"] for r in full]
    assert dens[0] == 1.0 and all(a > b for a, b in itertools.pairwise(dens))
    if method == "one-shot":  # fraction 0.2 of the remaining, exactly
        np.testing.assert_allclose(dens, [1.0, 0.8, 0.64], atol=2e-4)
    # killed after 2 iterations: run 2, then resume to 3 from the checkpoint
    part = dataclasses.replace(cfg, iterations=2, out=tmp_path / "part")
    SAPX.run_method(method, part, setup, key, part.out)
    resumed = SAPX.run_method(method, dataclasses.replace(part, iterations=3), setup, key,
                              part.out)
    assert json.dumps(resumed) == json.dumps(full)


def test_cli_writes_json_and_plot(tmp_path):
    from prune_jax import cli

    cli.main(["sap", "--model", "mlp_small", "--iterations", "2", "--epochs", "1",
              "--methods", "sap-1-2", "lottery-ticket", "--scope", "layer", "--no-progress",
              "--out", str(tmp_path)])
    data = json.loads((tmp_path / "sap.json").read_text())
    assert set(data["records"]) == {"sap-1-2", "lottery-ticket"}
    assert (tmp_path / "sap.png").stat().st_size > 1000
