"""Sphinx configuration of the prune_jax documentation.

Build (warnings are errors):

    .venv/bin/python -m sphinx -W --keep-going -b html docs docs/_build/html

Pages are MyST markdown; the API reference is generated from docstrings by autodoc (Google
style, read by napoleon); the CLI reference is generated from the argparse parser at build time
(``_ext/cli_ref.py``). No extension needs the network: intersphinx is off, MathJax is loaded by
the reader's browser.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))           # import prune_jax from the checkout
sys.path.insert(0, str(DOCS / "_ext"))  # local extensions

# Importing prune_jax must not try an accelerator or print TensorFlow noise.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MPLBACKEND", "Agg")

import prune_jax  # noqa: E402

# -- project -----------------------------------------------------------------------------------
project = "prune_jax"
author = "prune_jax contributors"
copyright = "prune_jax contributors"
release = prune_jax.__version__
version = release

# -- general -----------------------------------------------------------------------------------
extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "cli_ref",        # _ext/cli_ref.py: ``{cli-help}`` renders `prune-jax <cmd> --help`
    "pj_docs",        # _ext/pj_docs.py: alias cross-references, optional pages
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store", "**/.ipynb_checkpoints", "img/*.md"]
templates_path: list[str] = []
nitpicky = False          # type hints name jax/numpy/optax types, and intersphinx is off
default_role = "code"     # `x` in docstrings is inline code, as in the source comments
pygments_style = "sphinx"
pygments_dark_style = "monokai"

# -- MyST --------------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist", "attrs_inline"]
myst_heading_anchors = 3
myst_dmath_double_inline = True

# -- autodoc / napoleon ------------------------------------------------------------------------
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True
autodoc_inherit_docstrings = False
autodoc_mock_imports: list[str] = []
# The package uses ``from __future__ import annotations``: show its aliases by name, not as
# what they expand to (``PyTree`` is ``Any``, ``Prunable`` a long ``Callable``).
autodoc_type_aliases = {
    "PyTree": "prune_jax.tree.PyTree",
    "Array": "jax.Array",
    "Prunable": "prune_jax.tree.Prunable",
    "Scope": "prune_jax.sparsity.Scope",
    "Policy": "prune_jax.sparsity.Policy",
}

try:  # Sphinx renders an alias nested in a union as "TypeAliasForwardRef('...')": show its name
    from sphinx.util.inspect import TypeAliasForwardRef

    TypeAliasForwardRef.__repr__ = lambda self: str(self.name)
except ImportError:  # pragma: no cover - a Sphinx without the class needs no patch
    pass

napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = False
napoleon_attr_annotations = True
add_module_names = False
python_display_short_literal_types = True

# -- HTML --------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"prune_jax {release}"
html_static_path: list[str] = []
html_show_sourcelink = True
html_theme_options = {
    "source_directory": "docs/",
    "navigation_with_keys": True,
}
