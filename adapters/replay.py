"""The user's line in a NaN debugger's report (``jax.debug_nans``, ``torch.autograd.detect_anomaly``).

Both debuggers stop at the operation that first produced a NaN/Inf; the stack they report runs
through the framework's own code. The line worth reporting is the innermost frame of the user's
code: the first frame, counted from the operation outwards, that lies outside the frameworks,
the Python standard library and diag itself.
"""

from __future__ import annotations

import os
import re
import sysconfig
import traceback

from diag.trace.records import NonFiniteReplayEvent

_STDLIB = os.path.realpath(sysconfig.get_paths()["stdlib"])
# The operation's name in the debuggers' messages.
_JAX_OPERATION = re.compile(r"encountered in (?:the output of )?(?:jit\()?([A-Za-z_][\w.]*)")
_TORCH_OPERATION = re.compile(r"Function '(\w+)' returned (?:nan|inf)")


def is_user_frame(filename: str) -> bool:
    """Whether a stack frame's file belongs to the user's code."""
    path = os.path.realpath(filename)
    if path.startswith(_STDLIB) and "site-packages" not in path:
        return False
    if filename.startswith("<"):
        return False
    parts = path.replace("\\", "/").split("/")
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    here = os.path.realpath(os.path.join(os.path.dirname(__file__), ".."))
    return not (path.startswith(here + os.sep) and ("/tests/" not in path and "/examples/" not in path))


def user_source(frames) -> str | None:
    """``'file.py:LINE in function'`` of the innermost user frame of a stack (outermost first)."""
    for frame in reversed(list(frames)):
        if is_user_frame(frame.filename):
            return f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"
    return None


def operation_of(message: str) -> str | None:
    """The failing operation named by a debugger's message, e.g. 'log', 'div', 'LogBackward0'."""
    for pattern in (_TORCH_OPERATION, _JAX_OPERATION):
        found = pattern.search(message)
        if found:
            return found.group(1)
    return None


def replay_event(error: BaseException, *, step: int, tool: str, frames=None,
                 extra_traceback: str | None = None) -> NonFiniteReplayEvent:
    """The ``nonfinite_replay`` event of a debugger's error.

    Args:
      error: what the debugger raised (``FloatingPointError``, ``RuntimeError``).
      step: the replayed step.
      tool: the debugger, e.g. 'jax.debug_nans'.
      frames: the stack of the operation (outermost first); default: the error's traceback.
      extra_traceback: more text for the event's traceback (PyTorch's forward-call traceback).
    """
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if frames is None:
        frames = traceback.extract_tb(error.__traceback__)
    operation = operation_of(message)
    source = user_source(frames)
    text = "".join(traceback.format_list(list(frames)[-12:]))
    if extra_traceback:
        text = extra_traceback + "\n" + text
    where = f" at {source}" if source else ""
    return NonFiniteReplayEvent(step=step, tool=tool, operation=operation, source=source,
                                traceback=text[-8000:],
                                message=f"{tool}: {operation or 'an operation'} produced the first NaN/Inf{where} "
                                        f"({message[:200]})")
