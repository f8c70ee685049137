"""The documentation builds with warnings as errors, and the docstrings behind it are sound.

* The Sphinx site in ``docs/`` is built once per session (a fresh output directory, ``-W
  --keep-going``; about 20-30 s on 2 CPU cores), in a subprocess so that the build's imports
  do not leak into the test process; every warning fails
  :func:`test_docs_build_without_warnings`.
* Every name of ``prune_jax.__all__``, and every name of the subpackages' ``__all__``, must be
  documented in the built API reference (read from ``objects.inv``; a name counts when the
  *same Python object* is documented under some path), and every reference from a docstring
  into prune_jax must resolve (``unresolved_prune_jax_refs.json``, written by
  ``docs/_ext/pj_docs.py``).
* Every docstring example (``>>>``) of the core modules runs as a doctest, with
  ``ELLIPSIS | NORMALIZE_WHITESPACE``. The examples see their module's globals plus ``jax``,
  ``jnp``, ``np``, ``optax``, ``Partial``, ``pj`` (= ``prune_jax``) and the public names of
  ``prune_jax`` (as a reader of the API reference does).
* Every public function of ``prune_jax.__all__`` has an example.
* The code of ``docs/getting_started.md`` and ``docs/guide/nnx.md`` runs as written.

The docs build, the checks on the built site and the code pages are marked ``slow``
(``make test-slow``); the doctests run in the default suite.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import json
import os
import pkgutil
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import prune_jax

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SUBPACKAGES = ("curvature", "limits", "sparsity", "slth", "models", "data")
DOCTEST_PACKAGES = ("tree", "ranking", "curvature", "limits", "sparsity", "slth")
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))
    return env


# --------------------------------------------------------------------------- the build

def _build(out: Path) -> dict[str, object]:
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "-q",
           "-d", str(out / "doctrees"), str(DOCS), str(out / "html")]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True,
                              timeout=900)
        returncode, log = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as err:
        returncode, log = -1, f"sphinx timed out: {err}"
    return {"returncode": returncode, "log": log, "seconds": time.perf_counter() - start}


@pytest.fixture(scope="module")
def built_docs(tmp_path_factory):
    """Build the site once per test session: ``(returncode, log, html_dir, seconds)``.

    Under pytest-xdist the workers share one build: the first to create the shared directory
    builds, the others wait for its ``result.json``.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this session
    out = base / "prune_jax_docs"
    result = out / "result.json"
    try:
        out.mkdir(parents=True)
    except FileExistsError:
        deadline = time.monotonic() + 1200
        while not result.exists():
            if time.monotonic() > deadline:
                pytest.fail("timed out waiting for another worker's documentation build")
            time.sleep(1.0)
    else:
        record: dict[str, object] = {"returncode": -1, "log": "build crashed", "seconds": 0.0}
        try:
            record = _build(out)
        finally:
            tmp = out / "result.json.tmp"
            tmp.write_text(json.dumps(record))
            tmp.replace(result)
    record = json.loads(result.read_text())
    return record["returncode"], record["log"], out / "html", record["seconds"]


@pytest.mark.slow
def test_docs_build_without_warnings(built_docs, record_property):
    returncode, log, html, seconds = built_docs
    record_property("seconds", round(seconds, 1))
    warnings = [line for line in log.splitlines() if "WARNING" in line or "ERROR" in line]
    assert returncode == 0 and not warnings, (
        f"sphinx -W failed (exit {returncode}) after {seconds:.0f} s:\n" + "\n".join(
            warnings or log.splitlines()[-30:]))
    for page in ("index", "getting_started", "cli", "differences", "results", "benchmarks",
                 "api/index", "guide/curvature", "guide/limits", "guide/sparsity",
                 "guide/structured_vs_unstructured", "guide/design"):
        assert (html / f"{page}.html").exists(), page


def _inventory(html: Path) -> dict[str, str]:
    """``{name: role}`` of every Python object in the built ``objects.inv``."""
    from sphinx.util.inventory import InventoryFile

    path = html / "objects.inv"
    assert path.exists(), "the build wrote no objects.inv"
    with path.open("rb") as f:
        inv = InventoryFile.load(f, "", lambda base, uri: uri)
    data = getattr(inv, "data", inv)
    return {name: role for role, entries in data.items() if role.startswith("py:")
            for name in entries}


def _resolve(name: str) -> object:
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(name)


def _documented_objects(html: Path) -> dict[int, str]:
    out = {}
    for name in _inventory(html):
        try:
            out.setdefault(id(_resolve(name)), name)
        except (ImportError, AttributeError):
            continue
    return out


@pytest.mark.slow
def test_every_public_name_is_in_the_api_reference(built_docs):
    _, _, html, _ = built_docs
    inventory = _inventory(html)
    missing = [n for n in prune_jax.__all__ if f"prune_jax.{n}" not in inventory]
    assert not missing, f"not documented as prune_jax.<name> in docs/api: {missing}"


