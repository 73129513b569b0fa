"""diag: why is my training failing, and what do I change?

The core package imports no jax, torch or textual; adapters and the TUI load them when used.
"""

__version__ = "0.1.0"

from diag.guard import Guard, TrainingDoomed  # noqa: E402
from diag.trace import Trace, TraceWriter, load_trace  # noqa: E402
from diag.api import diagnose_path  # noqa: E402

__all__ = ["Guard", "Trace", "TraceWriter", "TrainingDoomed", "diagnose_path", "load_trace", "preflight",
           "__version__"]


def __getattr__(name: str):
    # diag.preflight(...) without paying for the preflight imports on every `import diag`.
    if name == "preflight":
        import diag.preflight

        return diag.preflight
    raise AttributeError(f"module 'diag' has no attribute {name!r}")
