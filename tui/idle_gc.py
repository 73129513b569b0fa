"""Garbage collection between key presses instead of during them."""

from __future__ import annotations

import gc
import time

QUIET_AFTER = 0.15  # seconds without input before a collection may run
FULL_EVERY = 10  # every tenth collection is a full one (of the heap not frozen)
FORCE_AT = 200_000  # young objects after which a collection runs even while keys keep coming


class IdleCollector:
    """Runs Python's cyclic garbage collector when the user is not waiting for an answer.

    The collector normally runs whenever enough objects were allocated, wherever that happens to
    be. A tab switch allocates thousands (styles, strips, segments), so collections landed inside
    key presses: while a 100,000-step run streamed in, about 100 young (generation 1)
    collections of 6-18 ms and 10 full ones of 12-97 ms in 30 s (wall time, load ~5), a full
    one in a quarter of the key presses. Here automatic collection is off while the app runs and
    ``tick`` (called a few times a second) collects once no key or click came for
    ``QUIET_AFTER`` seconds, or at once when ``FORCE_AT`` young objects are waiting, so memory
    stays bounded when input never pauses. Reference counting still frees everything not in a cycle.
    """

    def __init__(self):
        self._was_enabled: bool | None = None
        self._last_input = float("-inf")
        self._collections = 0

    def start(self) -> None:
        if self._was_enabled is None:
            self._was_enabled = gc.isenabled()
            gc.disable()

    def stop(self) -> None:
        """Automatic collection as it was before ``start``."""
        if self._was_enabled:
            gc.enable()
        self._was_enabled = None

    def input_seen(self) -> None:
        self._last_input = time.monotonic()

    def tick(self) -> None:
        young = gc.get_count()[0]
        if young < gc.get_threshold()[0]:
            return  # as little as the collector would have waited for
        if time.monotonic() - self._last_input < QUIET_AFTER and young < FORCE_AT:
            return
        self._collections += 1
        gc.collect(2 if self._collections % FULL_EVERY == 0 else 1)
