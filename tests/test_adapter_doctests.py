"""The examples in the recorders' helper docstrings run and stay true."""

import doctest
import importlib

import pytest

MODULES = ["diag.adapters.crash_site", "diag.trace.shards", "diag.trace.measured",
           "diag.adapters.flax.header", "diag.adapters.flax.loss_scale", "diag.adapters.flax.origin"]
TORCH_MODULES = ["diag.adapters.torch._accuracy", "diag.adapters.torch._nonfinite", "diag.adapters.torch._layers",
                 "diag.adapters.torch._stats", "diag.adapters.torch._foreach"]


@pytest.mark.parametrize("name", MODULES + TORCH_MODULES)
def test_docstring_examples_run(name):
    if name in TORCH_MODULES:
        pytest.importorskip("torch")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
