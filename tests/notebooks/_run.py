"""Execute a notebook headless with nbclient, in a kernel running *this* Python interpreter.

A throw-away kernelspec whose ``argv`` names ``sys.executable`` is written into the working
directory, so the kernel is the interpreter running pytest (the project's ``.venv``) whatever
kernelspecs the machine has installed (``~/.local/share/jupyter``, a conda ``python3``, ...).
No Jupyter set-up is needed on a fresh clone.

Usable on its own to time the notebooks::

    PRUNE_JAX_NOTEBOOK_SMOKE=1 .venv/bin/python tests/notebooks/_run.py notebooks/*.ipynb
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

KERNEL_NAME = "prune-jax-test"
NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"


def _kernel_spec_manager(root: Path) -> KernelSpecManager:
    """A spec manager that only knows one kernel: ``sys.executable -m ipykernel_launcher``."""
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "prune_jax (test)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return KernelSpecManager(kernel_dirs=[str(root / "kernels")], ensure_native_kernel=False)


def kernel_env(smoke: bool = True) -> dict[str, str]:
    """The kernel's environment: this process's, plus smoke mode and a CPU-only JAX."""
    env = dict(os.environ)
    if smoke:
        env["PRUNE_JAX_NOTEBOOK_SMOKE"] = "1"
    env.setdefault("JAX_PLATFORMS", "cpu")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    env.pop("MPLBACKEND", None)  # let `%matplotlib inline` behave as in Jupyter/Colab
    return env


def execute_notebook(path: Path, workdir: Path, *, timeout: int = 300,
                     smoke: bool = True) -> tuple[nbformat.NotebookNode, float]:
    """Run every cell of ``path`` with ``workdir`` as the current directory.

    Raises ``nbclient.exceptions.CellExecutionError`` (with the cell's traceback) on the first
    failing cell. Returns the executed notebook and the wall time in seconds.
    """
    nb = nbformat.read(str(path), as_version=4)
    workdir.mkdir(parents=True, exist_ok=True)
    km = AsyncKernelManager(kernel_name=KERNEL_NAME,
                            kernel_spec_manager=_kernel_spec_manager(workdir / ".jupyter"))
    client = NotebookClient(nb, km=km, timeout=timeout, kernel_name=KERNEL_NAME,
                            resources={"metadata": {"path": str(workdir)}})
    start = time.perf_counter()
    client.execute(env=kernel_env(smoke))
    return nb, time.perf_counter() - start


def main(paths: list[str]) -> None:
    """Execute the given notebooks (default: all) and print the wall time of each."""
    smoke = os.environ.get("PRUNE_JAX_NOTEBOOK_SMOKE", "1") == "1"
    for p in paths or sorted(str(x) for x in NOTEBOOK_DIR.glob("*.ipynb")):
        with tempfile.TemporaryDirectory() as tmp:
            _, seconds = execute_notebook(Path(p), Path(tmp), smoke=smoke, timeout=3600)
        print(f"{Path(p).name}: {seconds:.1f} s ({'smoke' if smoke else 'full'})", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
