"""Steps of a loop gone idle reach the disk within ``flush_seconds``, not at its next step.

``record`` decodes a step on the loop's own thread once the device has finished it, a call or two
after it ran (see recorder.py: decoding there costs nothing, a hand-off to another thread cost
more). A loop that stops calling ``record`` (a data loader that hangs, a long evaluation, a
checkpoint) would leave its last steps in memory until it came back, so a ``kill -9`` meanwhile
lost them however old they were. A daemon thread looks a few times per ``flush_seconds`` for
steps the loop left pending; once the oldest has waited a quarter of ``flush_seconds`` and the
device has finished it, it decodes and writes them, and flushes the file.

A running loop never meets it: its steps are decoded long before they are a quarter of a second
old. The one step the thread leaves to the loop is the first non-finite one when ``localize`` is
on: localizing re-runs the step on the model, which only the loop's thread may touch.
"""

from __future__ import annotations

import threading
import time
import weakref

import numpy as np

from diag.adapters.flax.decode import vector_is_finite


class IdleDrain:
    """Mixin of the Flax recorder: the lock around its pending steps and the thread that drains them.

    The recorder has ``_pending`` (``(step, stats, call, wall_time, extra)`` items, oldest first),
    ``_process(item)``, ``_layouts``, ``localize``, ``_nonfinite_reported``, ``writer``
    and ``_closed``.
    """

    def _start_idle_drain(self, flush_seconds: float) -> None:
        self._lock = threading.RLock()  # the loop's thread and the drain thread share the pending steps
        self._drained_in_background = False  # the loop's next record() runs the guard on them
        self._idle_after = flush_seconds / 4
        self._idle_stop = threading.Event()
        # The thread holds the recorder weakly: a recorder dropped without close() is still freed.
        self._idle_thread = threading.Thread(
            target=_drain_while_open, args=(weakref.ref(self), self._idle_stop, self._idle_after),
            name="diag-flax-idle-drain", daemon=True)
        self._idle_thread.start()

    def _stop_idle_drain(self) -> None:
        self._idle_stop.set()
        if self._idle_thread is not threading.current_thread():
            self._idle_thread.join(timeout=5)

    def _drain_idle(self) -> None:
        """Decode and write the finished steps that have waited ``_idle_after`` seconds."""
        with self._lock:
            if self._closed:
                return
            cutoff = time.time() - self._idle_after
            drained = False
            while self._pending and self._pending[0][3] <= cutoff and _ready(self._pending[0][1]):
                if self.localize and not self._nonfinite_reported and not self._head_is_finite():
                    break  # localizing re-runs the step on the model: the loop's thread does it
                self._process(self._pending.pop(0))
                drained = True
            if drained:
                self._drained_in_background = True
                self.writer.flush()

    def _head_is_finite(self) -> bool:
        vector = np.asarray(self._pending[0][1], dtype=np.float32)
        return vector_is_finite(vector, self._layouts.get(vector.size))


def _drain_while_open(recorder_ref, stop: threading.Event, period: float) -> None:
    while not stop.wait(period):
        recorder = recorder_ref()
        if recorder is None:
            return
        try:
            recorder._drain_idle()
        except Exception:  # noqa: BLE001 - never kill the run over a record; the loop's thread retries
            pass
        del recorder  # hold nothing between two looks


def _ready(array) -> bool:
    """Has the device finished ``array`` (a host value always has)?"""
    is_ready = getattr(array, "is_ready", None)
    return is_ready() if is_ready is not None else True
