"""The research notebooks run headless, end to end, in smoke mode; committed copies are clean.

Each notebook is executed with nbclient in a kernel running this interpreter (see ``_run.py``),
with ``PRUNE_JAX_NOTEBOOK_SMOKE=1`` in the kernel's environment and a temporary working
directory; an error in any cell fails the test.
"""

from pathlib import Path

import nbformat
import pytest
from _run import NOTEBOOK_DIR, execute_notebook

NOTEBOOKS = (
    "01_hessian_spectrum",
    "02_pruning_limit",
    "03_pq_index_sap",
    "04_structured_vs_unstructured",
)
CELL_TIMEOUT_S = 300


def _path(name: str) -> Path:
    return NOTEBOOK_DIR / f"{name}.ipynb"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_executes_in_smoke_mode(name, tmp_path, record_property):
    nb, seconds = execute_notebook(_path(name), tmp_path, timeout=CELL_TIMEOUT_S)
    record_property("seconds", round(seconds, 1))
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors
    # every notebook shows at least one figure inline
    images = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{name}: no inline figure was produced"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_clean(name):
    nb = nbformat.read(str(_path(name)), as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{name}: cell {i} has outputs (strip them)"
            assert cell.execution_count is None, f"{name}: cell {i} has an execution count"
    # first cell: the guarded install (a no-op when prune_jax is importable, e.g. offline)
    first = nb.cells[0]
    assert first.cell_type == "code"
    assert 'find_spec("prune_jax") is None' in first.source and "pip" in first.source
    # a parameters cell right after the title, with the smoke switch and the data set choice
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert 'SMOKE = os.environ.get("PRUNE_JAX_NOTEBOOK_SMOKE") == "1"' in code[1]
    assert "DATASET = " in code[1]
    assert any("%matplotlib inline" in c for c in code)


def test_readme_lists_every_notebook():
    readme = (NOTEBOOK_DIR / "README.md").read_text()
    for name in NOTEBOOKS:
        assert f"{name}.ipynb" in readme
