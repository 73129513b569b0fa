"""diag: why is my training failing, and what do I change?

The core package imports no jax, torch or textual; adapters and the TUI load them when used.
Even the public names below are imported on first use: ``diag --help`` and ``diag explain``
import only what their command needs (tests/test_import_budget.py holds them to it).
"""

__version__ = "0.1.0"

# Public name -> the module that defines it, imported when the name is first read.
_LAZY = {
    "Guard": "diag.guard",
    "TrainingDoomed": "diag.guard",
    "Trace": "diag.trace",
    "TraceWriter": "diag.trace",
    "load_trace": "diag.trace",
    "diagnose_path": "diag.api",
}

__all__ = ["Guard", "Trace", "TraceWriter", "TrainingDoomed", "diagnose_path", "load_trace", "preflight",
           "__version__"]


def __getattr__(name: str):
    import importlib

    if name == "preflight":
        return importlib.import_module("diag.preflight")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later reads are plain attribute reads
        return value
    raise AttributeError(f"module 'diag' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
