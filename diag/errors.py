"""Errors a user can cause, and the exit codes they map to.

Exit codes (documented in the README):
  0  the command ran; nothing at or above the requested severity was found
  1  findings at or above ``--fail-on`` severity (explain), or rule tests failed
  2  bad input: a missing or unreadable file, a malformed trace or rule, a wrong schema version
"""

from __future__ import annotations

from dataclasses import dataclass

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_BAD_INPUT = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as we can."""

    path: str
    message: str
    line: int | None = None
    field: str | None = None
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        what = f"{self.field}: {self.message}" if self.field else self.message
        return f"{where}: {self.severity}: {what}"


class DiagInputError(Exception):
    """A user's input cannot be used at all. The CLI prints it and exits with code 2."""

    def __init__(self, problem: Problem | str, *, hint: str | None = None):
        self.problem = problem if isinstance(problem, Problem) else Problem(path="", message=problem)
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = str(self.problem) if self.problem.path else f"error: {self.problem.message}"
        return f"{text}\n  hint: {self.hint}" if self.hint else text
