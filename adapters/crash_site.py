"""Where in the model an exception was raised: the innermost module on the traceback, and its inputs.

A shape or dtype mismatch is diagnosed from the module that was running (``Linear``, ``Conv``) and
the shapes and dtypes it was called with. Both adapters read them from the traceback itself: each
frame of a module's ``forward``/``__call__`` holds ``self`` and its arguments, so nothing is
recorded while the run is healthy.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class CrashSite:
    """The innermost module whose forward pass was on the traceback.

    Attributes:
      module: the module object (``self`` of that frame).
      inputs: its positional arguments after ``self``, in order (``*args`` expanded).
      outer: the modules of the enclosing frames, outermost first (to find the path of a clone).
    """

    module: object
    inputs: list = field(default_factory=list)
    outer: list = field(default_factory=list)


def innermost_module(tb, is_module: Callable[[object], bool]) -> CrashSite | None:
    """The innermost frame on ``tb`` whose ``self`` satisfies ``is_module``, with its inputs.

    Example:
      >>> class Box:
      ...     def forward(self, x, *rest):
      ...         raise ValueError("bad")
      >>> try:
      ...     Box().forward([1, 2], "a")
      ... except ValueError as e:
      ...     site = innermost_module(e.__traceback__, lambda o: isinstance(o, Box))
      >>> type(site.module).__name__, site.inputs
      ('Box', [[1, 2], 'a'])
    """
    sites = []
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self")
        if owner is not None and is_module(owner):
            sites.append((owner, _positional_inputs(frame)))
        tb = tb.tb_next
    if not sites:
        return None
    module, inputs = sites[-1]
    return CrashSite(module=module, inputs=inputs, outer=[m for m, _ in sites[:-1]])


def describe_inputs(values: list, dtype_name: Callable[[object], str] = str) -> tuple[list, list]:
    """``(shapes, dtypes)`` of a call's inputs: a list per array, None for anything else.

    Example:
      >>> import numpy as np
      >>> describe_inputs([np.zeros((2, 3), np.float32), 5])
      ([[2, 3], None], ['float32', None])
    """
    shapes, dtypes = [], []
    for value in values:
        shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
        if shape is None or dtype is None:
            shapes.append(None)
            dtypes.append(None)
            continue
        try:
            shapes.append([int(s) for s in shape])
        except (TypeError, ValueError):  # a symbolic dimension
            shapes.append(None)
        dtypes.append(dtype_name(dtype))
    return shapes, dtypes


def _positional_inputs(frame) -> list:
    code = frame.f_code
    names = code.co_varnames[: code.co_argcount][1:]  # after self
    values = [frame.f_locals.get(name) for name in names]
    if code.co_flags & inspect.CO_VARARGS:
        extra = frame.f_locals.get(code.co_varnames[code.co_argcount + code.co_kwonlyargcount])
        values += list(extra or ())
    while values and values[-1] is None:  # optional arguments left at their default
        values.pop()
    return values
