"""The guard: diagnose a run while it trains, and stop it once it is doomed, saying why.

Every ``every`` steps (default: each time the trace writer flushes) and at once on a step whose
loss or gradients are not finite, the guard reads what the run appended to its trace, runs the
rule engine on it, and stops the run when both hold:

* a cause reaches certainty >= ``threshold`` (0.8), and
* the trace shows evidence that cannot recover, of a kind that cause accounts for:

  ``nonfinite``  the loss is NaN/Inf on the last ``confirm`` recorded steps (a NaN that has
                 reached the weights never leaves them; a GradScaler's skipped step is not this);
  ``diverged``   the median loss of the last 10 steps is over ``diverge_factor`` times the run's
                 starting loss (the lowest of its first 3), and none of the last ``confirm``
                 steps is back at the starting loss;
  ``exploding``  the gradient norm of each of the last ``confirm`` steps is over ``grad_factor``
                 times its median over the run so far (or not finite);
  ``leakage``    a data-leakage cause (the data does not change while the run trains).

The reason is written into the trace as an error ``note`` event starting with ``diag guard:`` and
printed once to stderr. The framework callbacks stop through the framework's own flag
(Lightning ``trainer.should_stop``, Hugging Face ``control.should_training_stop``, Keras
``model.stop_training``); ``TorchRecorder(..., guard=True)`` in a plain loop raises
:class:`TrainingDoomed` from ``record``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from diag.trace.builder import TraceBuilder
from diag.trace.reader import feed_line
from diag.trace.records import NoteEvent

# The causes each kind of unrecoverable evidence can stop a run for: a cause the evidence does
# not bear on (class imbalance beside a NaN loss) never stops a run, however certain.
DOOMING_CAUSES: dict[str, frozenset[str]] = {
    "nonfinite": frozenset({
        "nonfinite_values", "nan_in_input_data", "numerical_instability", "fp16_overflow",
        "loss_scale_collapse", "lr_too_high", "exploding_gradients", "bad_initialization",
        "missing_zero_grad", "unnormalized_inputs", "low_precision_normalization",
    }),
    "diverged": frozenset({
        "lr_too_high", "exploding_gradients", "missing_zero_grad", "lr_schedule_issue",
        "bad_initialization", "unnormalized_inputs", "unstable_training", "nonfinite_values",
    }),
    "exploding": frozenset({
        "exploding_gradients", "lr_too_high", "missing_zero_grad", "bad_initialization",
        "unnormalized_inputs", "fp16_overflow",
    }),
    "leakage": frozenset({"target_leakage", "train_val_overlap", "temporal_leakage", "id_feature"}),
}

GUARD_NOTE_PREFIX = "diag guard:"
DOOM_WORDS = {"nonfinite": "the loss stays non-finite", "diverged": "the loss diverged",
              "exploding": "the gradient norm exploded", "leakage": "the data leaks"}


class TrainingDoomed(RuntimeError):
    """Raised by a recorder with a guard when the run cannot recover.

    Attributes:
      cause: the cause id (``shared/CAUSES.md``), e.g. ``'nan_in_input_data'``.
      step: the step at which the guard stopped the run.
      verdict: the full :class:`Verdict` (certainty, evidence, the unrecoverable evidence kind).
    """

    def __init__(self, cause: str, step: int, verdict: "Verdict | None" = None):
        self.cause = cause
        self.step = step
        self.verdict = verdict
        super().__init__(verdict.reason if verdict is not None else f"training doomed at step {step}: {cause}")


@dataclass(frozen=True)
class Verdict:
    """Why the guard stopped a run."""

    cause: str
    certainty: float
    step: int
    doom: str  # which unrecoverable evidence: 'nonfinite', 'diverged', 'exploding', 'leakage'
    title: str = ""
    evidence: tuple[str, ...] = ()
    fix: str = ""
    trigger: str | None = None  # the cause that reached the threshold, when another is named
    trigger_certainty: float | None = None

    @property
    def reason(self) -> str:
        """One line: the cause, its certainty, the step, and the first evidence sentence."""
        first = f": {self.evidence[0]}" if self.evidence else ""
        via = f"; {self.trigger} {self.trigger_certainty:.2f}" if self.trigger else ""
        return (f"{GUARD_NOTE_PREFIX} stopped the run at step {self.step}: {self.cause} "
                f"(certainty {self.certainty:.2f}{via}; {DOOM_WORDS[self.doom]}){first}")

    def as_attributes(self) -> dict[str, object]:
        """Flat JSON-able attributes (Optuna's user attributes, Ray Tune results)."""
        return {"diag_cause": self.cause, "diag_certainty": round(self.certainty, 4), "diag_step": self.step,
                "diag_doom": self.doom, "diag_trigger": self.trigger or self.cause, "diag_reason": self.reason}


def doom_evidence(trace, *, confirm: int = 3, diverge_factor: float = 5.0, grad_factor: float = 1000.0) -> list[str]:
    """The kinds of unrecoverable evidence the trace shows now (see the module docstring).

    Args:
      trace: a ``diag.trace.Trace`` (possibly of a run still training).
      confirm: how many of the latest recorded steps must all show it.
      diverge_factor: a loss (median of the last 10) this many times the starting loss has diverged.
      grad_factor: a gradient norm this many times its running median has exploded.

    Returns:
      A list drawn from ``'nonfinite'``, ``'diverged'``, ``'exploding'`` (leakage is judged by its
      causes alone).
    """
    found = []
    if not trace.has("loss"):
        return found
    loss = trace.series("loss").values
    skipped = trace.series("skipped") if trace.has("skipped") else None
    recent = loss[-confirm:]
    if len(recent) >= confirm and not np.isfinite(recent).any():
        skipped_recent = skipped is not None and bool(np.any(skipped.values[-confirm:] > 0)) \
            and int(skipped.steps[-1]) == int(trace.series("loss").steps[-1])
        if not skipped_recent:  # a loss scaler skipping overflowing steps can recover
            found.append("nonfinite")
    finite = loss[np.isfinite(loss)]
    window = loss[-max(confirm, 10):]  # a median: one lucky step does not hide a wrecked run
    if len(recent) >= confirm and len(finite) > confirm and np.isfinite(window).all():
        start = float(np.min(np.abs(finite[:3])))  # the loss before the first steps could blow it up
        bar = diverge_factor * start
        if bar > 0 and float(np.median(window)) > bar and bool(np.all(recent > bar / diverge_factor)):
            found.append("diverged")
    if trace.has("grad_norm"):
        grad = trace.series("grad_norm").values
        if len(grad) > 2 * confirm:
            earlier = grad[:-confirm]
            earlier = earlier[np.isfinite(earlier)]
            last = grad[-confirm:]
            if len(earlier) and float(np.median(earlier)) > 0:
                bound = grad_factor * float(np.median(earlier))
                if bool(np.all(~np.isfinite(last) | (last > bound))):
                    found.append("exploding")
    return found


class LiveTrace:
    """Reads what a run appended to its JSONL trace since the last poll into one growing trace."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._builder = TraceBuilder(str(self.path))
        self._builder.start_shard(str(self.path), 0)
        self._offset = 0
        self._line = 0

    def poll(self):
        """Fold the complete lines appended since the last poll in; return the trace so far."""
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            data = b""
        end = data.rfind(b"\n") + 1  # a half-written last line waits for the next poll
        for line in data[:end].split(b"\n")[:-1]:
            self._line += 1
            if line.strip():
                feed_line(self.path, self._builder, self._line, line)
        self._offset += end
        return self._builder.build()


@dataclass
class Guard:
    """Stops a doomed run: the rule engine on the live trace, every ``every`` steps.

    Args:
      every: diagnose every this many steps (default: the trace writer's ``flush_every``). A step
        whose loss or gradients are not finite is checked at once regardless.
      threshold: the certainty a cause needs before the guard stops a run.
      confirm: how many latest steps must show the unrecoverable evidence.
      diverge_factor: see :func:`doom_evidence`.
      grad_factor: see :func:`doom_evidence`.
      rules: extra user rule folders, as for ``diag explain --rules``.
      quiet: do not print the reason (it is written into the trace regardless).

    Example:
      >>> from diag.adapters.torch import TorchRecorder            # doctest: +SKIP
      >>> rec = TorchRecorder(model, opt, "run.jsonl", guard=Guard(threshold=0.9))  # doctest: +SKIP
    """

    every: int | None = None
    threshold: float = 0.8
    confirm: int = 3
    diverge_factor: float = 5.0
    grad_factor: float = 1000.0
    rules: tuple[str, ...] = ()
    quiet: bool = False
    verdict: Verdict | None = field(default=None, init=False)
    checks: int = field(default=0, init=False)
    _live: LiveTrace | None = field(default=None, init=False, repr=False)
    _last_check: int | None = field(default=None, init=False, repr=False)

    @staticmethod
    def coerce(value: "Guard | bool | None") -> "Guard | None":
        """``True`` -> a default ``Guard()``; ``False``/``None`` -> no guard; a ``Guard`` as is."""
        if value is None or value is False:
            return None
        if value is True:
            return Guard()
        if isinstance(value, Guard):
            return value
        raise TypeError(f"guard must be True, False, None or a diag.guard.Guard, not {type(value).__name__}")

    @property
    def stopped(self) -> bool:
        return self.verdict is not None

    def after_step(self, step: int, writer, *, finite: bool = True) -> Verdict | None:
        """Call after each recorded step. Returns the verdict once the run is doomed, else None.

        Args:
          step: the step just recorded.
          writer: the run's ``TraceWriter`` (flushed before reading, written the reason into).
          finite: False when the step's loss or gradients were not finite (checked at once).
        """
        if self.verdict is not None:
            return self.verdict
        every = self.every or getattr(writer, "flush_every", 50)
        due = self._last_check is None and step + 1 >= every
        due = due or (self._last_check is not None and step - self._last_check >= every)
        if not (due or not finite):
            return None
        self._last_check = step
        writer.flush()
        if self._live is None or self._live.path != Path(writer.path):
            self._live = LiveTrace(writer.path)
        verdict = self.judge(self._live.poll(), step)
        if verdict is not None:
            self.verdict = verdict
            writer.write(NoteEvent(step=step, time=time.time(), level="error", message=verdict.reason))
            writer.flush()
            if not self.quiet:
                print(verdict.reason, file=sys.stderr, flush=True)
        return verdict

    def stop_loop(self, step: int, writer, *, finite: bool = True) -> None:
        """:meth:`after_step` for a plain training loop: raises :class:`TrainingDoomed` when doomed."""
        verdict = self.after_step(step, writer, finite=finite)
        if verdict is not None:
            raise TrainingDoomed(verdict.cause, verdict.step, verdict)

    def judge(self, trace, step: int | None = None) -> Verdict | None:
        """The verdict on a trace as it stands (None: let it train). Pure: writes nothing."""
        from diag.engine.api import diagnose

        self.checks += 1
        doom = set(doom_evidence(trace, confirm=self.confirm, diverge_factor=self.diverge_factor,
                                 grad_factor=self.grad_factor))
        diagnosis = diagnose(trace, self.rules)
        # A cause another one explains (exploding gradients explained by a too-high learning
        # rate) still counts as reached; the stop then names the cause that explains it.
        candidates = sorted([*diagnosis.causes, *diagnosis.suppressed], key=lambda c: -c.certainty)
        for cause in candidates:
            if cause.certainty < self.threshold:
                continue
            kinds = [k for k in ("nonfinite", "diverged", "exploding") if k in doom and cause.id in DOOMING_CAUSES[k]]
            if cause.id in DOOMING_CAUSES["leakage"]:
                kinds.append("leakage")
            if kinds:
                named = _explaining(cause, diagnosis) or _upstream(cause, diagnosis.causes, DOOMING_CAUSES[kinds[0]])
                return Verdict(
                    cause=named.id, certainty=float(named.certainty),
                    step=int(step if step is not None else (trace.last_step or 0)), doom=kinds[0],
                    title=named.title, evidence=tuple(named.evidence) + tuple(
                        e for e in cause.evidence if named is not cause),
                    fix=named.fix[0].action if named.fix else "",
                    trigger=None if named is cause else cause.id,
                    trigger_certainty=None if named is cause else float(cause.certainty),
                )
        return None


def _explaining(cause, diagnosis):
    """The ranked cause at the top of ``cause``'s ``suppressed_by`` chain, or None."""
    seen = set()
    while cause is not None and cause.suppressed_by and cause.id not in seen:
        seen.add(cause.id)
        cause = diagnosis.cause(cause.suppressed_by)
    return None if cause is None or not seen else cause


def _upstream(cause, ranked, allowed):
    """The cause to name for a stop. ``nonfinite_values`` is the end of a chain whose start
    (a too-high learning rate, exploding gradients, ...) is the useful answer: when another cause
    the same evidence bears on is likely (>= 0.6), name that one; the certainty that triggered
    the stop still came from ``cause``."""
    if cause.id != "nonfinite_values":
        return cause
    for other in ranked:
        if other is not cause and not other.suppressed_by and other.id in allowed and other.certainty >= 0.6:
            return other
    return cause


def guard_notes(events: Iterable) -> list[str]:
    """The guard's stop reasons among a trace's events (``trace.events``)."""
    return [e.message for e in events
            if getattr(e, "event", None) == "note" and (e.message or "").startswith(GUARD_NOTE_PREFIX)]


__all__ = ["DOOMING_CAUSES", "Guard", "LiveTrace", "TrainingDoomed", "Verdict", "doom_evidence", "guard_notes"]
