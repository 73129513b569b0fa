"""``diag gradcheck TARGET``: the example target, bad targets, torch auto-detection, check traces."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from diag.cli import main
from diag.trace import load_trace

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = str(REPO / "examples" / "gradcheck_target.py")


def test_example_with_planted_bug_fails_naming_the_layer_and_writes_a_valid_trace(tmp_path, capsys):
    out = tmp_path / "checks.jsonl"
    code = main(["gradcheck", f"{EXAMPLE}:target_with_bug", "--trace", str(out)])
    text = capsys.readouterr().out
    assert code == 1
    assert "FAIL gradient   dense2/w" in text and "worst elements (0, 0)" in text
    assert "custom VJP of dense_tanh disagrees" in text
    trace = load_trace(out)
    assert not trace.problems
    failed = [(c.name, c.target) for c in trace.checks if not c.passed]
    assert failed == [("gradient", "dense2"), ("custom_vjp", "dense2")]
    assert {layer.name for layer in trace.header.layers} == {"dense1", "dense2"}


def test_correct_example_passes_with_exit_code_zero(capsys):
    assert main(["gradcheck", f"{EXAMPLE}:target"]) == 0
    assert "all gradients agree" in capsys.readouterr().out


def test_checks_appended_to_an_existing_trace_add_no_second_header(tmp_path, capsys):
    out = tmp_path / "run.jsonl"
    out.write_text(json.dumps({"kind": "header", "schema": "diag.trace/1", "run_id": "r", "framework": "jax"}) + "\n")
    main(["gradcheck", f"{EXAMPLE}:target", "--trace", str(out), "--no-custom-vjp"])
    kinds = [json.loads(line)["kind"] for line in out.read_text().splitlines()]
    assert kinds == ["header"] + ["check"] * 4


@pytest.mark.parametrize(
    "target, message",
    [
        ("examples/gradcheck_target.py", "missing ':function'"),
        ("no/such/file.py:f", "no such file"),
        (f"{EXAMPLE}:nope", "has no attribute 'nope'"),
        ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
        (f"{EXAMPLE}:dense_tanh", "calling dense_tanh() failed"),
    ],
)
def test_bad_target_exits_2_with_a_message_and_the_contract(target, message, capsys):
    assert main(["gradcheck", target]) == 2
    err = capsys.readouterr().err
    assert message in err and "returns (fn, args)" in err and "Traceback" not in err


def test_target_returning_the_wrong_thing_is_explained(tmp_path, capsys):
    path = tmp_path / "t.py"
    path.write_text("def target():\n    return 42\n")
    assert main(["gradcheck", f"{path}:target"]) == 2
    assert "target() returned int, expected (fn, args)" in capsys.readouterr().err


def test_torch_target_is_detected_and_checked(tmp_path, capsys):
    path = tmp_path / "torch_target.py"
    path.write_text(textwrap.dedent("""
        import torch

        def target():
            torch.manual_seed(0)
            model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
            loss = lambda m, x: m(x).pow(2).mean()
            return loss, (model, torch.randn(10, 4))
    """))
    assert main(["gradcheck", f"{path}:target", "--directions", "8"]) == 0
    text = capsys.readouterr().out
    assert "(torch)" in text and "0/weight" in text


def test_cli_and_package_import_no_framework():
    code = (
        "import sys, diag, diag.gradcheck, diag.gradcheck.records, diag.cli.gradcheck_cmd;"
        "print(sorted(m for m in ('jax', 'torch', 'flax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_failing_check_appended_to_a_training_trace_makes_explain_rank_incorrect_gradient_first(tmp_path, capsys):
    import jax

    from diag.gradcheck.target import load_target
    from diag.trace import Header, Step, write_trace

    # A short real training run with the buggy custom VJP, recorded step by step.
    loss, (params, x, y) = load_target(f"{EXAMPLE}:target_with_bug")[:2]
    value_and_grad = jax.jit(jax.value_and_grad(loss))
    records = [Header(run_id="buggy-vjp", framework="jax")]
    for step in range(20):
        value, grads = value_and_grad(params, x, y)
        params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
        records.append(Step(step=step, loss=float(value), lr=0.1))
    run = write_trace(tmp_path / "run.jsonl", records)

    assert main(["gradcheck", f"{EXAMPLE}:target_with_bug", "--trace", str(run)]) == 1
    capsys.readouterr()
    main(["explain", str(run), "--format", "json"])
    diagnosis = json.loads(capsys.readouterr().out)
    first = diagnosis["causes"][0]
    assert first["id"] == "incorrect_gradient" and first["layers"] == ["dense2"]
