"""Compare every custom VJP in a function with automatic differentiation of its primal.

A ``jax.custom_vjp`` function carries its primal (the forward computation) inside the traced
program. Re-evaluating the program with each custom rule replaced by its primal gives the gradient
JAX itself would compute; the two gradients must agree up to rounding. No finite differences,
so the threshold is tight and float32 works too.

The program is walked as a jaxpr: ``custom_vjp_call`` equations are inlined as their primal, calls
of nested ``jax.jit`` functions are inlined so that custom rules inside them are reached too, and
every other equation is bound as it was. Custom rules inside ``scan``, ``cond`` or ``while`` bodies
are not reached and are reported in the notes.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from diag.errors import DiagInputError
from diag.gradcheck._cache import cache_if_hashable
from diag.gradcheck import _jax_util as U
from diag.gradcheck.jax_check import _select_leaves
from diag.gradcheck.result import GradCheckReport, LeafResult

# Rounding only: the same derivative computed by two formulas.
CUSTOM_VJP_THRESHOLDS = {"float64": 1e-7, "float32": 1e-3}
_CALL_PRIMITIVES = ("jit", "pjit", "closed_call", "core_call")


def _rule_name(eqn) -> str:
    info = getattr(eqn.params["call_jaxpr"].jaxpr, "debug_info", None)
    src = getattr(info, "func_src_info", None) or ""
    return src.split(" ")[0] if src else "custom_vjp"


def _sub_jaxprs(eqn):
    for value in eqn.params.values():
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if hasattr(v, "jaxpr") and hasattr(v, "consts"):
                yield v.jaxpr
            elif hasattr(v, "eqns"):
                yield v


def find_custom_vjps(jaxpr, inside_other: bool = False) -> tuple[list[str], list[str]]:
    """Names of the custom VJP rules reachable by inlining, and of those hidden in loops or branches."""
    reached, hidden = [], []
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name == "custom_vjp_call":
            (hidden if inside_other else reached).append(_rule_name(eqn))
            r, h = find_custom_vjps(eqn.params["call_jaxpr"].jaxpr, inside_other)
        elif name in _CALL_PRIMITIVES:
            r, h = find_custom_vjps(eqn.params["jaxpr"].jaxpr, inside_other)
        else:
            r, h = [], []
            for sub in _sub_jaxprs(eqn):
                sr, sh = find_custom_vjps(sub, True)
                r += sr
                h += sh
        reached += r
        hidden += h
    return reached, hidden


def _interpret(jaxpr, consts, args, replace: frozenset[str]):
    """Evaluate a jaxpr, inlining the primal of custom VJP rules whose name is in ``replace``."""
    from jax.extend.core import Literal

    env = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    for v, x in zip(jaxpr.constvars, consts):
        env[v] = x
    for v, x in zip(jaxpr.invars, args):
        env[v] = x
    if not replace:
        return jax.core.eval_jaxpr(jaxpr, consts, *args)
    for eqn in jaxpr.eqns:
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        if name == "custom_vjp_call" and _rule_name(eqn) in replace:
            closed = eqn.params["call_jaxpr"]
            outs = _interpret(closed.jaxpr, closed.consts, invals, replace)
        elif name in _CALL_PRIMITIVES and "jaxpr" in eqn.params:
            closed = eqn.params["jaxpr"]
            outs = _interpret(closed.jaxpr, closed.consts, invals, replace)
        else:
            # As jax.core.eval_jaxpr does (JAX 0.10: get_bind_params returns the params only).
            params = eqn.primitive.get_bind_params(eqn.params)
            if isinstance(params, tuple):  # older JAX: (subfuns, params)
                subfuns, params = params
                invals = [*subfuns, *invals]
            with eqn.ctx.manager:
                outs = eqn.primitive.bind(*invals, **params)
            if not eqn.primitive.multiple_results:
                outs = [outs]
        for v, x in zip(eqn.outvars, outs):
            env[v] = x
    return [read(v) for v in jaxpr.outvars]


def check_custom_vjp(
    fn: Callable[..., Any],
    *args: Any,
    argnums: int | Sequence[int] = 0,
    directions: int = 8,
    dtype: str = "float64",
    threshold: float | None = None,
    seed: int = 0,
    target: str | None = None,
) -> GradCheckReport:
    """Check every custom VJP in ``fn`` against autodiff of its primal, per parameter leaf.

    Args:
      fn: a JAX function using ``jax.custom_vjp`` rules (directly or in functions it calls).
      *args: example arguments (floating leaves cast to ``dtype``).
      argnums: the argument(s) whose gradient is compared, as in :func:`check_gradients`.
      directions: K random output cotangents (all pulled back in one ``vmap``).
      dtype: ``"float64"`` (default) or ``"float32"``.
      threshold: relative difference above which a leaf fails (default 1e-7 / 1e-3).
      seed: seed of the cotangents.
      target: a name for the report.

    Returns:
      A :class:`GradCheckReport` with one ``"custom_vjp"`` result per leaf; a failing result's
      message names the custom rule(s) responsible. No results (and a note) when ``fn`` has no
      custom VJP or its primal cannot be differentiated.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> @jax.custom_vjp
      ... def square(x): return x * x
      >>> square.defvjp(lambda x: (x * x, x), lambda x, g: (2 * x * g,))
      >>> check_custom_vjp(lambda w: jnp.sum(square(w)), jnp.arange(3.0)).passed
      True
    """
    started = time.perf_counter()
    report = GradCheckReport(target=target or getattr(fn, "__name__", type(fn).__name__), framework="jax")
    with U.precision(dtype):
        args = U.cast_floats(tuple(args), dtype)
        effective = U.output_dtype(fn, args)
        tol = CUSTOM_VJP_THRESHOLDS[effective] if threshold is None else float(threshold)
        treedef, leaves, positions, names = _select_leaves(args, argnums)

        def flat_fn(*flat):
            return fn(*jax.tree_util.tree_unflatten(treedef, list(flat)))

        closed = jax.make_jaxpr(flat_fn)(*leaves)
        out_tree = jax.tree_util.tree_structure(jax.eval_shape(flat_fn, *leaves))
        reached, hidden = find_custom_vjps(closed.jaxpr)
        rules = sorted(set(reached))
        if hidden:
            report.notes.append(
                f"custom VJP(s) {sorted(set(hidden))} sit inside a loop or branch and were not compared"
            )
        if not rules:
            report.notes.append("no custom VJP reachable in this function: nothing to compare")
            report.seconds = time.perf_counter() - started
            return report

        def pullbacks(*replace: frozenset[str]):
            return _pullbacks(fn, treedef, positions, int(directions), replace)

        diff = [leaves[p] for p in positions]
        key = jax.random.key(seed)
        try:
            # The custom rules and their primals' autodiff in one program: one compilation.
            custom, auto = pullbacks(frozenset(), frozenset(rules))(diff, leaves, key)
        except Exception as e:  # the primal uses something JAX cannot differentiate
            report.notes.append(f"the primal of {rules} cannot be differentiated by JAX ({type(e).__name__}: {e}); not compared")
            report.seconds = time.perf_counter() - started
            return report

        errors = [_rel(c, a) for c, a in zip(custom, auto)]
        culprits: list[str] = []
        if any(e > tol for e in errors):
            # Replace one rule at a time: a rule whose replacement changes the gradient is wrong.
            for rule in rules if len(rules) > 1 else []:
                (alone,) = pullbacks(frozenset([rule]))(diff, leaves, key)
                if any(_rel(c, a) > tol for c, a in zip(custom, alone)):
                    culprits.append(rule)
            culprits = culprits or rules
        for leaf_name, err, x in zip(names, errors, diff):
            passed = err <= tol
            res = LeafResult(
                name=leaf_name, check="custom_vjp", shape=tuple(int(s) for s in x.shape), error=err,
                threshold=tol, passed=passed, dtype=effective, directions=int(directions),
                method="custom VJP vs jax.vjp of the primal, random cotangents, jax.jit(vmap)",
            )
            if not passed:
                res.message = (
                    f"custom VJP of {', '.join(culprits)} disagrees with automatic differentiation of its "
                    f"primal for {leaf_name}: relative difference {err:.1e} > {tol:.0e}"
                )
            report.results.append(res)
        report.notes.append(f"custom VJP rules compared: {', '.join(rules)}")
    report.seconds = time.perf_counter() - started
    return report


@cache_if_hashable()
def _pullbacks(fn, treedef, positions: tuple[int, ...], directions: int, replaces: tuple[frozenset[str], ...]):
    """The jitted pullbacks of K random cotangents, once per set in ``replaces`` with the custom
    rules in that set inlined as their primal (cached, so repeated checks of one function compile once)."""

    def one(diff, leaves, cot_key, replace):
        def flat_fn(*flat):
            return fn(*jax.tree_util.tree_unflatten(treedef, list(flat)))

        def f(diff):
            flat = list(leaves)
            for p, x in zip(positions, diff):
                flat[p] = x
            if not replace:
                return flat_fn(*flat)
            closed = jax.make_jaxpr(flat_fn)(*flat)
            out_tree = jax.tree_util.tree_structure(jax.eval_shape(flat_fn, *flat))
            outs = _interpret(closed.jaxpr, closed.consts, flat, replace)
            return jax.tree_util.tree_unflatten(out_tree, outs)

        out, vjp = jax.vjp(f, diff)
        flat_out, tree = jax.tree_util.tree_flatten(out)

        def pull(k):
            cots = [
                jax.random.normal(jax.random.fold_in(jax.random.fold_in(cot_key, k), j), jnp.shape(o), o.dtype)
                for j, o in enumerate(flat_out)
            ]
            return vjp(jax.tree_util.tree_unflatten(tree, cots))[0]

        return jax.vmap(pull)(jnp.arange(directions))

    def run(diff, leaves, cot_key):
        return tuple(one(diff, leaves, cot_key, replace) for replace in replaces)

    return U.jit_check_program(run)


def _rel(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    denom = np.linalg.norm(a) + np.linalg.norm(b)
    num = np.linalg.norm(a - b)
    if not np.isfinite(num) or not np.isfinite(denom):
        return float("inf")
    return float(num / denom) if denom > 0 else 0.0
