"""Matvecs as arguments of compiled programs: hoisting, and amortising the primal work (SPEC 1.1).

Any function ``v -> A v`` is traced once with :func:`jax.make_jaxpr`; the arrays it closes
over (also inside nested ``jax.jit`` calls) become leaves of a :class:`~jax.tree_util.Partial`,
so compiled programs take them as arguments and are keyed on the jaxpr's structure only.
Amortising: ``jax.linearize`` runs the ``v``-independent work (for an HVP: the forward pass and
the gradient) once, when its residuals fit in a memory budget.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore
from jax.extend.core.primitives import jit_p
from jax.tree_util import Partial

from prune_jax.curvature.layout import FlatLayout, resolve_mesh
from prune_jax.tree import PyTree, ravel, tree_size
from prune_jax.validate import check_no_explicit_mesh

__all__ = ["JaxprFunction", "amortised", "as_operator", "compiled", "flat_operator", "hoist",
           "prepare", "worth_linearizing"]


def _subjaxprs(jaxpr: Any) -> Iterator[Any]:
    for eqn in jaxpr.eqns:
        for value in eqn.params.values():
            for item in value if isinstance(value, tuple | list) else (value,):
                if isinstance(item, jcore.ClosedJaxpr):
                    yield item.jaxpr
                elif isinstance(item, jcore.Jaxpr):
                    yield item


def _callables(jaxpr: Any) -> tuple[Any, ...]:
    """Function-valued equation parameters (custom derivative rules), compared by identity."""
    found = [v for eqn in jaxpr.eqns for v in eqn.params.values()
             if inspect.isroutine(v) or isinstance(v, functools.partial)
             or hasattr(v, "call_wrapped")]
    return tuple(found) + tuple(f for sub in _subjaxprs(jaxpr) for f in _callables(sub))


class JaxprFunction:
    """``(*consts, v) -> A v`` from a jaxpr; equal (same compiled program) for equal structure."""

    def __init__(self, jaxpr: Any, in_tree: Any, out_tree: Any):
        self.jaxpr, self.in_tree, self.out_tree = jaxpr, in_tree, out_tree
        self._key = (str(jaxpr), in_tree, out_tree)
        self._rules = _callables(jaxpr)

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, JaxprFunction) and self._key == other._key
                and len(self._rules) == len(other._rules)
                and all(a is b for a, b in zip(self._rules, other._rules, strict=True)))

    def __call__(self, *args: Any) -> PyTree:
        *consts, v = args
        if jax.tree.structure(v) != self.in_tree:
            raise ValueError(f"the operator takes pytrees with structure {self.in_tree}, got "
                             f"{jax.tree.structure(v)}")
        return _evaluate(self, consts, v)


@jax.jit(static_argnums=0)
def _evaluate(func: JaxprFunction, consts: list[Any], v: PyTree) -> PyTree:
    """One compiled program per structure (inlined when called inside another program)."""
    out = jcore.jaxpr_as_fun(jcore.ClosedJaxpr(func.jaxpr, consts))(*jax.tree.leaves(v))
    return jax.tree.unflatten(func.out_tree, out)


def _has_consts(closed: Any) -> bool:
    return bool(closed.consts) or any(_has_consts(e.params["jaxpr"])
                                      for e in closed.jaxpr.eqns if e.primitive is jit_p)


def _inline(jaxpr: Any, consts: list[Any], *args: Any) -> list[Any]:
    """Evaluate ``jaxpr``, inlining nested ``jit`` calls that close over arrays (so that those
    arrays become constants of the enclosing trace, to be hoisted with the others)."""
    env: dict[Any, Any] = dict(zip(jaxpr.constvars, consts, strict=True))
    env.update(zip(jaxpr.invars, args, strict=True))
    read = lambda v: v.val if isinstance(v, jcore.Literal) else env[v]
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        if eqn.primitive is jit_p and _has_consts(eqn.params["jaxpr"]):
            inner = eqn.params["jaxpr"]
            outs = _inline(inner.jaxpr, inner.consts, *invals)
        else:
            outs = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))
            outs = outs if eqn.primitive.multiple_results else [outs]
        env.update(zip(eqn.outvars, outs, strict=True))
    return [read(v) for v in jaxpr.outvars]


def _is_hoisted(matvec: Any) -> bool:
    return isinstance(matvec, Partial) and isinstance(matvec.func, JaxprFunction)


def _like(op: Partial) -> PyTree:
    """Zeros shaped like the argument of the hoisted ``op``."""
    leaves = [jnp.zeros(v.aval.shape, v.aval.dtype) for v in op.func.jaxpr.invars]
    return jax.tree.unflatten(op.func.in_tree, leaves)


def hoist(matvec: Callable[[PyTree], PyTree], like: PyTree, like_name: str = "like") -> Partial:
    """``matvec`` as a ``Partial(JaxprFunction, *arrays)``: every array it uses is a leaf.

    Traced once on a pytree shaped like ``like`` (``ValueError`` naming ``matvec`` when it
    cannot be applied to one); an already hoisted operator is returned unchanged.
    """
    if _is_hoisted(matvec):
        return matvec
    if not callable(matvec):
        raise TypeError(f"matvec must be callable (v -> A v), got {type(matvec).__name__}")
    spec = jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), like)
    try:
        closed, out = jax.make_jaxpr(matvec, return_shape=True)(spec)
    except Exception as err:  # re-raised naming the argument
        raise ValueError(f"matvec could not be applied to a pytree shaped like {like_name}: "
                         f"{err}") from err
    if any(_has_consts(e.params["jaxpr"]) for e in closed.jaxpr.eqns if e.primitive is jit_p):
        leaves = jax.tree.leaves(spec)
        closed = jax.make_jaxpr(lambda *x: _inline(closed.jaxpr, closed.consts, *x))(*leaves)
    func = JaxprFunction(closed.jaxpr, jax.tree.structure(spec), jax.tree.structure(out))
    return Partial(func, *closed.consts)


@jax.jit
def _linearize(op: Partial, v: PyTree) -> Partial:
    return jax.linearize(op, v)[1]


def worth_linearizing(op: Partial, linearize: bool | str, memory_budget: int | None = None,
                      devices: int = 1) -> bool:
    """``linearize`` if it is a bool; for ``"auto"``, whether the hoisted ``op`` has forward-mode
    rules and its residuals (sized with :func:`jax.eval_shape`, per device of ``devices``) fit
    in ``memory_budget`` bytes (default: a quarter of the device memory where the backend
    reports it, else an eighth of the host RAM)."""
    if isinstance(linearize, bool):
        return linearize
    if memory_budget is None:
        stats = jax.devices()[0].memory_stats() or {}
        memory_budget = (int(stats["bytes_limit"]) // 4 if "bytes_limit" in stats else
                         int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 8)
    try:
        residuals = jax.eval_shape(_linearize, op, _like(op))
    except Exception:  # no forward-mode rule, e.g.: the plain product
        return False
    nbytes = sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(residuals))
    return int(nbytes) <= memory_budget * devices


def amortised(op: Partial) -> Callable[[PyTree], PyTree]:
    """Inside a compiled program: ``op`` linearised at 0 (its ``v``-independent work runs once,
    before any loop that uses the result; for a linear ``op`` the tangent map is ``op``)."""
    return jax.linearize(op, _like(op))[1]


def flat_operator(op: Partial, layout: FlatLayout,
                  amortise: bool = False) -> tuple[Callable, Callable, Any]:
    """Inside a program: the flat padded operator (linearised first with ``amortise``), the
    unravel function and the dtype."""
    flat, unravel = ravel(_like(op))
    op = amortised(op) if amortise else op
    return layout.operator(op, unravel, flat.dtype), unravel, flat.dtype


def compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.jit(fn)`` with every keyword-only argument static."""
    names = [p.name for p in inspect.signature(fn).parameters.values()
             if p.kind == p.KEYWORD_ONLY]
    return jax.jit(fn, static_argnames=names)


