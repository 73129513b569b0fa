"""A short command's process: its start without collector passes, its end without the teardown.

The start: imports and the knowledge base, once, without the cyclic garbage collector.

Starting ``diag explain`` allocates ~75,000 long-lived objects (modules, classes, pydantic
schemas of the rule files, trace records and diagnosis, the decoded rule documents, the compiled
rules) and almost no garbage (~1,500 objects in cycles). The collector cannot know they will all live: every 700 allocations it scans the
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

The end: once ``diag explain`` has written its output, the interpreter's teardown (clearing every
module, freeing numpy's, pydantic's and the rules' objects one by one, a last collection) is
~10-30 ms of CPU that no one sees the result of. ``end_process`` skips it with ``os._exit`` after
flushing the standard streams, but only for a command that allowed it and only when nothing is
registered to run at exit: no ``atexit`` callback (coverage, logging, multiprocessing and user
code register theirs there), no ``weakref.finalize`` (temporary folders), no second thread. Any of
them, or a stream that cannot be flushed (a closed pipe), and the process exits as usual.
"""

from __future__ import annotations

import gc
import os
import sys
from contextlib import contextmanager

_process_ends_after_command = False
_quick_exit_allowed = False


def process_ends_after_command() -> None:
    """Called by the ``diag`` program before it runs the command: what is frozen may stay frozen."""
    global _process_ends_after_command, _quick_exit_allowed
    _process_ends_after_command = True
    _quick_exit_allowed = False  # until the command that runs now allows it


def allow_quick_exit() -> None:
    """Called by a command that leaves nothing behind to run at exit (its output is written by then)."""
    global _quick_exit_allowed
    _quick_exit_allowed = True


def end_process(code: int):
    """``sys.exit(code)``, without the interpreter's teardown when the command allowed it and nothing
    is registered to run in it (see the module's docstring)."""
    if _quick_exit_allowed and _nothing_runs_at_exit():
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # the usual exit reports it, as it always did
        else:
            os._exit(code)
    sys.exit(code)


def _nothing_runs_at_exit() -> bool:
    import atexit
    import weakref

    callbacks = getattr(atexit, "_ncallbacks", None)  # CPython's count; elsewhere, exit as usual
    finalizers = getattr(weakref.finalize, "_registry", None)
    threading = sys.modules.get("threading")  # not loaded: no thread was started through it
    return (callable(callbacks) and callbacks() == 0 and isinstance(finalizers, dict) and not finalizers
            and (threading is None or threading.active_count() == 1))


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
