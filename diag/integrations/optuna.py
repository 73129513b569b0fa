"""Optuna: prune a trial whose run is doomed, with the cause in the trial's user attributes.

Install with ``pip install "diag[optuna]"``. In an objective with a plain PyTorch loop::

    def objective(trial):
        lr = trial.suggest_float("lr", 1e-4, 10.0, log=True)
        ...
        guard = TrialGuard(trial)
        with TorchRecorder(model, opt, f"runs/{trial.number}.jsonl", guard=guard) as rec:
            for step in range(steps):
                ...
                rec.record(loss)          # raises optuna.TrialPruned once the run is doomed
        return final_loss

With a framework callback (``DiagCallback(path, guard=guard)``), the framework stops the run;
call ``guard.prune_if_stopped()`` after ``fit`` to mark the trial pruned. Either way the trial's
user attributes hold ``diag_cause``, ``diag_certainty``, ``diag_step``, ``diag_doom``,
``diag_trigger`` and ``diag_reason`` (see :meth:`diag.guard.Verdict.as_attributes`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna

from diag.guard import Guard, Verdict


@dataclass
class TrialGuard(Guard):
    """A :class:`diag.guard.Guard` bound to an Optuna trial (every ``Guard`` option applies).

    Args:
      trial: the ``optuna.Trial`` being evaluated.

    Example:
      >>> guard = TrialGuard(trial, threshold=0.9)       # doctest: +SKIP
    """

    trial: "optuna.Trial | None" = field(default=None, kw_only=True)

    def after_step(self, step: int, writer, *, finite: bool = True) -> Verdict | None:
        already = self.verdict is not None
        verdict = super().after_step(step, writer, finite=finite)
        if verdict is not None and not already and self.trial is not None:
            for key, value in verdict.as_attributes().items():
                self.trial.set_user_attr(key, value)
        return verdict

    def stop_loop(self, step: int, writer, *, finite: bool = True) -> None:
        """In a plain loop: raises ``optuna.TrialPruned`` (not ``TrainingDoomed``) when doomed."""
        if self.after_step(step, writer, finite=finite) is not None:
            self.prune_if_stopped()

    def prune_if_stopped(self) -> None:
        """Raise ``optuna.TrialPruned`` with the reason when the guard stopped the run."""
        if self.verdict is not None:
            raise optuna.TrialPruned(self.verdict.reason)


__all__ = ["TrialGuard"]
