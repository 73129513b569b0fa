"""The guard stops doomed runs of a plain PyTorch loop (TrainingDoomed) and never a healthy one."""

import pytest

pytest.importorskip("torch")

from diag import Guard, TrainingDoomed, load_trace  # noqa: E402
from diag.engine.api import diagnose  # noqa: E402
from diag.guard import guard_notes  # noqa: E402
from tests.guard_runs import NAN_ONSET, assert_no_cause_and_twins_checked, fit_torch  # noqa: E402


def test_healthy_plain_loop_is_never_stopped_and_shows_no_cause(tmp_path):
    path = tmp_path / "run.jsonl"
    guard = Guard()
    assert fit_torch(path, "healthy", steps=200, guard=guard) == 200
    assert guard.checks >= 3 and not guard.stopped
    trace = load_trace(path)
    assert guard_notes(trace.events) == []
    assert_no_cause_and_twins_checked(trace)


def test_data_turning_nan_raises_training_doomed_within_a_few_steps(tmp_path, capsys):
    path = tmp_path / "run.jsonl"
    with pytest.raises(TrainingDoomed) as caught:
        fit_torch(path, "nan_data", steps=200)
    doomed = caught.value
    assert NAN_ONSET <= doomed.step <= NAN_ONSET + 5
    assert doomed.cause in ("nan_in_input_data", "nonfinite_values")
    assert doomed.verdict.certainty >= 0.8 and doomed.verdict.doom == "nonfinite"
    trace = load_trace(path)
    notes = guard_notes(trace.events)
    assert len(notes) == 1 and doomed.cause in notes[0] and f"step {doomed.step}" in notes[0]
    assert trace.last_step == doomed.step  # nothing was trained after the stop
    assert capsys.readouterr().err.count("diag guard:") == 1


def test_learning_rate_far_too_high_is_stopped_naming_the_learning_rate(tmp_path):
    path = tmp_path / "run.jsonl"
    with pytest.raises(TrainingDoomed) as caught:
        fit_torch(path, "lr_too_high", steps=100)
    assert caught.value.cause in ("lr_too_high", "exploding_gradients")
    assert caught.value.step < 20
    causes = {c.id: c.certainty for c in diagnose(load_trace(path)).causes}
    assert causes.get("lr_too_high", 0) >= 0.6


def test_a_stricter_threshold_lets_a_run_go_on_that_the_default_stops(tmp_path):
    path = tmp_path / "run.jsonl"
    guard = Guard(threshold=0.99, quiet=True)
    assert fit_torch(path, "nan_data", steps=NAN_ONSET + 10, guard=guard) == NAN_ONSET + 10
    assert not guard.stopped and guard.checks >= 10  # every non-finite step was checked


def test_guard_accepts_only_true_false_none_or_a_guard():
    assert Guard.coerce(None) is None and Guard.coerce(False) is None
    assert isinstance(Guard.coerce(True), Guard)
    with pytest.raises(TypeError, match="guard must be"):
        Guard.coerce("yes")


def test_readme_guard_example_runs_as_written_and_prints_what_it_shows(tmp_path):
    import re
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = text[text.index("### Stop doomed runs: the guard"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    shown = re.search(r"```text\n(.*?)```", section, re.S).group(1).strip().splitlines()
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines()[-1] == shown[0]
    assert out.stdout.strip().splitlines() == shown[1:]
    trace = load_trace(tmp_path / "guarded.jsonl")
    assert [e.status for e in trace.events_of("run_end")] == ["stopped"]  # by the guard, not crashed
    assert trace.events_of("exception") == []
