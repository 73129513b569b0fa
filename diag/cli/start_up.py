"""A command's start without the cyclic garbage collector: imports and the knowledge base, once.

Starting ``diag explain`` allocates ~75,000 long-lived objects (modules, classes, pydantic
schemas, the decoded rule documents, the compiled rules) and almost no garbage (~1,500 objects
in cycles). The collector cannot know they will all live: every 700 allocations it scans the
youngest of them, and the older generations again and again as they fill, ~40 ms of CPU per
explain on a two-core machine, a third of it while the knowledge base loads. Paused for the
start, then ``gc.freeze()``: what the start built moves to the permanent generation, which
later collections skip, and the collector runs as usual for the trace and the diagnosis (a
large trace's memory is managed exactly as before).

In-process callers (tests, a notebook calling ``diag.cli.main``) get the collector back as they
had it: enabled, and what was frozen unfrozen, so nothing of theirs stays uncollectable. The
``diag`` program itself (``diag.cli.run``) leaves it frozen: the interpreter collects once more as
it exits, and unfrozen, that last collection scans every object the start built, ~15 ms more on a
quiet machine, for objects that die with the process anyway (what is frozen is still freed by
reference counting as the interpreter clears its modules).
"""

from __future__ import annotations

import gc
from contextlib import contextmanager

_process_ends_after_command = False


def process_ends_after_command() -> None:
    """Called by the ``diag`` program before it runs the command: what is frozen may stay frozen."""
    global _process_ends_after_command
    _process_ends_after_command = True


@contextmanager
def collector_paused():
    """Pause the cyclic collector until the ``started()`` this yields is called, or the block ends.

    ``started()`` freezes what exists (moved out of later collections' way) and resumes the
    collector. Nothing happens when the collector is already off, or when the caller froze
    objects of its own (``gc.unfreeze`` on the way out would release theirs too).

    Example:
      >>> import gc
      >>> with collector_paused() as started:
      ...     paused = not gc.isenabled()
      ...     started()
      ...     resumed = gc.isenabled()
      >>> paused, resumed, gc.isenabled(), gc.get_freeze_count()
      (True, True, True, 0)
    """
    if not gc.isenabled() or gc.get_freeze_count():
        yield lambda: None
        return
    froze = False

    def started() -> None:
        nonlocal froze
        if not gc.isenabled():
            gc.freeze()
            froze = True
            gc.enable()

    gc.disable()
    try:
        yield started
    finally:
        if froze and not _process_ends_after_command:
            gc.unfreeze()
        gc.enable()
