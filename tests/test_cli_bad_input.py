"""The real ``diag`` command on bad input: exit 2, a message that names the file and the problem,
never a Python traceback. Each case runs the installed command in a subprocess, as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

TRACES = Path(__file__).parent / "traces"


def diag(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "diag", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=300, encoding="utf-8", errors="replace")
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    return result


def lines_of(name: str) -> list[str]:
    return (TRACES / f"{name}.jsonl").read_text().splitlines()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bad_inputs")
    healthy, diverging = lines_of("healthy"), lines_of("lr_too_high")
    (folder / "header_only.jsonl").write_text(healthy[0] + "\n")
    (folder / "package.json").write_text(json.dumps({"name": "app", "version": "1.0.0", "private": True}, indent=2))
    (folder / "headerless.jsonl").write_text("\n".join(healthy[1:40]) + "\n")
    (folder / "two_runs.jsonl").write_text("\n".join(healthy[:9] + diverging[:6]) + "\n")
    (folder / "deep.jsonl").write_text("\n".join(healthy[:20] + ['{"kind":"step","step":99,"metrics":'
                                                                 + "[" * 50_000 + "]" * 50_000 + "}"]) + "\n")
    (folder / "surrogate.jsonl").write_text("\n".join(
        [healthy[0].replace('"run_id":"healthy"', '"run_id":"bad\\ud800id"')] + healthy[1:20]) + "\n")
    (folder / "huge_step.jsonl").write_text("\n".join(healthy[:20] + ['{"kind":"eval","step":' + "9" * 40
                                                                      + ',"split":"val","loss":1.0}']) + "\n")
    (folder / "syntax_error.py").write_text("def target(:\n")
    (folder / "import_error.py").write_text("import no_such_module_anywhere\n\ndef target():\n    pass\n")
    (folder / "not_a_function.py").write_text("target = 3\n")
    (folder / "raises.py").write_text("def target():\n    raise RuntimeError('no data here')\n")
    bomb = folder / "bomb"
    bomb.mkdir()
    (bomb / "r.yaml").write_text('a: &a ["x", "x"]\nb: &b [*a, *a]\napiVersion: diag/v1\n')
    return folder


def test_a_file_holding_only_a_header_exits_2_saying_there_is_nothing_to_diagnose(inputs):
    for command in ("explain", "summary"):
        result = diag(command, "header_only.jsonl", cwd=inputs)
        assert result.returncode == 2
        assert "holds a header but no step" in result.stderr and '{"kind":"step","step":0' in result.stderr


def test_a_foreign_json_file_exits_2_saying_what_a_trace_looks_like(inputs):
    result = diag("explain", "package.json", cwd=inputs)
    assert result.returncode == 2
    assert "package.json" in result.stderr and "no valid trace records" in result.stderr
    assert "a trace is one JSON object per line, a header first" in result.stderr


def test_a_headerless_trace_warns_and_names_the_rules_it_could_not_check(inputs):
    result = diag("explain", "headerless.jsonl", cwd=inputs)
    assert result.returncode == 0
    assert "has no header record" in result.stderr and "lr_too_high.large-lr" in result.stderr


def test_a_file_with_two_runs_explains_the_last_and_says_so(inputs):
    result = diag("explain", "two_runs.jsonl", "--format", "json", cwd=inputs)
    assert result.returncode == 0 and "the file holds 2 runs (starting at lines 1, 10)" in result.stderr
    assert json.loads(result.stdout)["trace"]["run_id"] == "lr_too_high"
    first = diag("summary", "two_runs.jsonl", "--run", "1", "--format", "json", cwd=inputs)
    summary = json.loads(first.stdout)
    assert (summary["run_id"], summary["run"], summary["runs"], summary["steps_recorded"]) == ("healthy", 1, 2, 8)
    wrong = diag("summary", "two_runs.jsonl", "--run", "3", cwd=inputs)
    assert wrong.returncode == 2 and "--run 3: the file holds 2 runs" in wrong.stderr


@pytest.mark.parametrize("name, message", [
    ("deep.jsonl", "nests too deeply"),
    ("huge_step.jsonl", "step: Unable to parse input string as an integer"),
])
def test_a_damaged_line_is_skipped_with_its_reason_and_the_rest_is_read(inputs, name, message):
    result = diag("summary", name, cwd=inputs)
    assert result.returncode == 2  # bad records were skipped: the input was not clean
    assert f"{name}:21" in result.stderr and message in result.stderr
    assert "steps      19 recorded" in result.stdout


def test_a_lone_surrogate_does_not_break_json_output(inputs):
    result = diag("summary", "surrogate.jsonl", "--format", "json", cwd=inputs)
    assert result.returncode == 0 and json.loads(result.stdout)["run_id"] == "bad\ufffdid"


@pytest.mark.parametrize("target, message", [
    ("syntax_error.py:target", "syntax_error.py:1: error: syntax error, line 1: invalid syntax"),
    ("import_error.py:target", "import_error.py:1: error: importing it failed: no module named 'no_such_module_anywhere'"),
    ("not_a_function.py:target", "not_a_function.py:target: error: 'target' is not callable"),
    ("not_a_function.py:missing", "not_a_function.py: error: has no attribute 'missing'"),
    ("raises.py:target", "raises.py: error: target() raised RuntimeError: no data here"),
    ("no_such_file.py:target", "no_such_file.py: error: no such file"),
])
def test_gradcheck_with_a_bad_target_exits_2_with_one_line_naming_the_file(inputs, target, message):
    result = diag("gradcheck", target, cwd=inputs)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == f"diag gradcheck: {message}"


def test_a_hostile_rule_folder_exits_2_with_file_line_col(inputs):
    result = diag("explain", str(TRACES / "healthy.jsonl"), "--rules", "bomb", cwd=inputs)
    assert result.returncode == 2 and "r.yaml:2:8: YAML alias *a is not allowed" in result.stderr
