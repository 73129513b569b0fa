"""Crash capture: the trace keeps the end of a run that dies, is interrupted or is terminated.

* An uncaught exception goes through ``sys.excepthook``: an ``exception`` event (type, message,
  traceback, last good step, the layer it was raised in) and ``run_end: crashed``.
* SIGINT and SIGTERM: a ``signal`` event, then the signal is handed on (SIGINT raises
  ``KeyboardInterrupt`` as usual; SIGTERM with the default action exits with status 143, the
  shell's code for a terminated process) and ``run_end: interrupted`` is written on the way out.
  Nothing is written inside the signal handler itself: the training loop may hold the writer's
  lock at that moment, so the handler only raises and the unwinding code writes.
* ``atexit``: whatever was not yet written is flushed; a run that ended without ``close()`` gets
  ``run_end: completed`` (or ``interrupted`` after a signal).

Everything installed is restored by :meth:`CrashCapture.uninstall`.
"""

from __future__ import annotations

import atexit
import contextlib
import signal
import sys
import threading
import time
import traceback
from typing import Callable

import torch

from diag.adapters.crash_site import describe_inputs, innermost_module
from diag.adapters.torch._layers import dtype_name
from diag.trace.records import ExceptionEvent, RunEndEvent, SignalEvent

_SIGNALS = ("SIGINT", "SIGTERM")


class CrashCapture:
    """Installs and removes the process-wide hooks for one recorder.

    Args:
      on_exception: called with ``(exc_type, exc, tb)`` for an uncaught exception.
      on_signal: called with the signal name when SIGINT/SIGTERM arrives (must not write).
      on_exit: called at interpreter exit.
    """

    def __init__(self, on_exception: Callable, on_signal: Callable[[str], None], on_exit: Callable[[], None]):
        self._deferring = 0
        self._pending: tuple | None = None
        self._on_exception = on_exception
        self._on_signal = on_signal
        self._on_exit = on_exit
        self._previous_excepthook = None
        self._previous_handlers: dict[int, object] = {}
        self._installed = False

    def install(self, signals: bool = True) -> None:
        self._previous_excepthook = sys.excepthook
        sys.excepthook = self._excepthook
        if signals and threading.current_thread() is threading.main_thread():
            for name in _SIGNALS:
                signum = getattr(signal, name)
                self._previous_handlers[signum] = signal.signal(signum, self._handle_signal)
        atexit.register(self._on_exit)
        self._installed = True

    def uninstall(self) -> None:
        if not self._installed:
            return
        self._installed = False
        if sys.excepthook is self._excepthook:
            sys.excepthook = self._previous_excepthook
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._previous_handlers.items():
                if signal.getsignal(signum) is self._handle_signal:
                    signal.signal(signum, handler)
        self._previous_handlers.clear()
        atexit.unregister(self._on_exit)

    def _excepthook(self, exc_type, exc, tb) -> None:
        try:
            self._on_exception(exc_type, exc, tb)
        finally:
            (self._previous_excepthook or sys.__excepthook__)(exc_type, exc, tb)

    @contextlib.contextmanager
    def deferring_signals(self):
        """Hold SIGINT/SIGTERM back while a step record is being written.

        The handler unwinds the loop by raising; raised in the middle of ``record()`` it could leave
        a step written but not counted. Inside this block the signal is noted and delivered when
        the block ends, at a point where the trace and the recorder agree.
        """
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
            if not self._deferring and self._pending is not None:
                signum, frame = self._pending
                self._pending = None
                self._deliver(signum, frame)

    def _handle_signal(self, signum, frame) -> None:
        self._on_signal(signal.Signals(signum).name)
        if self._deferring:
            self._pending = (signum, frame)
            return
        self._deliver(signum, frame)

    def _deliver(self, signum, frame) -> None:
        previous = self._previous_handlers.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_IGN:
            return
        elif signum == signal.SIGINT:
            raise KeyboardInterrupt
        else:
            # Unwind instead of dying on the spot, so that the exit handlers can write the trace.
            raise SystemExit(128 + signum)


class CrashEvents:
    """The events a recorder writes when the run ends: exception, signal, ``run_end``.

    A mixin of :class:`~diag.adapters.torch.recorder.TorchRecorder`; the callbacks of its
    :class:`CrashCapture`.
    """

    # ------------------------------------------------------------------ crash capture

    def _on_uncaught(self, exc_type, exc, tb) -> None:
        if self._ended:
            return
        if issubclass(exc_type, KeyboardInterrupt):
            self._end("interrupted")
        else:
            self._write_exception(exc_type, exc, tb)
            self._end("crashed")
        self.writer.flush()

    def _on_signal(self, name: str) -> None:
        # Runs inside the signal handler: only remember it, the unwinding code writes.
        self._signal = name

    def _on_exit(self) -> None:
        if not self._ended:
            self._end("interrupted" if self._signal else "completed")
        if not self.writer.closed:
            self.writer.close()

    def _write_exception(self, exc_type, exc, tb) -> None:
        self._ensure_header()
        site = self._crash_site(tb)
        self.writer.write(
            ExceptionEvent(
                step=self.step,
                time=time.time(),
                type=exc_type.__name__,
                message=str(exc),
                traceback="".join(traceback.format_exception(exc_type, exc, tb)),
                last_good_step=self.last_good_step,
                **site,
            )
        )

    def _crash_site(self, tb) -> dict:
        """The innermost module whose forward is on the traceback (parameter-free ones included),
        with the shapes and dtypes it was called with: what a shape or dtype mismatch needs."""
        names = {id(module): path or "root" for path, module in self.model.named_modules()}
        site = innermost_module(tb, lambda owner: id(owner) in names)
        if site is None:
            return {}
        shapes, dtypes = describe_inputs(site.inputs, lambda d: dtype_name(d) if isinstance(d, torch.dtype) else str(d))
        return {"layer": names[id(site.module)], "module_type": type(site.module).__name__,
                "input_shapes": shapes, "input_dtypes": dtypes}

    def _end(self, status: str) -> None:
        self._ended = True
        self._ensure_header()
        if self._signal:
            self.writer.write(SignalEvent(step=self._default_step(None), time=time.time(), signal=self._signal))
        self.writer.write(RunEndEvent(step=self._default_step(None), time=time.time(), status=status, steps=self.step))
        self.writer.flush()
