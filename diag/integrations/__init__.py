"""Sweep integrations over the guard (``diag/guard.py``): stop doomed trials, saying why.

* :mod:`diag.integrations.optuna`: ``TrialGuard(trial)`` prunes an Optuna trial
  (``optuna.TrialPruned``) with the cause in the trial's user attributes.
* :mod:`diag.integrations.ray`: ``DiagStopper()``, a Ray Tune stopper that stops a trial whose
  trace the guard judges doomed.

Each imports its framework only when imported itself.
"""
