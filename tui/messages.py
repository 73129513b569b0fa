"""Messages the background workers post to the app (workers never touch widgets themselves)."""

from __future__ import annotations

from textual.message import Message

from diag.trace.columnar import Trace

from diag.tui.diagnosing import DiagnosisOutcome


class TraceUpdated(Message):
    """The follower read new records: here is a fresh snapshot of the trace."""

    def __init__(self, trace: Trace, new_steps: int, written_at: float, fatal: str | None = None):
        super().__init__()
        self.trace = trace
        self.new_steps = new_steps
        self.written_at = written_at  # time.monotonic() when the snapshot was taken
        self.fatal = fatal


class DiagnosisReady(Message):
    """A diagnosis of one snapshot finished (or failed, with the reason)."""

    def __init__(self, outcome: DiagnosisOutcome):
        super().__init__()
        self.outcome = outcome
