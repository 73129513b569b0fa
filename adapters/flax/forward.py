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

import contextlib
import functools
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


# Modules whose ``__call__`` runs their submodules inside an ``nnx.scan``: a value sown there
# changes the scan's carry, which the scan refuses. Their output is measured at them instead.
SCANNING = (nnx.RNN, nnx.Bidirectional)


@contextlib.contextmanager
def _sowing_calls(model: nnx.Module):
    # What ``nnx.capture(..., method_outputs=...)`` does for ``__call__``, except for calls made
    # while a scanning module runs (inside the scan the modules are copies: known by when they
    # run, not by identity).
    inside = [0]
    owners = {}
    for _, m in nnx.iter_modules(model):
        owner = next((c for c in type(m).__mro__ if "__call__" in c.__dict__), None)
        if owner is not None and owner is not nnx.Module:
            owners.setdefault(owner, owner.__dict__["__call__"])

    def sowing(method):
        @functools.wraps(method)
        def call(self, *args, **kwargs):
            scanning = isinstance(self, SCANNING)
            inside[0] += scanning
            try:
                out = method(self, *args, **kwargs)
            finally:
                inside[0] -= scanning
            if not inside[0]:
                self.sow(nnx.Intermediate, "__call__", out)
            return out
        return call

    for owner, method in owners.items():
        setattr(owner, "__call__", sowing(method))
    try:
        yield
    finally:
        for owner, method in owners.items():
            setattr(owner, "__call__", method)


def capture_calls(fn):
    """Like ``nnx.capture(fn, nnx.Intermediate, method_outputs=nnx.Intermediate)`` for
    ``__call__``: ``fn(model, ...)`` returns ``(out, intermediates)`` with every module's
    ``__call__`` output, except those that run inside a scan (see ``SCANNING``)."""
    captured = nnx.capture(fn, nnx.Intermediate)

    def run(model, *args, **kwargs):
        with _sowing_calls(model):
            return captured(model, *args, **kwargs)

    return run


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
        out, inter = capture_calls(lambda mm, *aa, **kk: mm(*aa, **kk) if fn is None else fn(mm, *aa, **kk))(
            m, *a, **kw)
        return out, inter

    closed, out_shape = jax.make_jaxpr(pure, return_shape=True)(
        abstract_state, *[abstract(leaves[i]) for i in array_at]
    )
    n_out = len(jax.tree.leaves(out_shape[0]))
    captured: dict[str, int] = {}
    root_out = None
    for module_path, (k, _, _) in main_outputs(out_shape[1], recurrent_paths(model)).items():
        captured[module_path] = n_out + k
        if module_path == "":
            root_out = n_out + k
    return analyze_jaxpr(closed, captured, root_out)


# Fields that carry a structured output's main value (Hugging Face-style output dataclasses).
MAIN_FIELDS = ("last_hidden_state", "logits")


def recurrent_paths(model: nnx.Module) -> set[str]:
    """Paths of recurrent modules: Flax's convention is ``(carry, output)``, the output last."""
    return {path_str(path) for path, m in nnx.iter_modules(model)
            if isinstance(m, (nnx.RNNCellBase, nnx.RNN))}


def recurrent_units(model: nnx.Module) -> tuple[str, ...]:
    """Paths of the outermost ``nnx.RNN``/``nnx.Bidirectional`` modules: each is one layer."""
    found = sorted(path_str(path) for path, m in nnx.iter_modules(model) if isinstance(m, SCANNING))
    return tuple(p for p in found if not any(p != q and p.startswith(q + "/") for q in found) and p)


def _element(keys) -> str | None:
    """How a leaf sits in a module's output: ``output[1]`` in a tuple, ``logits`` in a dataclass."""
    if not keys:
        return None
    name = ""
    for k in keys:
        if hasattr(k, "idx"):
            name += f"[{k.idx}]"
        else:
            field_name = getattr(k, "name", getattr(k, "key", k))
            name += f".{field_name}" if name else str(field_name)
    return "output" + name if name.startswith("[") else name


def main_outputs(inter, recurrent: set[str] = frozenset()) -> dict[str, tuple[int, Any, str | None]]:
    """For each module whose ``__call__`` output was captured: (index of its main leaf among the
    leaves of ``inter``, that leaf, which element of the output it is; None for a plain array).

    The main leaf of a structured output, as the PyTorch adapter chooses it: a field named
    ``last_hidden_state`` or ``logits``; for a recurrent module (``(carry, output)``) the last
    element; otherwise the first floating-point leaf. Only a module's first call counts.
    """
    groups: dict[str, list] = {}
    for index, (path, leaf) in enumerate(jax.tree_util.tree_flatten_with_path(inter)[0]):
        keys = [getattr(p, "key", None) for p in path]
        if "__call__" not in keys:
            continue
        at = keys.index("__call__")
        rest = [p for p in path[at + 1:] if not (isinstance(p, jax.tree_util.GetAttrKey) and p.name == "value")]
        if not rest or getattr(rest[0], "idx", 0) != 0:  # calls after the first
            continue
        if not hasattr(leaf, "dtype") or not jnp.issubdtype(leaf.dtype, jnp.inexact):
            continue
        groups.setdefault(path_str(path[:at]), []).append((index, leaf, rest[1:]))
    chosen = {}
    for name, leaves in groups.items():
        pick = leaves[0]
        named = [item for item in leaves if item[2] and getattr(item[2][0], "name", getattr(item[2][0], "key", None)) in MAIN_FIELDS]
        if named:
            pick = min(named, key=lambda item: MAIN_FIELDS.index(getattr(item[2][0], "name", getattr(item[2][0], "key", None))))
        elif name in recurrent and leaves[0][2] and hasattr(leaves[0][2][0], "idx"):
            last = max(getattr(item[2][0], "idx", -1) for item in leaves)
            pick = next(item for item in leaves if getattr(item[2][0], "idx", -1) == last)
        chosen[name] = (pick[0], pick[1], _element(pick[2]))
    return chosen


def captured_outputs(inter, recurrent: set[str] = frozenset()) -> list[tuple[str, Any, str | None]]:
    """(module path, main captured ``__call__`` output, its element) per module (see main_outputs)."""
    return [(name, leaf, element) for name, (_, leaf, element) in main_outputs(inter, recurrent).items()]
