"""Leave a complete trace when a run dies: exceptions, SIGINT/SIGTERM, and (partly) kill -9.

An exception inside ``with recorder:`` becomes an ``exception`` event (type, message, traceback,
last good step) followed by ``run_end``; the trace is flushed before the exception propagates.
SIGTERM and SIGINT write a ``signal`` event and are turned into an exception (``SystemExit`` and
``KeyboardInterrupt``) so that the same path flushes the trace. ``kill -9`` cannot be caught: the
writer flushes every ``flush_seconds`` so the trace is readable up to the last flush.
"""

from __future__ import annotations

import signal
import threading
import time
import traceback

from diag.adapters._guard import ended_on_purpose
from diag.trace.records import ExceptionEvent, RunEndEvent, SignalEvent


class SignalGuard:
    """Installs SIGTERM/SIGINT handlers that report through ``on_signal`` and then raise.

    Handlers can only be installed from the main thread; elsewhere the guard does nothing.

    Args:
      on_signal: called with a SignalEvent before the signal is turned into an exception.
    """

    SIGNALS = ("SIGTERM", "SIGINT")

    def __init__(self, on_signal):
        self.on_signal = on_signal
        self._previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for name in self.SIGNALS:
            sig = getattr(signal, name)
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            try:
                signal.signal(sig, handler)
            except (ValueError, TypeError):
                pass
        self._previous.clear()

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        self.on_signal(SignalEvent(signal=name, time=time.time(), message=f"received {name}"))
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(128 + signum)


def crash_site(model, tb) -> dict:
    """The innermost NNX module whose ``__call__`` was running when the exception was raised, with
    its path in ``model`` and the shapes and dtypes it was called with (fields of the event).

    Inside ``nnx.jit`` the modules on the traceback are clones of the user's: the path is found by
    walking the outermost clone on the traceback (or the model itself, outside a jit).
    """
    from flax import nnx

    from diag.adapters.crash_site import describe_inputs, innermost_module
    from diag.adapters.flax.forward import path_str

    site = innermost_module(tb, lambda owner: isinstance(owner, nnx.Module))
    if site is None:
        return {}
    shapes, dtypes = describe_inputs(site.inputs, lambda d: getattr(d, "name", str(d)))
    fields = {"module_type": type(site.module).__name__, "input_shapes": shapes, "input_dtypes": dtypes}
    for root in [model, *site.outer]:
        if root is None:
            continue
        try:
            for path, node in nnx.iter_graph(root):
                if node is site.module:
                    return {"layer": path_str(path) or "root", **fields}
        except Exception:  # noqa: BLE001 - a graph that cannot be walked: keep the type and inputs
            continue
    return fields


def exit_events(exc_type, exc, tb, *, step: int | None, last_good_step: int | None, steps: int,
                site: dict | None = None) -> list:
    """The events that close a trace, given how the ``with`` block ended."""
    now = time.time()
    if exc_type is None:
        return [RunEndEvent(status="completed", steps=steps, step=step, time=now)]
    status = ended_on_purpose(exc_type)  # the guard's stop, Ctrl-C, SIGTERM: no crash
    if status is not None:
        return [RunEndEvent(status=status, steps=steps, step=step, time=now,
                            message=f"{exc_type.__name__}{': ' + str(exc) if str(exc) else ''}")]
    text = "".join(traceback.format_exception(exc_type, exc, tb))
    return [
        ExceptionEvent(type=exc_type.__name__, message=str(exc)[:2000], traceback=text[-20000:],
                       last_good_step=last_good_step, step=step, time=now, **(site or {})),
        RunEndEvent(status="crashed", steps=steps, step=step, time=now),
    ]
