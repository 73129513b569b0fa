"""Sweeps: an Optuna trial of a doomed run is pruned with the cause in its user attributes; the
Ray Tune stopper stops a doomed trial and lets a healthy one run."""

import pytest

pytest.importorskip("torch")

from diag import TrainingDoomed  # noqa: E402
from diag.integrations.ray import DiagStopper  # noqa: E402
from tests.guard_runs import fit_torch  # noqa: E402


def test_optuna_prunes_the_doomed_trial_with_its_cause_and_completes_the_healthy_one(tmp_path):
    optuna = pytest.importorskip("optuna", reason="needs the optuna extra: pip install 'diag[optuna]'")
    from diag.integrations.optuna import TrialGuard

    def objective(trial):
        fault = trial.suggest_categorical("fault", ["healthy", "lr_too_high"])
        guard = TrialGuard(trial=trial, quiet=True)
        return float(fit_torch(tmp_path / f"{trial.number}.jsonl", fault, steps=60, guard=guard))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.GridSampler({"fault": ["healthy", "lr_too_high"]}))
    study.optimize(objective, n_trials=2)
    by_fault = {t.params["fault"]: t for t in study.trials}
    doomed, healthy = by_fault["lr_too_high"], by_fault["healthy"]
    assert doomed.state == optuna.trial.TrialState.PRUNED
    assert doomed.user_attrs["diag_cause"] in ("lr_too_high", "exploding_gradients")
    assert doomed.user_attrs["diag_certainty"] >= 0.6 and doomed.user_attrs["diag_step"] < 20
    assert doomed.user_attrs["diag_reason"].startswith("diag guard:")
    assert healthy.state == optuna.trial.TrialState.COMPLETE and healthy.value == 60
    assert "diag_cause" not in healthy.user_attrs


def test_ray_stopper_stops_the_trial_whose_trace_is_doomed_and_not_the_healthy_one(tmp_path):
    doomed, healthy = tmp_path / "doomed.jsonl", tmp_path / "healthy.jsonl"
    with pytest.raises(TrainingDoomed):  # the trial's own loop has no say here: record it all
        fit_torch(doomed, "nan_data", steps=110)
    fit_torch(healthy, "healthy", steps=110, guard=False)
    stopper = DiagStopper(quiet=True)
    assert stopper("healthy", {"loss": 0.3, "diag_trace": str(healthy)}) is False
    assert stopper("doomed", {"loss": float("nan"), "diag_trace": str(doomed)}) is True
    assert stopper.verdicts["doomed"].cause in ("nan_in_input_data", "nonfinite_values")
    assert stopper("doomed", {}) is True and stopper.stop_all() is False
    assert stopper("other", {"diag_cause": "lr_too_high"}) is True
    assert stopper("no-trace", {"loss": 1.0}) is False