@pytest.mark.slow
@pytest.mark.parametrize("package", SUBPACKAGES)
def test_every_subpackage_name_is_in_the_api_reference(built_docs, package):
    _, _, html, _ = built_docs
    documented = _documented_objects(html)
    module = importlib.import_module(f"prune_jax.{package}")
    missing = []
    for name in module.__all__:
        obj = getattr(module, name)
        if isinstance(obj, (int, float, str, bool, tuple)) or obj is None:
            # constants (e.g. MODEL_NAMES) are documented by name, not by identity
            if f"prune_jax.{package}.{name}" not in _inventory(html):
                missing.append(name)
        elif id(obj) not in documented:
            missing.append(name)
    assert not missing, f"prune_jax.{package}: not in the API reference: {missing}"


@pytest.mark.slow
def test_docstring_references_into_prune_jax_resolve(built_docs):
    _, _, html, _ = built_docs
    path = html / "unresolved_prune_jax_refs.json"
    assert path.exists(), "docs/_ext/pj_docs.py wrote no report"
    records = json.loads(path.read_text())
    lines = [f"{r['source']}: :{r['role']}:`{r['target']}` (module {r['module']})"
             for r in records]
    assert not records, "references to undocumented prune_jax objects:\n" + "\n".join(lines)


@pytest.mark.slow
def test_cli_reference_lists_every_flag(built_docs):
    import dataclasses

    from prune_jax import cli

    _, _, html, _ = built_docs
    page = (html / "cli.html").read_text()
    for command, (module_name, _) in cli.SUBCOMMANDS.items():
        assert f"prune-jax {command}" in page, command
        config = importlib.import_module(module_name).Config
        for field in dataclasses.fields(config):
            flag = "--" + field.name.replace("_", "-")
            assert flag in page, f"{command}: {flag} missing from docs/cli"


# --------------------------------------------------------------------------- doctests

def _public_modules() -> list[str]:
    names = []
    for package in DOCTEST_PACKAGES:
        module = importlib.import_module(f"prune_jax.{package}")
        names.append(module.__name__)
        if hasattr(module, "__path__"):
            names += [info.name for info in pkgutil.iter_modules(module.__path__,
                                                                  module.__name__ + ".")
                      if not info.name.rsplit(".", 1)[1].startswith("_")]
    return names


def _doctest_globals() -> dict[str, object]:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from jax.tree_util import Partial

    names = {n: getattr(prune_jax, n) for n in prune_jax.__all__}
    names.update(jax=jax, jnp=jnp, np=np, optax=optax, Partial=Partial, pj=prune_jax)
    return names


@pytest.mark.parametrize("module_name", _public_modules())
def test_docstring_examples_run(module_name):
    module = importlib.import_module(module_name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS)
    extraglobs = _doctest_globals()
    failures = []
    for test in finder.find(module, module_name, globs={**vars(module), **extraglobs}):
        report: list[str] = []
        result = runner.run(test, out=report.append)
        if result.failed:
            failures.append(f"--- {test.name} ({result.failed} of {result.attempted} failed)\n"
                            + "".join(report))
    assert not failures, "\n".join(failures)


# --------------------------------------------------------------------------- docstring contents

def _doc(obj: object) -> str:
    return inspect.getdoc(obj) or ""


def test_public_functions_have_examples():
    functions = [n for n in prune_jax.__all__
                 if callable(getattr(prune_jax, n)) and not inspect.isclass(getattr(prune_jax, n))]
    missing = [n for n in functions if ">>>" not in _doc(getattr(prune_jax, n))]
    assert not missing, f"public functions whose docstring has no example: {missing}"


# --------------------------------------------------------------------------- getting started

def _python_blocks(page: Path) -> str:
    text = page.read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert blocks, f"{page} has no python code block"
    return "\n".join(blocks)


@pytest.mark.slow
def test_getting_started_code_runs(tmp_path, record_property):
    script = tmp_path / "getting_started.py"
    script.write_text(_python_blocks(DOCS / "getting_started.md"))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=900)
    record_property("seconds", round(time.perf_counter() - start, 1))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "predicted sparsity" in proc.stdout
    for name in ("density.png", "fixed_point.png"):
        assert (tmp_path / name).stat().st_size > 0, name


@pytest.mark.slow
def test_nnx_page_code_runs(tmp_path):
    """docs/guide/nnx.md: an NNX model end to end (l1, spectrum, limit, masks, keep_pruned)."""
    script = tmp_path / "nnx.py"
    script.write_text(_python_blocks(DOCS / "guide" / "nnx.md"))
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "predicted sparsity" in proc.stdout
    assert "pruned weights still zero after an update: True" in proc.stdout
