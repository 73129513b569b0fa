"""Preflight: catch the wiring bugs of a training setup in a minute, before the long run starts.

One module per probe (``init_loss``, ``overfit_one_batch``, ``gradient_flow``, ``lr_range``,
``seed_repeat``, ``data``, ``output_loss``); each returns findings in the form of a diagnosis'
causes. The probes are framework-free; the runners that train copies of a PyTorch or Flax NNX
model live in ``diag.adapters.torch.preflight`` and ``diag.adapters.flax.preflight``.
"""

import sys
import types

from diag.preflight.api import PROBES, preflight
from diag.preflight.findings import Finding
from diag.preflight.report import PreflightReport

__all__ = ["preflight", "PreflightReport", "Finding", "PROBES"]


class _CallablePackage(types.ModuleType):
    """``diag.preflight(model, ...)`` calls the function of the same name as the package.

    The package and its entry point share a name; making the package callable keeps both
    ``diag.preflight(...)`` and ``from diag.preflight import preflight`` working, whichever
    import ran first.
    """

    def __call__(self, *args, **kwargs):
        return preflight(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