def as_operator(matvec: Callable[[PyTree], PyTree], like: PyTree, *,
                linearize: bool | str = "auto", memory_budget: int | None = None,
                devices: int = 1, like_name: str = "like") -> Partial:
    """``matvec`` hoisted and, if :func:`worth_linearizing`, linearised once, here, with the
    residuals as leaves (SPEC 1.1). A hoisted operator is returned unchanged."""
    if _is_hoisted(matvec):
        return matvec
    op = hoist(matvec, like, like_name)
    if not worth_linearizing(op, linearize, memory_budget, devices):
        return op
    return hoist(_linearize(op, _like(op)), like)


def prepare(matvec: Callable[[PyTree], PyTree], like: PyTree, *, mesh: Any,
            linearize: bool | str, like_name: str = "like") -> tuple[Partial, FlatLayout, bool]:
    """The boundary of every routine that takes a matvec: the checks (structure, shapes,
    dtypes, Explicit meshes; no device sync), the hoisted operator, the layout of its flat
    vectors on ``mesh`` (default: that of ``like``'s or the operator's arrays) and whether the
    programs linearise it (an operator hoisted already, e.g. by :func:`hvp_operator`, is not)."""
    check_no_explicit_mesh(like, like_name)
    if not (isinstance(linearize, bool) or linearize == "auto"):
        raise TypeError(f"linearize must be True, False or 'auto', got {linearize!r}")
    if isinstance(matvec, Partial):
        check_no_explicit_mesh(matvec, "matvec")
    op = hoist(matvec, like, like_name)
    check_no_explicit_mesh(op, "matvec")
    out = [v.aval for v in op.func.jaxpr.outvars]
    if op.func.out_tree != op.func.in_tree or any(
            a.shape != jnp.shape(x) or not jnp.issubdtype(a.dtype, jnp.floating)
            for a, x in zip(out, jax.tree.leaves(like), strict=True)):
        got = jax.tree.unflatten(op.func.out_tree, [a.str_short() for a in out])
        raise ValueError(f"matvec({like_name}) must be a floating pytree with the structure "
                         f"and shapes of {like_name}; got {got}")
    mesh = resolve_mesh(mesh, like, op)
    amortise = not _is_hoisted(matvec) and worth_linearizing(
        op, linearize, devices=1 if mesh is None else mesh.size)
    return op, FlatLayout.of(tree_size(like), mesh), amortise
