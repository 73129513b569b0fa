"""Ray Tune: a stopper that stops a trial whose run the guard judges doomed.

Each trial's training function records its run with a diag recorder or callback (no guard
needed there) and reports the trace's path with its results::

    def train(config):
        path = f"runs/{tune.get_context().get_trial_id()}.jsonl"
        with TorchRecorder(model, opt, path) as rec:
            for step in range(steps):
                ...
                rec.record(loss)
                if step % 10 == 0:
                    tune.report({"loss": loss.item(), "diag_trace": path})

    tuner = tune.Tuner(train, run_config=tune.RunConfig(stop=DiagStopper()))

On each result the stopper folds what the trial appended to its trace into that trial's live
trace and, every ``every`` results, asks the guard (``diag/guard.py``) for a verdict; a doomed
trial is stopped and its verdict kept in ``stopper.verdicts[trial_id]`` (the reason is also
printed once). A result that already carries ``diag_cause`` (from ``Verdict.as_attributes()``,
reported by a trial whose own guard stopped it) stops that trial too.

Ray is not a dependency of diag: where it is installed the stopper is a ``ray.tune.Stopper``;
without Ray the same class works as the plain ``(trial_id, result) -> bool`` callable that Tune
also accepts, which is how diag's own tests exercise it.
"""

from __future__ import annotations

import sys

from diag.guard import Guard, LiveTrace, Verdict

try:  # Ray is optional and heavy: the stopper's logic does not need it.
    from ray.tune import Stopper as _Base
except ImportError:  # pragma: no cover - depends on the environment
    _Base = object


class DiagStopper(_Base):
    """Stops Ray Tune trials whose trace the guard judges doomed.

    Args:
      trace_key: the result key holding the trial's trace path.
      every: judge a trial every this many of its results (each judgement runs the rule engine).
      quiet: do not print the reason of a stop.
      **guard_options: :class:`diag.guard.Guard` options (``threshold``, ``confirm``, ...).
    """

    def __init__(self, trace_key: str = "diag_trace", *, every: int = 1, quiet: bool = False, **guard_options):
        self.trace_key = trace_key
        self.every = max(1, int(every))
        self.quiet = quiet
        self.guard = Guard(quiet=True, **guard_options)
        self.verdicts: dict[str, Verdict | str] = {}
        self._live: dict[str, LiveTrace] = {}
        self._results: dict[str, int] = {}

    def __call__(self, trial_id: str, result: dict) -> bool:
        if trial_id in self.verdicts:
            return True
        if result.get("diag_cause"):
            self.verdicts[trial_id] = str(result["diag_cause"])
            return True
        path = result.get(self.trace_key)
        if not path:
            return False
        live = self._live.get(trial_id)
        if live is None or str(live.path) != str(path):
            live = self._live[trial_id] = LiveTrace(path)
        trace = live.poll()
        self._results[trial_id] = count = self._results.get(trial_id, 0) + 1
        if count % self.every:
            return False
        verdict = self.guard.judge(trace)
        if verdict is None:
            return False
        self.verdicts[trial_id] = verdict
        if not self.quiet:
            print(f"trial {trial_id}: {verdict.reason}", file=sys.stderr, flush=True)
        return True

    def stop_all(self) -> bool:
        """Never stops the whole experiment: one doomed trial says nothing about the others."""
        return False


__all__ = ["DiagStopper"]
