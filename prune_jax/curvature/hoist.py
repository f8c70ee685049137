"""Matvecs as arguments of compiled programs: hoisting, and amortising the primal work (SPEC 1.1).

Any function ``v -> A v`` (a lambda, a ``functools.partial``, a closure over data and
parameters, a :class:`~jax.tree_util.Partial`) is traced once with :func:`jax.make_jaxpr`; the
arrays it closes over (also those inside nested ``jax.jit`` calls, which are inlined) become the
*leaves* of a :class:`~jax.tree_util.Partial` whose function evaluates the jaxpr. Passed to a
jitted routine, those arrays are traced arguments, never constants folded into the program,
and the compiled program is keyed on the jaxpr's *structure*, so a new matvec of the same
shapes and new values reuses it.

Amortising: for a linear ``A``, ``jax.linearize(A, v)`` evaluates once every part of ``A``
that does not depend on ``v`` (for an HVP: the forward pass and the gradient at the
parameters) and keeps what the tangent pass needs as residuals; each product then runs only
the tangent pass. It is used when the residuals fit in a memory budget.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore
from jax.extend.core.primitives import jit_p
from jax.tree_util import Partial

from prune_jax.curvature.layout import FlatLayout, resolve_mesh
from prune_jax.tree import PyTree, tree_size
from prune_jax.validate import check_no_explicit_mesh

__all__ = ["JaxprFunction", "Prepared", "amortised", "as_operator", "check_output",
           "default_memory_budget", "hoist", "prepare", "worth_linearizing"]


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
        self._text = str(jaxpr)
        self._rules = _callables(jaxpr)

    def __hash__(self) -> int:
        return hash((self._text, self.in_tree, self.out_tree))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, JaxprFunction) and self._text == other._text
                and self.in_tree == other.in_tree and self.out_tree == other.out_tree
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


def _spec(like: PyTree) -> PyTree:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(jnp.shape(x), jnp.result_type(x)), like)


def hoist(matvec: Callable[[PyTree], PyTree], like: PyTree, like_name: str = "like") -> Partial:
    """``matvec`` as a ``Partial(JaxprFunction, *arrays)``: every array it uses is a leaf.

    Traced once on a pytree shaped like ``like`` (``ValueError`` naming ``matvec`` when it
    cannot be applied to one); an already hoisted operator is returned unchanged.
    """
    if isinstance(matvec, Partial) and isinstance(matvec.func, JaxprFunction):
        return matvec
    if not callable(matvec):
        raise TypeError(f"matvec must be callable (v -> A v), got {type(matvec).__name__}")
    spec = _spec(like)
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


def default_memory_budget() -> int:
    """Bytes the amortised operator may keep: a quarter of the device memory where the backend
    reports it (``memory_stats()["bytes_limit"]``, GPU/TPU), else an eighth of the host RAM."""
    stats = jax.devices()[0].memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) // 4
    return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) // 8


def _nbytes(tree: PyTree) -> int:
    return int(sum(np.prod(x.shape, dtype=np.int64) * np.dtype(x.dtype).itemsize
                   for x in jax.tree.leaves(tree)))


def worth_linearizing(op: Partial, like: PyTree, linearize: bool | str,
                      memory_budget: int | None = None, devices: int = 1) -> bool:
    """Whether to amortise the hoisted ``op`` with ``jax.linearize``: ``linearize`` if it is a
    bool; for ``"auto"``, whether the residuals (sized with :func:`jax.eval_shape`, divided by
    ``devices`` for an operator split over a mesh) fit in ``memory_budget`` bytes (default
    :func:`default_memory_budget`) and the matvec has forward-mode rules."""
    if isinstance(linearize, bool):
        return linearize
    budget = default_memory_budget() if memory_budget is None else memory_budget
    try:
        residuals = jax.eval_shape(_linearize, op, _zeros(like))
    except Exception:  # no forward-mode rule, e.g.: the plain product
        return False
    return _nbytes(residuals) <= budget * devices


def _zeros(like: PyTree) -> PyTree:
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), _spec(like))


def amortised(op: Partial, like: PyTree) -> Callable[[PyTree], PyTree]:
    """Inside a compiled program: ``op`` linearised at 0 (its ``v``-independent work runs once,
    before any loop that uses the result; for a linear ``op`` the tangent map is ``op``)."""
    return jax.linearize(op, _zeros(like))[1]


def as_operator(matvec: Callable[[PyTree], PyTree], like: PyTree, *,
                linearize: bool | str = "auto", memory_budget: int | None = None,
                devices: int = 1, like_name: str = "like") -> Partial:
    """``matvec`` hoisted (:func:`hoist`) and, if :func:`worth_linearizing`, linearised once,
    here, with the residuals as leaves of the result (SPEC 1.1). An operator that is already
    hoisted (e.g. from :func:`~prune_jax.curvature.hvp_operator`) is returned unchanged."""
    if isinstance(matvec, Partial) and isinstance(matvec.func, JaxprFunction):
        return matvec
    op = hoist(matvec, like, like_name)
    if not worth_linearizing(op, like, linearize, memory_budget, devices):
        return op
    return hoist(_linearize(op, _zeros(like)), like)


def check_output(op: Partial, like: PyTree, like_name: str = "like") -> None:
    """``ValueError`` unless the hoisted ``op`` maps pytrees like ``like`` to floating pytrees
    of the same structure and shapes."""
    out = [v.aval for v in op.func.jaxpr.outvars]
    spec = jax.tree.leaves(_spec(like))
    if op.func.out_tree != op.func.in_tree or any(
            a.shape != s.shape or not jnp.issubdtype(a.dtype, jnp.floating)
            for a, s in zip(out, spec, strict=True)):
        got = jax.tree.unflatten(op.func.out_tree, [a.str_short() for a in out])
        raise ValueError(f"matvec({like_name}) must be a floating pytree with the structure "
                         f"and shapes of {like_name}; got {got}")


class Prepared(NamedTuple):
    """A matvec ready for the compiled routines (see :func:`prepare`)."""

    op: Partial
    layout: FlatLayout
    amortise: bool


def prepare(matvec: Callable[[PyTree], PyTree], like: PyTree, *, mesh: Any,
            linearize: bool | str, like_name: str = "like") -> Prepared:
    """The boundary of every routine that takes a matvec: checks (structure, shapes, dtypes,
    Explicit meshes; no device sync), :func:`hoist`, the layout of its flat vectors on
    ``mesh`` (default: that of ``like``'s or the operator's arrays), and whether the programs
    linearise it (:func:`worth_linearizing`; a hoisted operator, e.g. from
    :func:`~prune_jax.curvature.hvp_operator`, has decided already)."""
    check_no_explicit_mesh(like, like_name)
    if not (isinstance(linearize, bool) or linearize == "auto"):
        raise TypeError(f"linearize must be True, False or 'auto', got {linearize!r}")
    hoisted = isinstance(matvec, Partial) and isinstance(matvec.func, JaxprFunction)
    if isinstance(matvec, Partial):
        check_no_explicit_mesh(matvec, "matvec")
    op = hoist(matvec, like, like_name)
    check_no_explicit_mesh(op, "matvec")
    check_output(op, like, like_name)
    mesh = resolve_mesh(mesh, like, op)
    amortise = not hoisted and worth_linearizing(op, like, linearize,
                                                 devices=1 if mesh is None else mesh.size)
    return Prepared(op, FlatLayout.of(tree_size(like), mesh), amortise)
