"""The examples in the engine's docstrings run and stay true."""

import doctest
import importlib
import pkgutil

import diag.engine


def test_engine_docstring_examples_run():
    failures = []
    for info in pkgutil.walk_packages(diag.engine.__path__, "diag.engine."):
        module = importlib.import_module(info.name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        if result.failed:
            failures.append(info.name)
    assert failures == []
