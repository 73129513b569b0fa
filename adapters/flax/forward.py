"""Which layers a Flax NNX model calls, in what order, and which nonlinearity follows each.

NNX returns state in alphabetical order of module path, but diagnoses need forward order ("the
first layer whose activations went non-finite", "early layers' gradients vanish"). The forward
pass is traced once, abstractly, with every submodule's ``__call__`` output captured; in the
resulting jaxpr each captured output is a variable, the equation that produced it gives the
layer's position, and the first equation that consumes it names the nonlinearity applied to it
(``max(x, 0)`` or ``relu`` is a ReLU, ``logistic`` a sigmoid, ``tanh`` a tanh, a named call such
as ``gelu`` or ``silu`` keeps its name). Nothing in the user's model changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from jax.extend import core as jax_core
from flax import nnx

# Primitive or named-call -> the activation name recorded in the header.
_ACTIVATIONS = {
    "relu": "relu", "relu6": "relu", "logistic": "sigmoid", "sigmoid": "sigmoid", "tanh": "tanh",
    "gelu": "gelu", "silu": "silu", "swish": "silu", "elu": "elu", "selu": "selu", "celu": "celu",
    "leaky_relu": "leaky_relu", "softplus": "softplus", "log_sigmoid": "log_sigmoid",
    "hard_tanh": "tanh", "hard_sigmoid": "sigmoid", "softmax": "softmax", "log_softmax": "log_softmax",
}
# Equations that only move data: look through them to the real consumer.
_PASSTHROUGH = {"reshape", "convert_element_type", "copy", "squeeze", "expand_dims", "broadcast_in_dim"}


def path_str(path) -> str:
    """A module path tuple as the header writes it: ``('layers', 0)`` -> ``'layers/0'``."""
    return "/".join(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path)


@dataclass
class ForwardInfo:
    """What one abstract forward pass revealed.

    Attributes:
      order: module paths whose ``__call__`` output was captured, in the order they ran.
      activation: module path -> nonlinearity applied to its output (absent when none/unknown).
      output: module path of the layer whose output is the model output (or None).
    """

    order: list[str] = field(default_factory=list)
    activation: dict[str, str] = field(default_factory=dict)
    output: str | None = None


def _is_zero_literal(v) -> bool:
    val = getattr(v, "val", None)
    try:
        return val is not None and float(val) == 0.0
    except (TypeError, ValueError):
        return False


def _activation_of(eqn) -> str | None:
    name = eqn.primitive.name
    if name in ("max",) and any(_is_zero_literal(v) for v in eqn.invars):
        return "relu"
    if name in _ACTIVATIONS:
        return _ACTIVATIONS[name]
    if name == "integer_pow" and eqn.params.get("y") == 3:
        return "gelu"  # jax.nn.gelu's tanh approximation, inlined: x * 0.5 * (1 + tanh(c (x + a x^3)))
    called = eqn.params.get("name")
    if isinstance(called, str) and called in _ACTIVATIONS:
        return _ACTIVATIONS[called]
    # custom_jvp_call (jax.nn.relu) and unnamed calls: look at what the inner jaxpr does first.
    inner = eqn.params.get("call_jaxpr", eqn.params.get("jaxpr"))
    inner = getattr(inner, "jaxpr", inner)
    if inner is not None and getattr(inner, "eqns", None):
        return _activation_of(inner.eqns[0])
    return None


def analyze_jaxpr(closed_jaxpr, captured: dict[str, int], root_out: int | None) -> ForwardInfo:
    """Forward order and activations from a jaxpr whose outputs include captured layer outputs.

    Args:
      closed_jaxpr: the traced forward pass.
      captured: module path -> index of that module's captured output among the jaxpr outputs.
      root_out: index of the model output among the jaxpr outputs (to mark the output layer).

    Returns:
      ForwardInfo.
    """
    jaxpr = closed_jaxpr.jaxpr
    producer: dict = {}
    consumers: dict = {}
    for i, eqn in enumerate(jaxpr.eqns):
        for v in eqn.outvars:
            producer[v] = i
        for v in eqn.invars:
            if isinstance(v, jax_core.Var):
                consumers.setdefault(v, []).append(i)
    outvars = jaxpr.outvars
    info = ForwardInfo()
    position = {}
    for path, index in captured.items():
        var = outvars[index]
        position[path] = producer.get(var, -1)
        act = _first_activation(jaxpr, var, consumers)
        if act:
            info.activation[path] = act
    # Several modules may return the same value (a wrapper returns its last layer's output):
    # the innermost one produced it first.
    info.order = sorted(captured, key=lambda p: (position[p], -(p.count("/") + 1 if p else 0), p))
    if root_out is not None:
        root_var = outvars[root_out]
        owners = [p for p in captured if p and outvars[captured[p]] is root_var]
        # The innermost module returning the model output is the output layer.
        info.output = max(owners, key=lambda p: p.count("/"), default=None)
    return info


def _first_activation(jaxpr, var, consumers, depth: int = 0) -> str | None:
    for i in consumers.get(var, []):
        eqn = jaxpr.eqns[i]
        act = _activation_of(eqn)
        if act:
            return act
        if eqn.primitive.name in ("neg", "mul") and depth == 0:
            # exact gelu, inlined: 0.5 * x * erfc(-x / sqrt(2))
            for j in consumers.get(eqn.outvars[0], []):
                for k in [j, *consumers.get(jaxpr.eqns[j].outvars[0], [])]:
                    if jaxpr.eqns[k].primitive.name in ("erf", "erfc"):
                        return "gelu"
        if eqn.primitive.name in _PASSTHROUGH and depth < 4:
            act = _first_activation(jaxpr, eqn.outvars[0], consumers, depth + 1)
            if act:
                return act
    return None


def trace_forward(fn, model: nnx.Module, args: tuple, kwargs: dict) -> ForwardInfo:
    """Trace ``fn(model, *args, **kwargs)`` abstractly with every submodule's output captured.

    Works inside a ``jit`` trace too (the arguments may be tracers); the model is cloned with
    ``nnx.split``/``nnx.merge`` so its state (batch statistics, RNG counters) is not touched.

    Args:
      fn: the user's loss or forward function; its first argument is the model.
      model: the NNX model.
      args, kwargs: the remaining arguments of ``fn``.

    Returns:
      ForwardInfo with layer order and activations.

    Example:
      >>> import jax.numpy as jnp
      >>> class M(nnx.Module):
      ...     def __init__(self, rngs):
      ...         self.a = nnx.Linear(2, 3, rngs=rngs); self.b = nnx.Linear(3, 1, rngs=rngs)
      ...     def __call__(self, x):
      ...         return self.b(nnx.relu(self.a(x)))
      >>> info = trace_forward(lambda m, x: m(x).sum(), M(nnx.Rngs(0)), (jnp.ones((4, 2)),), {})
      >>> info.order, info.activation
      (['a', 'b', ''], {'a': 'relu'})
    """
    graphdef, state = nnx.split(model)
    abstract = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype) if hasattr(a, "shape") else a  # noqa: E731
    abstract_state = jax.tree.map(abstract, state)
    leaves, treedef = jax.tree.flatten((args, kwargs))
    array_at = [i for i, leaf in enumerate(leaves) if hasattr(leaf, "shape") and hasattr(leaf, "dtype")]

    def pure(st, *arrays):
        values = list(leaves)
        for i, a in zip(array_at, arrays):
            values[i] = a
        a, kw = jax.tree.unflatten(treedef, values)
        m = nnx.merge(graphdef, st)
        out, inter = nnx.capture(
            lambda mm, *aa, **kk: mm(*aa, **kk) if fn is None else fn(mm, *aa, **kk),
            nnx.Intermediate,
            method_outputs=nnx.Intermediate,
        )(m, *a, **kw)
        return out, inter

    closed, out_shape = jax.make_jaxpr(pure, return_shape=True)(
        abstract_state, *[abstract(leaves[i]) for i in array_at]
    )
    n_out = len(jax.tree.leaves(out_shape[0]))
    captured: dict[str, int] = {}
    root_out = None
    for k, (path, _) in enumerate(jax.tree_util.tree_flatten_with_path(out_shape[1])[0]):
        keys = [getattr(p, "key", None) for p in path]
        if "__call__" not in keys:
            continue
        module_path = path_str(path[: keys.index("__call__")])
        if module_path in captured:  # a module called twice: its first call fixes its position
            continue
        captured[module_path] = n_out + k
        if module_path == "":
            root_out = n_out + k
    return analyze_jaxpr(closed, captured, root_out)


def captured_outputs(inter) -> list[tuple[str, Any]]:
    """(module path, first captured ``__call__`` output) for each module in an Intermediate state."""
    out, seen = [], set()
    for path, leaf in jax.tree_util.tree_flatten_with_path(inter)[0]:
        keys = [getattr(p, "key", None) for p in path]
        if "__call__" not in keys:
            continue
        name = path_str(path[: keys.index("__call__")])
        if name in seen or not hasattr(leaf, "dtype") or not jnp.issubdtype(leaf.dtype, jnp.inexact):
            continue
        seen.add(name)
        out.append((name, leaf))
    return out
