"""diag.adapters.huggingface.DiagCallback records a real Trainer run and stops doomed ones."""

import pytest

pytest.importorskip("transformers", reason="needs the huggingface extra: pip install 'diag[huggingface]'")
pytest.importorskip("accelerate", reason="needs the huggingface extra: pip install 'diag[huggingface]'")

from diag import load_trace  # noqa: E402
from diag.engine.api import diagnose  # noqa: E402
from diag.guard import guard_notes  # noqa: E402
from tests.guard_runs import NAN_ONSET, assert_no_cause_and_twins_checked, fit_huggingface  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")


def _fit(tmp_path, fault, steps):
    path = tmp_path / "run.jsonl"
    trainer = fit_huggingface(path, fault, steps=steps, out_dir=str(tmp_path / "out"))
    return trainer, load_trace(path)


def test_healthy_trainer_run_records_the_bridge_trace_and_is_never_stopped(tmp_path):
    trainer, trace = _fit(tmp_path, "healthy", 200)
    assert trainer.state.global_step == 200
    assert trace.num_steps == 200 and trace.header.framework == "torch"
    assert trace.layer_names == ("net.0", "net.2", "net.4")
    assert trace.header.optimizer.name == "adamw" and trace.header.batch_size == 32 and trace.header.seed == 0
    for series in ("loss", "lr", "grad_norm", "param_norm", "layers.update_ratio", "input.mean"):
        assert trace.has(series), series
    loss = trace.series("loss").values
    assert loss[-20:].mean() < 0.5 * loss[:5].mean()  # the loss read from the model's output
    val = [e for e in trace.evals if e.split == "val"]
    assert [e.step for e in val] == [49, 99, 149, 199] and val[-1].metrics["accuracy"] > 0.8
    assert guard_notes(trace.events) == []
    assert [e.status for e in trace.events_of("run_end")] == ["completed"]
    assert_no_cause_and_twins_checked(trace)


def test_trainer_run_whose_data_turns_nan_is_stopped_through_should_training_stop(tmp_path):
    trainer, trace = _fit(tmp_path, "nan_data", 200)
    assert NAN_ONSET <= trainer.state.global_step - 1 <= NAN_ONSET + 5
    assert trace.last_step == trainer.state.global_step - 1
    notes = guard_notes(trace.events)
    assert [e.status for e in trace.events_of("run_end")] == ["stopped"]  # by the guard
    assert len(notes) == 1 and ("nan_in_input_data" in notes[0] or "nonfinite_values" in notes[0])
    assert diagnose(trace).causes[0].id in ("nan_in_input_data", "nonfinite_values")


def test_trainer_run_at_a_learning_rate_far_too_high_is_stopped_for_the_learning_rate(tmp_path):
    trainer, trace = _fit(tmp_path, "lr_too_high", 100)
    assert trainer.state.global_step < 20
    notes = guard_notes(trace.events)
    assert len(notes) == 1 and ("lr_too_high" in notes[0].split("(")[0] or "exploding_gradients" in notes[0])
    assert {c.id for c in diagnose(trace).causes} & {"lr_too_high", "exploding_gradients"}
