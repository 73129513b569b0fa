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


def _tune_trial(config):
    """A Ray Tune trial: the plain PyTorch loop of tests/guard_runs.py, recorded (no guard of its own),
    reporting its loss and trace path every 5 steps; the driver's DiagStopper decides."""
    import torch
    from ray import tune
    from torch.nn import functional as F

    from diag.adapters.torch import TorchRecorder
    from tests.guard_runs import BATCH, CLASSES, batch_indices, make_data, poison, torch_mlp, torch_optimizer

    torch.set_num_threads(1)
    fault, path, steps = config["fault"], f"{config['folder']}/{config['fault']}.jsonl", 200
    x, y = make_data()
    yt = torch.from_numpy(y)
    model = torch_mlp(0)
    opt = torch_optimizer(model, fault)
    rows = batch_indices(steps, len(x), seed=1)
    with TorchRecorder(model, opt, path, task="classification", num_classes=CLASSES, batch_size=BATCH,
                       loss_kind="softmax_cross_entropy", capture_crashes=False, flush_every=5) as rec:
        for step in range(steps):
            opt.zero_grad()
            loss = F.cross_entropy(model(torch.from_numpy(poison(x[rows[step]], step, fault))), yt[rows[step]])
            loss.backward()
            opt.step()
            rec.record(loss, labels=yt[rows[step]])
            if step % 5 == 4:
                rec.writer.flush()
                tune.report({"loss": loss.item(), "step": step, "diag_trace": path})


def test_a_real_ray_tune_run_stops_the_doomed_trial_and_completes_the_healthy_one(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'diag[ray]')")
    from pathlib import Path

    from ray import tune

    from tests.guard_runs import NAN_ONSET

    repo = Path(__file__).resolve().parent.parent
    monkeypatch.setenv("PYTHONPATH", f"{repo}:{__import__('os').environ.get('PYTHONPATH', '')}")  # the workers import tests.*
    monkeypatch.setenv("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        stopper = DiagStopper(quiet=True)
        tuner = tune.Tuner(
            _tune_trial,
            param_space={"fault": tune.grid_search(["healthy", "nan_data"]), "folder": str(tmp_path)},
            run_config=tune.RunConfig(stop=stopper, storage_path=str(tmp_path / "ray_results"), verbose=0),
        )
        results = {r.config["fault"]: r for r in tuner.fit()}
    finally:
        ray.shutdown()
    healthy, doomed = results["healthy"], results["nan_data"]
    assert healthy.error is None and healthy.metrics["step"] == 199  # ran to the end, never stopped
    assert NAN_ONSET <= doomed.metrics["step"] <= NAN_ONSET + 20  # stopped within a few reports
    (verdict,) = stopper.verdicts.values()
    assert verdict.cause in ("nan_in_input_data", "nonfinite_values")
