"""`diag summary` as a user runs it: real processes, real exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.numpy_training import train_softmax_regression


def diag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diag", *args], capture_output=True, text=True, timeout=120)


def test_summary_of_a_healthy_run_names_run_steps_and_evals(real_trace):
    out = diag("summary", str(real_trace))
    assert out.returncode == 0, out.stderr
    assert "numpy-softmax-0" in out.stdout
    assert "60 recorded, steps 0..59" in out.stdout
    assert "nonfinite  none" in out.stdout
    assert "val: loss" in out.stdout and "accuracy" in out.stdout
    assert "run completed after 60 steps" in out.stdout
    assert out.stderr == ""


def test_summary_locates_the_first_nonfinite_value(tmp_path):
    path = train_softmax_regression(tmp_path / "nan.jsonl", steps=40, nan_at=25)
    out = diag("summary", str(path), "--format", "json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["schema"] == "diag.summary/1"
    assert summary["first_nonfinite"]["step"] == 25
    assert summary["first_nonfinite"]["series"] == "input.nonfinite"


def test_summary_of_a_crashed_run_shows_the_exception_and_where(tmp_path):
    import traceback

    from diag.trace import ExceptionEvent, TraceWriter

    path = tmp_path / "crash.jsonl"
    try:
        train_softmax_regression(path, steps=40, crash_at=12)
    except RuntimeError as e:  # what the adapters' crash handlers append for the user
        with TraceWriter(path) as writer:
            writer.write(ExceptionEvent(type=type(e).__name__, message=str(e), step=12, last_good_step=11,
                                        traceback="".join(traceback.format_exception(e))))
    out = diag("summary", str(path))
    assert out.returncode == 0, out.stderr
    assert "12 recorded" in out.stdout
    assert "RuntimeError: planted crash at step 12 (last good step 11) at numpy_training.py:" in out.stdout


@pytest.mark.parametrize("content, expected", [
    (None, "no such file or folder"),
    (b"", "the trace is empty"),
    (b"\x89PNG\r\n\x1a\n", "no valid trace records"),
    (b'{"kind": "header", "schema": "diag.trace/9", "run_id": "r", "framework": "x"}\n',
     ":1: error: schema: trace format 'diag.trace/9' is not supported"),
    (b'{"kind": "step", "step": "three"}\n', ":1: error: no valid trace records (first problem: step: Input should be"),
])
def test_unusable_input_exits_2_with_one_clear_line(tmp_path, content, expected):
    path = tmp_path / "run.jsonl"
    if content is not None:
        path.write_bytes(content)
    out = diag("summary", str(path))
    assert out.returncode == 2
    assert expected in out.stderr
    assert "Traceback" not in out.stderr and out.stdout == ""


def test_bad_records_are_reported_the_rest_summarized_and_exit_is_2(real_trace, tmp_path):
    lines = real_trace.read_bytes().splitlines(keepends=True)
    lines[5] = lines[5].replace(b'"loss":', b'"loss_value":')
    path = tmp_path / "run.jsonl"
    path.write_bytes(b"".join(lines))
    out = diag("summary", str(path))
    assert out.returncode == 2
    assert f"{path}:6: error: loss_value: unknown field" in out.stderr
    assert "1 bad record(s) skipped" in out.stderr
    assert "59 recorded" in out.stdout  # everything else was read


def test_a_torn_last_line_warns_and_exits_0(real_trace, tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_bytes(real_trace.read_bytes()[:-25])
    out = diag("summary", str(path))
    assert out.returncode == 0
    assert "warning: last line is incomplete" in out.stderr


def test_core_import_loads_no_jax_torch_or_textual():
    code = ("import sys, diag, diag.trace, diag.summary, diag.cli; diag.cli.build_parser(); "
            "print(sorted(m for m in ('jax', 'flax', 'torch', 'textual', 'optax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
