"""The examples in the engine's docstrings run and stay true."""

import doctest
import importlib
import pkgutil

import diag.engine


def test_engine_docstring_examples_run():
    failures, attempted = [], 0
    for info in pkgutil.walk_packages(diag.engine.__path__, "diag.engine."):
        module = importlib.import_module(info.name)
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        attempted += result.attempted
        if result.failed:
            failures.append(info.name)
    assert failures == []
    assert attempted > 0, "no docstring example was found: the walk over diag.engine ran nothing"
