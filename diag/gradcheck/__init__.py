"""Gradient checks: prove a custom backward right, or find the layer and elements where it is wrong.

Importing this package imports no framework; each check imports JAX or torch when called.

Example:
  >>> from diag.gradcheck import check_gradients      # doctest: +SKIP
  >>> report = check_gradients(loss, params, batch)   # doctest: +SKIP
  >>> print(report)                                   # doctest: +SKIP
"""

from __future__ import annotations

import importlib

from diag.gradcheck.result import GradCheckReport, LeafResult

_LAZY = {
    "check_gradients": "diag.gradcheck.jax_check",
    "check_model": "diag.gradcheck.jax_check",
    "check_custom_vjp": "diag.gradcheck.custom_vjp",
    "check_torch": "diag.gradcheck.torch_check",
    "check_torch_module": "diag.gradcheck.torch_check",
    "to_check_records": "diag.gradcheck.records",
    "write_check_trace": "diag.gradcheck.records",
    "use_compile_cache": "diag.gradcheck.compile_cache",
}

__all__ = ["GradCheckReport", "LeafResult", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'diag.gradcheck' has no attribute {name!r}")
