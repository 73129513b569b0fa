"""Run the engine on a trace for the TUI, turning any failure into a message instead of a crash."""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field

from diag.trace.columnar import Trace


@dataclass
class DiagnosisOutcome:
    """A diagnosis, or why there is none, for the trace of ``steps`` steps."""

    diagnosis: object | None = None  # diag.engine.Diagnosis
    error: str | None = None
    steps: int = 0
    last_step: int | None = None
    detail: str = field(default="", repr=False)

    @property
    def causes(self) -> list:
        return list(self.diagnosis.causes) if self.diagnosis is not None else []

    def cause(self, cause_id: str):
        return self.diagnosis.cause(cause_id) if self.diagnosis is not None else None


def diagnose_safely(trace: Trace) -> DiagnosisOutcome:
    """``diag.engine.diagnose(trace)``; an engine that is missing or raises becomes ``error``.

    The TUI must keep showing the trace when the rules fail (a user rule with a bug, an engine
    mid-upgrade), so every exception is caught here and reported on screen.
    """
    outcome = DiagnosisOutcome(steps=trace.num_steps, last_step=trace.last_step)
    try:
        from diag.engine import diagnose

        outcome.diagnosis = diagnose(trace)
    except Exception as e:  # noqa: BLE001 - shown to the user, never fatal
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        more = f" (and {len(lines) - 1} more)" if len(lines) > 1 else ""
        outcome.error = f"{type(e).__name__}: {lines[0] if lines else ''}"[:200] + more
        outcome.detail = traceback.format_exc()
    return outcome
