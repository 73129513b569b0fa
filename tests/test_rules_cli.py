"""``diag rules``: the built-in knowledge base validates and passes its tests; a user can add,
test and use a custom rule end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diag.cli import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("DIAG_RULES_PATH", raising=False)


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_builtin_knowledge_base_validates(capsys):
    code, out, _ = run(capsys, "rules", "validate")
    assert code == 0, out
    assert out.strip().splitlines()[-1].endswith(": ok")


def test_builtin_rule_tests_pass_and_end_with_the_count_line(capsys):
    code, out, _ = run(capsys, "rules", "test")
    last = out.strip().splitlines()[-1]
    assert code == 0, out
    passed, failed = last.split(", ")
    assert passed.endswith("passed") and int(passed.split()[0]) >= 30 and failed == "0 failed"


def test_every_domain_has_a_tested_rule_and_the_required_causes_exist(capsys):
    code, out, _ = run(capsys, "rules", "list")
    assert code == 0
    for cause in ("exploding_gradients", "incorrect_gradient", "nonfinite_values", "nan_in_input_data",
                  "lr_too_high", "overfitting", "train_val_overlap", "target_leakage", "fp16_overflow"):
        assert f"\n{cause} " in out
    for domain in ("gradient", "loss", "convergence", "leakage", "precision"):
        folder = REPO / "knowledge_base" / domain
        assert list(folder.glob("*.test.yaml")), domain
        assert (folder / "__init__.py").exists()


def test_custom_rule_walkthrough_new_test_explain(capsys, tmp_path):
    rules = tmp_path / "my_rules"
    code, out, _ = run(capsys, "rules", "new", "loss_stuck_high", "--dir", str(rules))
    assert code == 0 and f"wrote {rules}/loss_stuck_high.yaml" in out
    code, out, _ = run(capsys, "rules", "test", str(rules))
    assert code == 0 and out.strip().endswith("2 passed, 0 failed")
    code, out, _ = run(capsys, "rules", "validate", str(rules))
    assert code == 0 and out.strip() == "1 rules, 1 causes in 1 files: ok"
    code, out, _ = run(capsys, "explain", str(REPO / "tests/traces/lr_too_high.jsonl"), "--rules", str(rules),
                       "--format", "json")
    ids = [c["id"] for c in json.loads(out)["causes"]]
    assert "loss_stuck_high" in ids and ids[0] == "lr_too_high"


def test_a_failing_rule_test_is_reported_and_exits_1(capsys, tmp_path):
    run(capsys, "rules", "new", "loss_stuck_high", "--dir", str(tmp_path))
    test_file = tmp_path / "loss_stuck_high.test.yaml"
    test_file.write_text(test_file.read_text().replace('"ends at 1.60"', '"ends at 9.99"'))
    code, out, _ = run(capsys, "rules", "test", str(tmp_path))
    assert code == 1
    assert f"FAIL {test_file}:3: a loss that ends high is reported" in out
    assert "no evidence contains 'ends at 9.99'" in out
    assert out.strip().endswith("1 passed, 1 failed")


def test_validate_requires_a_positive_and_a_negative_test_per_rule(capsys, tmp_path):
    run(capsys, "rules", "new", "loss_stuck_high", "--dir", str(tmp_path))
    test_file = tmp_path / "loss_stuck_high.test.yaml"
    text = test_file.read_text()
    test_file.write_text(text[: text.index("  - name: a loss that falls")])
    code, out, _ = run(capsys, "rules", "validate", str(tmp_path))
    assert code == 1
    assert "rule loss_stuck_high.loss-ends-high has no negative test" in out


def test_validate_reports_a_broken_rule_at_file_line_col_and_exits_2(capsys, tmp_path):
    run(capsys, "rules", "new", "loss_stuck_high", "--dir", str(tmp_path))
    rule_file = tmp_path / "loss_stuck_high.yaml"
    rule_file.write_text(rule_file.read_text().replace("series: loss,", "series: los,"))
    code, out, _ = run(capsys, "rules", "validate", str(tmp_path))
    assert code == 2
    assert f"{rule_file}:27:24: rule loss_stuck_high.loss-ends-high: unknown series 'los' (did you mean 'loss'?)" in out


def test_show_prints_the_documentation_sections_of_a_cause(capsys):
    code, out, _ = run(capsys, "rules", "show", "fp16_overflow")
    assert code == 0
    for heading in ("What it detects", "Why it matters", "Example", "Use instead", "False positives", "Fix",
                    "References", "Rules"):
        assert f"\n{heading}\n" in out
    assert "fp16_overflow.scale-collapse  cf +0.85" in out


def test_show_of_a_symptom_lists_the_rules_that_conclude_it(capsys):
    code, out, _ = run(capsys, "rules", "show", "grad.norm-spike")
    assert code == 0 and "ratio_to_median(window=50)(grad_norm) > 10 for 2 points" in out


def test_show_of_an_unknown_id_suggests_one(capsys):
    code, _, err = run(capsys, "rules", "show", "fp16_overflw")
    assert code == 2 and "did you mean 'fp16_overflow'?" in err


def test_schema_commands_print_json_schemas(capsys):
    code, out, _ = run(capsys, "rules", "schema")
    assert code == 0 and "apiVersion" in json.loads(out)["properties"]
    code, out, _ = run(capsys, "rules", "schema", "--diagnosis")
    assert code == 0 and json.loads(out)["title"] == "diag.diagnosis/1"


def test_new_refuses_to_overwrite_and_rejects_bad_ids(capsys, tmp_path):
    assert run(capsys, "rules", "new", "ok_id", "--dir", str(tmp_path))[0] == 0
    code, _, err = run(capsys, "rules", "new", "ok_id", "--dir", str(tmp_path))
    assert code == 2 and "--force" in err
    code, _, err = run(capsys, "rules", "new", "Bad-Id", "--dir", str(tmp_path))
    assert code == 2 and "is not a cause id" in err
