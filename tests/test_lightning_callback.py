"""diag.adapters.lightning.DiagCallback records a real Lightning fit and stops doomed ones."""

import warnings

import pytest

pytest.importorskip("lightning", reason="needs the lightning extra: pip install 'diag[lightning]'")

from diag import load_trace  # noqa: E402
from diag.engine.api import diagnose  # noqa: E402
from diag.guard import guard_notes  # noqa: E402
from tests.guard_runs import NAN_ONSET, assert_no_cause_and_twins_checked, fit_lightning  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


def _fit(tmp_path, fault, steps):
    path = tmp_path / "run.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = fit_lightning(path, fault, steps=steps)
    return trainer, load_trace(path)


def test_healthy_lightning_fit_records_the_bridge_trace_and_is_never_stopped(tmp_path):
    trainer, trace = _fit(tmp_path, "healthy", 200)
    assert trainer.global_step == 200 and not trainer.should_stop
    assert trace.num_steps == 200 and trace.header.framework == "torch"
    assert trace.layer_names == ("net.0", "net.2", "net.4")
    assert trace.header.optimizer.name.lower() == "adam" and trace.header.batch_size == 32
    for series in ("loss", "lr", "grad_norm", "param_norm", "update_norm", "layers.update_ratio"):
        assert trace.has(series), series
    # Gradients measured after Lightning's closure ran backward: the first step's are not zero.
    assert trace.series("grad_norm").values[0] > 0
    val = [e for e in trace.evals if e.split == "val"]
    assert [e.step for e in val] == [49, 99, 149, 199]
    assert val[-1].metrics["accuracy"] > 0.8 and val[-1].loss < val[0].loss
    assert guard_notes(trace.events) == []
    assert [e.status for e in trace.events_of("run_end")] == ["completed"]
    assert_no_cause_and_twins_checked(trace)


def test_lightning_fit_whose_data_turns_nan_is_stopped_through_should_stop(tmp_path):
    trainer, trace = _fit(tmp_path, "nan_data", 200)
    assert trainer.should_stop
    assert NAN_ONSET <= trace.last_step <= NAN_ONSET + 5
    notes = guard_notes(trace.events)
    assert [e.status for e in trace.events_of("run_end")] == ["stopped"]  # by the guard
    assert len(notes) == 1 and ("nan_in_input_data" in notes[0] or "nonfinite_values" in notes[0])
    assert diagnose(trace).causes[0].id in ("nan_in_input_data", "nonfinite_values")


def test_lightning_fit_at_a_learning_rate_far_too_high_is_stopped_for_the_learning_rate(tmp_path):
    trainer, trace = _fit(tmp_path, "lr_too_high", 100)
    assert trainer.should_stop and trace.last_step < 20
    notes = guard_notes(trace.events)
    assert len(notes) == 1 and ("lr_too_high" in notes[0].split("(")[0] or "exploding_gradients" in notes[0])
    assert {c.id for c in diagnose(trace).causes} & {"lr_too_high", "exploding_gradients"}
