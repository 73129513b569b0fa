"""The guard hook both recorders share: ``guard=True`` or ``Guard(...)`` stops a plain loop.

The judging itself lives in :mod:`diag.guard`; a recorder only says when a step has been written
and whether it was finite, and ends a run stopped by the guard as interrupted, not crashed.
"""

from __future__ import annotations

from diag.guard import Guard, TrainingDoomed



def ended_on_purpose(exc_type) -> str | None:
    """The run_end status of a run ended by ``exc_type`` on purpose (no exception event), else None:
    'stopped' by the guard, 'interrupted' by Ctrl-C or a SIGTERM."""
    if issubclass(exc_type, TrainingDoomed):
        return "stopped"
    if issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
        return "interrupted"
    return None


class GuardHook:
    """Mixin of the recorders: ``self.guard`` and the check after each written step.

    The recorder has a ``writer`` (the guard flushes it, reads the trace back, and writes its
    reason into it once).
    """

    guard: Guard | None = None

    def _set_guard(self, guard: "Guard | bool | None") -> None:
        self.guard = Guard.coerce(guard)

    def _check_guard(self, step: int, *, finite: bool) -> None:
        """Raise :class:`diag.TrainingDoomed` once the run cannot recover (see diag/guard.py)."""
        if self.guard is not None:
            self.guard.stop_loop(step, self.writer, finite=finite)
