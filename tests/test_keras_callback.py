"""diag.adapters.keras.DiagCallback records a real Keras 3 fit (JAX backend) and stops doomed ones."""

import os

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is imported; JAX comes with diag
keras = pytest.importorskip("keras", reason="needs the keras extra: pip install 'diag[keras]'")

from diag import load_trace  # noqa: E402
from diag.engine.api import diagnose  # noqa: E402
from diag.guard import guard_notes  # noqa: E402
from tests.guard_runs import NAN_ONSET, assert_no_cause_and_twins_checked, fit_keras  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore"),
              pytest.mark.skipif(keras.backend.backend() != "jax", reason="the test fits on Keras' JAX backend")]


def _fit(tmp_path, fault, steps):
    path = tmp_path / "run.jsonl"
    history = fit_keras(path, fault, steps=steps)
    return history, load_trace(path)


def test_healthy_keras_fit_records_norms_from_the_jitted_step_and_is_never_stopped(tmp_path):
    history, trace = _fit(tmp_path, "healthy", 200)
    assert not history.model.stop_training and len(history.epoch) == 4
    assert trace.num_steps == 200 and trace.header.framework == "keras"
    assert len(trace.layer_names) == 3 and trace.header.layers[0].activation == "relu"
    assert trace.header.layers[-1].is_output and trace.header.optimizer.name == "adam"
    for series in ("loss", "lr", "grad_norm", "param_norm", "update_norm", "layers.grad_norm",
                   "layers.update_ratio", "input.mean"):
        assert trace.has(series), series
    loss = trace.series("loss").values
    assert loss[-20:].mean() < 0.5 * loss[:5].mean()  # per-batch losses, not an epoch's running mean
    ratio = trace.layer_matrix("layers.update_ratio").values
    assert 1e-5 < float(ratio[50:].mean()) < 1e-1  # Adam at 3e-3 moves weights by about 0.1% a step
    val = [e for e in trace.evals if e.split == "val"]
    assert [e.step for e in val] == [49, 99, 149, 199] and val[-1].metrics["accuracy"] > 0.8
    assert guard_notes(trace.events) == []
    assert [e.status for e in trace.events_of("run_end")] == ["completed"]
    assert_no_cause_and_twins_checked(trace)


def test_keras_fit_whose_data_turns_nan_is_stopped_through_stop_training(tmp_path):
    history, trace = _fit(tmp_path, "nan_data", 200)
    assert history.model.stop_training
    assert NAN_ONSET <= trace.last_step <= NAN_ONSET + 5
    assert trace.events_of("nonfinite")[0].tensor == "input" and trace.events_of("nonfinite")[0].step == NAN_ONSET
    notes = guard_notes(trace.events)
    assert [e.status for e in trace.events_of("run_end")] == ["stopped"]  # by the guard
    assert len(notes) == 1 and ("nan_in_input_data" in notes[0] or "nonfinite_values" in notes[0])
    assert diagnose(trace).causes[0].id in ("nan_in_input_data", "nonfinite_values")


def test_keras_fit_at_a_learning_rate_far_too_high_is_diagnosed_and_stopped_for_it(tmp_path):
    history, trace = _fit(tmp_path, "lr_too_high", 100)
    assert diagnose(trace).causes[0].id in ("lr_too_high", "exploding_gradients")
    assert history.model.stop_training and trace.last_step <= 50  # the first check, at the first flush
    notes = guard_notes(trace.events)
    assert len(notes) == 1 and ("lr_too_high" in notes[0].split("(")[0] or "exploding_gradients" in notes[0])
