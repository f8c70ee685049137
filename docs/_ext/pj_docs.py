"""Small build helpers of the prune_jax docs (no network, no ``exec``).

1. **Alias cross-references.** prune_jax re-exports its core functions (``prune_jax.hvp`` is
   ``prune_jax.curvature.hvp.hvp``), and docstrings refer to them by whichever path reads best
   (``:func:`prune_jax.magnitude_mask```, ``:func:`prune_jax.sparsity.apply_mask```,
   ``:func:`~prune_jax.curvature.lanczos```, ``:meth:`SpectralQuadrature.density```). Each
   object is documented once, under its public path; a reference that the Python domain cannot
   resolve is imported and, if it is the *same Python object* as a documented one, linked to
   it. Failing that, a unique documented name with the same dotted suffix is used. References
   into prune_jax that still fail are collected and written to
   ``<outdir>/unresolved_prune_jax_refs.json`` (``tests/test_docs.py`` reports them).

2. **NamedTuple fields.** ``autodoc`` would list every NamedTuple field as an attribute with
   the docstring "Alias for field number N"; the fields are documented by each class's
   ``Attributes:`` section instead, so the aliases are skipped.

3. ``pj-rest-of``: documents the names of a subpackage's ``__all__`` that the top level does
   not re-export, so that new names cannot be forgotten.

4. **Pages that include files written by other parts of the project.** ``benchmarks.md``
   includes ``benchmarks/RESULTS.md`` and the index lists ``gap.md``. While such a file does
   not exist yet, the page shows a note instead of failing the build; once it exists, the
   page includes it unchanged.

5. **Links inside included files.** ``benchmarks/RESULTS.md`` links relative to itself (so
   that it reads well on GitHub); on inclusion, such links are rewritten relative to the
   including page: pages stay page links, other existing files become download links.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_refnode

logger = logging.getLogger(__name__)

PY_ROLES = {"func", "class", "meth", "attr", "obj", "data", "exc", "mod", "const", "type"}


# --------------------------------------------------------------------------- import helpers

def import_dotted(name: str) -> tuple[bool, Any]:
    """``(found, object)`` for a dotted path ``pkg.mod.attr.attr`` (no side effects beyond
    importing modules of that path)."""
    parts = [p for p in name.split(".") if p]
    if not parts:
        return False, None
    for i in range(len(parts), 0, -1):
        modname = ".".join(parts[:i])
        try:
            obj = importlib.import_module(modname)
        except Exception:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return False, None
        return True, obj
    return False, None


def _identity(obj: Any) -> Any:
    """A key for "the same Python object" (properties/functions of classes compare by id)."""
    return id(getattr(obj, "__func__", obj))


# --------------------------------------------------------------------------- alias references

def _documented(env: BuildEnvironment) -> dict[Any, tuple[str, str, str]]:
    """``identity(object) -> (name, docname, node_id)`` of every documented py object."""
    cache = getattr(env, "_pj_documented", None)
    if cache is not None and cache[0] == len(env.get_domain("py").objects):
        return cache[1]
    domain = env.get_domain("py")
    table: dict[Any, tuple[str, str, str]] = {}
    for name, entry in sorted(domain.objects.items(), key=lambda kv: len(kv[0])):
        if getattr(entry, "aliased", False) or not name.startswith("prune_jax"):
            continue
        found, obj = import_dotted(name)
        if not found or isinstance(obj, (int, float, str, bool, type(None))):
            continue
        table.setdefault(_identity(obj), (name, entry.docname, entry.node_id))
    env._pj_documented = (len(domain.objects), table)
    return table


def _docstring_owner(node: nodes.Element) -> str | None:
    """``pkg.mod.func`` for a node from "<file>:docstring of pkg.mod.func" (autodoc sources)."""
    parent: nodes.Node | None = node
    while parent is not None:
        source = getattr(parent, "source", None)
        if source and "docstring of " in source:
            return source.rsplit("docstring of ", 1)[1].strip()
        parent = parent.parent
    return None


def _candidates(target: str, modname: str | None, clsname: str | None,
                owner: str | None = None) -> list[str]:
    """Where ``target`` may live: the directive's context, then the docstring's own module
    (``:func:`helper``` in ``pkg.mod.func``'s docstring means ``pkg.mod.helper``)."""
    target = target.lstrip(".~")
    out = []
    if modname:
        if clsname:
            out.append(f"{modname}.{clsname}.{target}")
        out.append(f"{modname}.{target}")
    if owner:
        parts = owner.split(".")
        out.extend(".".join([*parts[:i], target]) for i in range(len(parts), 0, -1))
    out.append(target)
    return list(dict.fromkeys(out))


def _by_suffix(env: BuildEnvironment, target: str, reftype: str) -> tuple[str, str, str] | None:
    domain = env.get_domain("py")
    suffix = "." + target.lstrip(".~")
    if reftype == "mod":
        hits = [(n, e.docname, e.node_id) for n, e in domain.modules.items()
                if n.endswith(suffix)]
    else:
        hits = [(n, e.docname, e.node_id) for n, e in domain.objects.items()
                if n.endswith(suffix) and not getattr(e, "aliased", False)]
    return hits[0] if len(hits) == 1 else None


def resolve_alias(app: Sphinx, env: BuildEnvironment, node: nodes.Element,
                  contnode: nodes.Element) -> nodes.Element | None:
    if node.get("refdomain") != "py" or node.get("reftype") not in PY_ROLES:
        return None
    target = node.get("reftarget", "")
    modname, clsname = node.get("py:module"), node.get("py:class")
    owner = _docstring_owner(node)
    hit = None
    if node.get("reftype") != "mod":
        table = _documented(env)
        for cand in _candidates(target, modname, clsname, owner):
            found, obj = import_dotted(cand)
            if found and _identity(obj) in table:
                hit = table[_identity(obj)]
                break
    if hit is None:
        hit = _by_suffix(env, target, node.get("reftype"))
    if hit is None:
        _record_unresolved(env, node, target, modname, clsname, owner)
        return None
    _, docname, node_id = hit
    return make_refnode(app.builder, node.get("refdoc", ""), docname, node_id, contnode)


def _record_unresolved(env: BuildEnvironment, node: nodes.Element, target: str,
                       modname: str | None, clsname: str | None, owner: str | None) -> None:
    """Remember a reference into prune_jax that resolves to nothing documented."""
    in_package = False
    for cand in _candidates(target, modname, clsname, owner):
        found, obj = import_dotted(cand)
        if found:
            home = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", None)
            in_package = str(home or "").startswith("prune_jax")
            break
    if not (target.lstrip(".~").startswith("prune_jax") or in_package
            or (node.get("reftype") in {"meth", "mod"}
                and (modname or "").startswith("prune_jax"))):
        return
    source, line = None, None
    parent: nodes.Node | None = node
    while parent is not None and (source is None or line is None):
        source = source or getattr(parent, "source", None)
        line = line or getattr(parent, "line", None)
        parent = parent.parent
    records = env.__dict__.setdefault("_pj_unresolved", [])
    records.append({"role": node.get("reftype"), "target": target, "module": modname,
                    "doc": node.get("refdoc"), "source": str(source or ""), "line": line})


def _write_unresolved(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    records = app.env.__dict__.get("_pj_unresolved", [])
    unique = {json.dumps(r, sort_keys=True): r for r in records}
    path = Path(app.outdir) / "unresolved_prune_jax_refs.json"
    path.write_text(json.dumps(sorted(unique.values(), key=lambda r: (r["target"], r["source"])),
                               indent=1))
    if unique:
        logger.info("pj_docs: %d unresolved references into prune_jax (see %s)",
                    len(unique), path)


def _reset_unresolved(app: Sphinx, env: BuildEnvironment, docnames: list[str]) -> None:
    env.__dict__["_pj_unresolved"] = []
    env.__dict__.pop("_pj_documented", None)


# --------------------------------------------------------------------------- autodoc

def skip_namedtuple_fields(app: Sphinx, what: str, name: str, obj: Any, skip: bool,
                           options: Any) -> bool | None:
    if type(obj).__name__ == "_tuplegetter":
        return True
    return None


# --------------------------------------------------------------------------- optional pages

INCLUDE_BLOCK = re.compile(r"```\{include\}\s+(?P<path>\S+)\n(?:.*\n)*?```\n", re.MULTILINE)


def optional_sources(app: Sphinx, docname: str, source: list[str]) -> None:
    srcdir = Path(app.srcdir)
    text = source[0]

    def note(rel: str) -> str:
        return (f":::{{note}}\n`{rel}` has not been written yet; this section shows its "
                "content once it exists.\n:::\n")

    # A missing included file: a note instead of an include error.
    def replace_include(m: re.Match[str]) -> str:
        path = (srcdir / Path(docname).parent / m.group("path")).resolve()
        if path.exists():
            return m.group(0)
        return note(str(path.relative_to(srcdir.parent)) if path.is_relative_to(srcdir.parent)
                    else m.group("path"))

    text = INCLUDE_BLOCK.sub(replace_include, text)
    # A missing optional page (owned elsewhere): drop it from toctrees, unlink links to it.
    for page in app.config.pj_optional_pages:
        if (srcdir / f"{page}.md").exists():
            continue
        text = re.sub(rf"^{re.escape(page)}\n", "", text, flags=re.MULTILINE)
        text = re.sub(rf"\[([^\]]+)\]\((?:\.\./)*{re.escape(page)}\.md(#[^)]*)?\)",
                      r"\1 (page not written yet)", text)
    source[0] = text


# --------------------------------------------------------------------------- pj-rest-of

class RestOf(SphinxDirective):
    """``.. pj-rest-of:: prune_jax.curvature``: autodoc every name of that subpackage's
    ``__all__`` that ``prune_jax.__all__`` does not re-export (those are documented under
    ``prune_jax.<name>`` by hand, grouped by topic) and that is not documented yet (earlier on
    the same page, say). Put it last on a page: names added to a subpackage then appear in the
    reference without editing the docs. ``:exclude:`` lists names documented by hand later;
    ``:rubric:`` is a heading shown only when there is something to document."""

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"exclude": directives.unchanged,
                                             "rubric": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        import prune_jax

        modname = self.arguments[0]
        module = importlib.import_module(modname)
        self.env.note_dependency(module.__file__)
        exclude = {n.strip() for n in self.options.get("exclude", "").split(",") if n.strip()}
        # Documented so far (this page included), by name and, under this module, by identity
        # (``prune_jax.slth.forward`` is documented as ``prune_jax.slth.networks.forward``).
        documented = self.env.get_domain("py").objects
        seen = {_identity(obj) for found, obj in
                (import_dotted(n) for n in documented if n.startswith(modname + "."))
                if found and not isinstance(obj, (int, float, str, bool, type(None)))}
        lines = []
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if (name in prune_jax.__all__ or name in exclude
                    or f"{modname}.{name}" in documented or _identity(obj) in seen):
                continue
            if inspect.isclass(obj):
                kind = "autoclass"
            elif callable(obj):
                kind = "autofunction"
            else:
                kind = "autodata"
            lines.append(f".. {kind}:: {modname}.{name}")
            if kind == "autodata":
                lines.append("   :no-value:")
            lines.append("")
        if not lines:
            return []
        out: list[nodes.Node] = []
        if "rubric" in self.options:
            out.append(nodes.rubric(text=self.options["rubric"]))
        return out + self.parse_text_to_nodes("\n".join(lines))


LINK = re.compile(r"(?<!!)\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?P<title>\s+\"[^\"]*\")?\)")
URL_LIKE = re.compile(r"^([a-z][a-z0-9+.-]*:|#|/|\{)", re.IGNORECASE)


def rewrite_included_links(app: Sphinx, relative_path: Path, parent_docname: str,
                           content: list[str]) -> None:
    """Links of an included Markdown file are written relative to *that* file (so they work
    on GitHub, e.g. ``[bench_hvp.py](bench_hvp.py)`` in ``benchmarks/RESULTS.md``). Rewrite
    them relative to the including page: documentation pages become page links, other files
    that exist become download links (``path:``), anything else is left alone (and warns)."""
    srcdir = Path(app.srcdir).resolve()
    included = (srcdir / relative_path).resolve()
    parents = [d for d in app.env.found_docs if Path(d).name == parent_docname]
    base = (srcdir / Path(parents[0]).parent) if len(parents) == 1 else srcdir
    suffixes = tuple(app.config.source_suffix)

    def fix(m: re.Match[str]) -> str:
        target = m.group("target")
        if URL_LIKE.match(target):
            return m.group(0)
        path, _, anchor = target.partition("#")
        resolved = (included.parent / path).resolve()
        if not resolved.exists():
            return m.group(0)
        rel = os.path.relpath(resolved, base)
        if resolved.is_relative_to(srcdir) and resolved.suffix in suffixes:
            new = rel + (f"#{anchor}" if anchor else "")
        else:
            new = f"path:{rel}"
        return f"[{m.group('text')}]({new}{m.group('title') or ''})"

    parts = re.split(r"(^```.*?^```)", content[0], flags=re.MULTILINE | re.DOTALL)
    content[0] = "".join(part if part.startswith("```") else LINK.sub(fix, part)
                         for part in parts)


def setup(app: Sphinx) -> dict[str, object]:
    app.add_config_value("pj_optional_pages", ["gap"], "env")
    app.connect("missing-reference", resolve_alias)
    app.connect("env-before-read-docs", _reset_unresolved)
    app.connect("build-finished", _write_unresolved)
    app.connect("autodoc-skip-member", skip_namedtuple_fields)
    app.connect("source-read", optional_sources)
    app.connect("include-read", rewrite_included_links)
    app.add_directive("pj-rest-of", RestOf)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True,
            "env_version": 1}
