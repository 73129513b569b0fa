"""``diag preflight TARGET``: the README's examples caught (exit 1) and their healthy twins clean (exit 0);
a target that cannot be loaded is one clear line and exit 2, never a traceback."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from diag.cli import main
from diag.trace import load_trace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CAUGHT = [("detached_head", "disconnected_parameters"), ("wrong_loss", "loss_output_mismatch"),
          ("lr_too_high", "lr_too_high"), ("seedless_data", "nondeterminism")]


@pytest.mark.parametrize("framework", ["torch", "flax"])
@pytest.mark.parametrize("target,cause", CAUGHT)
def test_each_example_fault_is_caught_first_and_exits_1(framework, target, cause, capsys):
    if framework == "torch":
        pytest.importorskip("torch")
    code = main(["preflight", f"{EXAMPLES}/preflight_{framework}.py:{target}", "--format", "json"])
    diagnosis = json.loads(capsys.readouterr().out)
    assert code == 1
    assert diagnosis["causes"][0]["id"] == cause
    assert diagnosis["causes"][0]["bucket"] == "likely"


@pytest.mark.parametrize("framework", ["torch", "flax"])
def test_the_healthy_twin_exits_0_and_names_every_probe(framework, capsys):
    if framework == "torch":
        pytest.importorskip("torch")
    code = main(["preflight", f"{EXAMPLES}/preflight_{framework}.py:healthy"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.startswith("diag: no cause found in preflight of")
    for probe in ("data", "output_loss", "init_loss", "gradient_flow", "overfit_one_batch", "lr_range", "seed_repeat"):
        assert f"  {probe} " in out
    assert "the model and optimizer given were not changed" in out


def test_the_readme_command_runs_as_written_under_the_default_budget():
    # The seconds spent are the machine's business, not a behaviour (a loaded machine overshoots by
    # a step); that a probe stops at its budget and says so is test_preflight's tiny-budget test.
    pytest.importorskip("torch")
    out = subprocess.run([sys.executable, "-m", "diag", "preflight", "examples/preflight_torch.py:lr_too_high"],
                         cwd=EXAMPLES.parent, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr
    assert "1. lr_too_high  likely" in out.stdout
    budget = re.search(r"^Probes \([\d.]+s of a ([\d.]+)s budget", out.stdout, re.M).group(1)
    assert float(budget) == 60


def test_markdown_and_only(capsys):
    pytest.importorskip("torch")
    code = main(["preflight", f"{EXAMPLES}/preflight_torch.py:lr_too_high", "--only", "lr_range", "-f", "markdown"])
    out = capsys.readouterr().out
    assert code == 1
    assert out.startswith("# 1 cause (1 likely)")
    assert "| `lr_range` | findings |" in out
    assert "`seed_repeat`" not in out


def test_findings_are_written_as_check_records(tmp_path, capsys):
    pytest.importorskip("torch")
    path = tmp_path / "preflight.jsonl"
    assert main(["preflight", f"{EXAMPLES}/preflight_torch.py:detached_head", "--only", "gradient_flow,init_loss",
                 "--trace", str(path)]) == 1
    assert f"check records written to {path}" in capsys.readouterr().out
    trace = load_trace(path)
    by_name = {(c.name, c.target, c.passed) for c in trace.checks}
    assert ("preflight.gradient_flow", "disconnected_parameters", False) in by_name
    assert ("preflight.init_loss", "init_loss", True) in by_name
    assert not [p for p in trace.problems if p.severity == "error"]


BAD_TARGETS = {
    "missing_file": ("nowhere/setup.py:healthy", "nowhere/setup.py: error: no such file"),
    "missing_function": ("{examples}/preflight_torch.py:nope", "has no attribute 'nope'"),
    "no_colon": ("{examples}/preflight_torch.py", "missing ':function'"),
    "missing_module": ("no_such_module_xyz:setup", "cannot import module 'no_such_module_xyz'"),
}


@pytest.mark.parametrize("case", sorted(BAD_TARGETS))
def test_a_target_that_cannot_be_loaded_exits_2_with_one_clear_line(case, capsys):
    spec, message = BAD_TARGETS[case]
    code = main(["preflight", spec.format(examples=EXAMPLES)])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err


USER_FILES = {
    "syntax_error": ("def setup(:\n    return {}\n", "broken.py:1: error: syntax error"),
    "import_error": ("import not_a_real_package_qq\n\ndef setup():\n    return {}\n",
                     "broken.py:1: error: importing it failed: no module named 'not_a_real_package_qq'"),
    "raises_on_import": ("x = 1\nraise RuntimeError('config missing')\n",
                         "broken.py:2: error: importing it raised RuntimeError: config missing"),
    "raises_when_called": ("def setup():\n    return {}['model']\n",
                           "broken.py:2: error: calling setup() raised KeyError: 'model'"),
    "returns_a_tuple": ("def setup():\n    return (1, 2)\n", "setup() returned tuple, expected a dict"),
    "dict_missing_keys": ("def setup():\n    return {'model': 1, 'loss': 2}\n",
                          "returned a dict with missing loss_fn, optimizer, train_batches; unexpected loss"),
    "wrong_model_type": ("def setup():\n    return {'model': 1, 'loss_fn': 2, 'optimizer': 3, 'train_batches': [4]}\n",
                         "preflight needs a torch.nn.Module or a flax.nnx.Module; got int"),
}


@pytest.mark.parametrize("case", sorted(USER_FILES))
def test_a_broken_target_file_exits_2_naming_the_line(case, tmp_path, capsys):
    source, message = USER_FILES[case]
    path = tmp_path / "broken.py"
    path.write_text(source)
    code = main(["preflight", f"{path}:setup"])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err, err
    assert "Traceback" not in err
    assert err.count("\n") <= 2  # the error and its hint


def test_an_unknown_probe_and_a_bad_budget_exit_2(capsys):
    assert main(["preflight", f"{EXAMPLES}/preflight_torch.py:healthy", "--only", "lr_rnage"]) == 2
    assert "unknown probe 'lr_rnage'" in capsys.readouterr().err
    assert main(["preflight", f"{EXAMPLES}/preflight_torch.py:healthy", "--budget", "0"]) == 2
    assert "--budget must be a positive number" in capsys.readouterr().err


def test_the_cli_lists_the_probes_the_api_runs_in_its_order():
    from diag.cli.preflight_cmd import PROBE_NAMES
    from diag.preflight import PROBES

    assert PROBE_NAMES == tuple(PROBES)


def test_the_readme_commands_exit_and_rank_as_the_readme_says(capsys, monkeypatch):
    """Every `$ diag preflight` line of the README's section, run as written from the repository root."""
    pytest.importorskip("torch")
    readme = (EXAMPLES.parent / "README.md").read_text()
    block = re.search(r"### Before the long run: `diag preflight`.*?```console\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(EXAMPLES.parent)
    commands = [line[2:] for line in block.splitlines() if line.startswith("$ diag preflight")]
    assert len(commands) == 5
    for command in commands:
        args, _, comment = command.partition("#")
        code = main(args.split()[1:] + ["--format", "json"])
        causes = [c["id"] for c in json.loads(capsys.readouterr().out)["causes"]]
        if comment:  # "# exit 1: lr_too_high" / "# exit 0: no cause found"
            expected_code, _, what = comment.strip().removeprefix("exit ").partition(": ")
            assert code == int(expected_code), command
            assert causes[:1] == ([] if expected_code == "0" else [what]), command
        else:  # the command whose output the README shows
            assert code == 1 and causes[0] == "lr_too_high"
