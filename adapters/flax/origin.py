"""Where a NaN/Inf was born: the first module call whose output is non-finite from finite inputs.

The measured statistics cover the layers with parameters only, so a value created by a
parameter-free module (a custom ``Log``), or by a plain function (``jnp.log``, a division)
between two layers, used to be blamed on the next layer with parameters. Here the step's forward
pass is run once more, eagerly and on copies (the model is not touched), with every module's
``__call__`` watched the way ``nnx.capture`` watches them (by wrapping the class's method for
the duration of the call). Calls complete innermost first, so the first call whose output is
non-finite while its array inputs were finite is the innermost place that created the value.
When that module's own children had returned finite outputs before it, the value was made in the
module's own code after the last of them: a plain function between two layers. The event says so.

Only runs after a non-finite step has been seen, once per run: the default path adds nothing.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diag.adapters.flax.forward import path_str


@dataclass
class _Call:
    module: Any
    children: list = field(default_factory=list)  # calls completed inside this one, in order
    output_finite: bool = True


@dataclass
class Origin:
    """The innermost module call that turned finite inputs into a non-finite output.

    Attributes:
      layer: its module path ('' for the model itself).
      module_type: its class name.
      count: non-finite entries of its output.
      value: the first non-finite value.
      after: the last submodule that returned a finite output inside that call, when there was
        one: the value was born in the module's own code after it (a plain function).
      element: which element of a tuple/dataclass output held it (None for a plain array).
    """

    layer: str
    module_type: str
    count: int
    value: float
    after: str | None = None
    element: str | None = None


def _arrays(tree) -> list:
    # Python floats too: an eager call receives them as they are (a jitted one as arrays).
    return [leaf for leaf in jax.tree.leaves(tree)
            if isinstance(leaf, float) or (hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact))]


def _all_finite(tree) -> bool:
    return all(bool(np.isfinite(np.asarray(a)).all()) for a in _arrays(tree))


def _first_bad(tree) -> tuple[str | None, np.ndarray | None]:
    """(element name, non-finite entries) of the first array leaf holding a NaN/Inf."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact):
            a = np.asarray(leaf)
            bad = a[~np.isfinite(a)]
            if bad.size:
                element = "output" + "".join(_key(p) for p in path) if path else None
                return element, bad
    return None, None


def _key(p) -> str:
    for attr in ("idx", "key"):
        if hasattr(p, attr):
            return f"[{getattr(p, attr)!r}]" if attr == "key" else f"[{getattr(p, attr)}]"
    return f".{getattr(p, 'name', p)}"


class OriginFound(Exception):
    """Ends the eager re-run once the forward pass has been watched (carries what it found)."""

    def __init__(self, origin: "Origin | None"):
        super().__init__("forward pass watched")
        self.origin = origin


class ModuleWatch:
    """Watches every module call of ``model`` while active (see :func:`watch_modules`)."""

    def __init__(self, model: nnx.Module):
        self.paths = {id(m): path_str(path) for path, m in nnx.iter_modules(model)}
        self.origin: Origin | None = None
        self._stack: list[_Call] = []
        self._patched: dict[type, Any] = {}
        for _, m in nnx.iter_modules(model):
            owner = next((c for c in type(m).__mro__ if "__call__" in c.__dict__), None)
            if owner is not None and owner is not nnx.Module and owner not in self._patched:
                self._patched[owner] = owner.__dict__["__call__"]

    def __enter__(self) -> "ModuleWatch":
        for owner, method in self._patched.items():
            setattr(owner, "__call__", self._wrap(method))
        return self

    def __exit__(self, *exc) -> None:
        for owner, method in self._patched.items():
            setattr(owner, "__call__", method)

    def _wrap(self, method):
        watch = self

        @functools.wraps(method)
        def watched(module, *args, **kwargs):
            if id(module) not in watch.paths or watch.origin is not None:
                return method(module, *args, **kwargs)
            call = _Call(module)
            watch._stack.append(call)
            try:
                out = method(module, *args, **kwargs)
            finally:
                watch._stack.pop()
            if watch._stack and watch._stack[-1].module is not module:
                watch._stack[-1].children.append(call)
            call.output_finite = _all_finite(out)
            if not call.output_finite and watch.origin is None and _all_finite((args, kwargs)):
                watch._found(call, out)
            return out

        return watched

    def _found(self, call: _Call, out) -> None:
        element, bad = _first_bad(out)
        # Children that ran before the first one to return a non-finite output (whose inputs
        # were already non-finite, or it would be the origin) returned finite outputs: the value
        # was made in this module's own code after the last of them.
        before = []
        for child in call.children:
            if not child.output_finite:
                break
            before.append(child)
        after = self.paths.get(id(before[-1].module)) if before else None
        self.origin = Origin(layer=self.paths[id(call.module)], module_type=type(call.module).__name__,
                             count=int(bad.size), value=float(bad[0]), after=after,
                             element=element if not isinstance(out, jax.Array) else None)


@contextlib.contextmanager
def watch_modules(model: nnx.Module):
    """Watch every module call of ``model`` (parameter-free modules included) while inside.

    Run the forward pass eagerly inside (values must be concrete): under ``jax.jit`` or
    ``jax.grad`` the values are tracers and nothing can be checked.

    Example:
      >>> class Log(nnx.Module):
      ...     def __call__(self, x):
      ...         return jnp.log(x)
      >>> class M(nnx.Module):
      ...     def __init__(self, rngs):
      ...         self.a = nnx.Linear(2, 2, rngs=rngs); self.log = Log(); self.b = nnx.Linear(2, 1, rngs=rngs)
      ...     def __call__(self, x):
      ...         return self.b(self.log(self.a(x)))
      >>> m = M(nnx.Rngs(0))
      >>> m.a.kernel[...] = -jnp.ones((2, 2))
      >>> with watch_modules(m) as watch:
      ...     _ = m(jnp.ones((1, 2)))
      >>> watch.origin.layer, watch.origin.module_type
      ('log', 'Log')
    """
    watch = ModuleWatch(model)
    with jax.disable_jit(), watch:
        yield watch
