"""``diag explain`` on the shared traces of real runs: ranked causes, formats, --why, exit codes.

The text output is snapshot-tested: a change of wording is a visible diff in
tests/snapshots/explain/. Regenerate with ``DIAG_UPDATE_SNAPSHOTS=1 pytest tests/test_explain.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from diag.cli import main
from diag.engine.diagnosis import Diagnosis, diagnosis_json_schema

REPO = Path(__file__).resolve().parent.parent
TRACES = sorted(p.stem for p in (REPO / "tests" / "traces").glob("*.jsonl"))
SNAPSHOTS = REPO / "tests" / "snapshots" / "explain"

EXPECTED_TOP = {
    "healthy": None,
    "lr_too_high": "lr_too_high",
    "nan_in_input": "nan_in_input_data",
    "overfitting": "overfitting",
    "leakage": "train_val_overlap",
    "fp16_overflow": "fp16_overflow",
    "bad_gradient": "incorrect_gradient",
}


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("DIAG_RULES_PATH", raising=False)


def explain(capsys, *args) -> tuple[int, str, str]:
    code = main(["explain", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_every_shared_trace_has_an_expected_answer():
    assert set(TRACES) == set(EXPECTED_TOP)


@pytest.mark.parametrize("name", TRACES)
def test_json_output_names_the_planted_fault_first(capsys, name):
    code, out, _ = explain(capsys, f"tests/traces/{name}.jsonl", "--format", "json")
    assert code == 0
    d = Diagnosis.model_validate_json(out)
    assert d.trace.steps > 0 and len(d.checks_run) > 10  # "no cause" for the healthy run means checked
    assert (d.top.id if d.top else None) == EXPECTED_TOP[name]
    if d.top:
        assert d.top.evidence and d.top.fix and d.top.bucket == "likely"


@pytest.mark.parametrize("name", TRACES)
def test_text_output_matches_its_snapshot(capsys, name):
    code, out, _ = explain(capsys, f"tests/traces/{name}.jsonl")
    assert code == 0
    snapshot = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("DIAG_UPDATE_SNAPSHOTS"):
        snapshot.parent.mkdir(parents=True, exist_ok=True)
        snapshot.write_text(out)
    assert out == snapshot.read_text()


def test_healthy_run_says_nothing_was_found_and_what_was_checked(capsys):
    _, out, _ = explain(capsys, "tests/traces/healthy.jsonl")
    assert out.startswith("diag: no cause found in healthy (300 steps, 4 layers)")
    assert "Checked 28 causes" in out and "Not checked (2, inputs missing): incorrect_gradient, unshuffled_data." in out


def test_markdown_output_has_a_section_per_cause_with_fix(capsys):
    code, out, _ = explain(capsys, "tests/traces/lr_too_high.jsonl", "--format", "markdown")
    assert code == 0
    assert "## 1. `lr_too_high`: The learning rate is too high; steps overshoot" in out
    assert "**Fix**" in out and "- Lower the learning rate by 3-10x" in out
    assert "## Also consistent" in out


def _validate(instance, schema):
    import jsonschema  # in the test extra: the committed JSON Schema itself is the contract

    jsonschema.validate(instance, schema)


def test_json_output_has_the_documented_fields(capsys):
    _, out, _ = explain(capsys, "tests/traces/nan_in_input.jsonl", "--format", "json")
    data = json.loads(out)
    _validate(data, diagnosis_json_schema())
    assert data["schema"] == "diag.diagnosis/1"
    assert data["trace"]["path"] == "tests/traces/nan_in_input.jsonl" and data["trace"]["steps"] == 200
    top = data["causes"][0]
    assert {"id", "rank", "certainty", "title", "severity", "first_step", "evidence", "fix"} <= set(top)
    assert (top["id"], top["rank"], top["first_step"]) == ("nan_in_input_data", 1, 150)
    assert data["suppressed"][0]["suppressed_by"] == "nan_in_input_data"
    assert "ruled_out" in data and data["symptoms"]


def test_why_prints_the_justification_tree_down_to_the_series(capsys):
    code, out, _ = explain(capsys, "tests/traces/fp16_overflow.jsonl", "--why", "fp16_overflow")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("fp16_overflow  certainty 0.85 (likely)  rank 1")
    assert any("fp16_overflow.scale-collapse" in line for line in lines)
    assert any('✓ context precision == "fp16"' in line and "precision=fp16" in line for line in lines)
    assert any("ratio_to_running_max(loss_scale) <= 0.000976562" in line for line in lines)


def test_why_for_a_cause_that_did_not_fire_shows_the_closest_miss(capsys):
    code, out, _ = explain(capsys, "tests/traces/nan_in_input.jsonl", "--why", "fp16_overflow")
    assert code == 0
    assert out.startswith("fp16_overflow was not concluded from nan_in_input (200 steps, 4 layers).")
    assert "Closest miss: rule fp16_overflow.backoff-nonfinite held 1 of 3 conditions:" in out
    assert '✗ context precision == "fp16"' in out and "precision=fp32" in out
    assert "Symptom amp.loss-scale-backoff could not be checked: the trace lacks loss_scale." in out


def test_why_for_a_cause_whose_inputs_are_missing_says_what_is_missing(capsys):
    _, out, _ = explain(capsys, "tests/traces/healthy.jsonl", "--why", "incorrect_gradient")
    assert "was skipped: the trace lacks check records" in out


def test_fail_on_exits_1_only_when_a_cause_at_that_severity_is_found(capsys):
    assert explain(capsys, "tests/traces/lr_too_high.jsonl", "--fail-on", "high")[0] == 1
    assert explain(capsys, "tests/traces/lr_too_high.jsonl", "--fail-on", "critical")[0] == 0
    assert explain(capsys, "tests/traces/healthy.jsonl", "--fail-on", "info")[0] == 0


def test_missing_trace_is_bad_input_without_traceback(capsys):
    code, out, err = explain(capsys, "tests/traces/nope.jsonl")
    assert code == 2 and "nope.jsonl" in err and "Traceback" not in err


def test_unknown_why_cause_suggests_the_closest_id(capsys):
    code, _, err = explain(capsys, "tests/traces/healthy.jsonl", "--why", "lr_to_high")
    assert code == 2 and "did you mean 'lr_too_high'?" in err


def test_a_broken_user_rule_stops_explain_unless_keep_going(capsys, tmp_path):
    (tmp_path / "bad.yaml").write_text("apiVersion: diag/v1\nrules:\n  - id: my.rule\n    type: cause\n"
                                       "    emits: lr_too_high\n    when: {signal: {series: lsos}}\n"
                                       "    cf: 0.5\n    evidence: e\n")
    code, _, err = explain(capsys, "tests/traces/healthy.jsonl", "--rules", str(tmp_path))
    assert code == 2
    assert f"{tmp_path}/bad.yaml:6:29: rule my.rule: unknown series 'lsos' (did you mean 'loss'?)" in err
    code, out, err = explain(capsys, "tests/traces/healthy.jsonl", "--rules", str(tmp_path), "--keep-going")
    assert code == 0 and "warning:" in err and out.startswith("diag: no cause found")
