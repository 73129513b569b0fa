"""On a terminal diag asks which run and which unknown metric is the loss; without one (or in CI) it never asks.

The terminal is a real pseudo-terminal (``pty``): ``diag explain`` runs as a child process whose
stdin, stdout and stderr are the pty's, exactly as in a person's shell, and the test types answers.
The logs are real TensorBoard event folders written by torch's ``SummaryWriter``.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.foreign_runs import training_curves

pytest.importorskip("torch")
pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install 'diag[tensorboard]')")
pty = pytest.importorskip("pty", reason="pseudo-terminals are a POSIX feature")

ROOT = Path(__file__).resolve().parent.parent
_PATIENCE = 300  # seconds a child may take before the test gives up on it (not a timing check)


def write_runs_with_an_unknown_loss_name(root: Path) -> Path:
    """Two real runs whose script logs the loss as 'objective', a name diag does not know."""
    from torch.utils.tensorboard import SummaryWriter

    for name in ("diverging", "healthy"):
        writer = SummaryWriter(str(root / name))
        for point in training_curves(name).train:
            writer.add_scalar("objective", point["loss"], point["step"])
            writer.add_scalar("grad_norm", point["grad_norm"], point["step"])
        writer.close()
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return write_runs_with_an_unknown_loss_name(tmp_path_factory.mktemp("prompt") / "runs")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env.update(extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def on_terminal(args, answers=(), **env) -> tuple[int, str]:
    """Run ``diag ARGS`` on a pseudo-terminal; type each answer once its prompt has appeared."""
    master, slave = pty.openpty()
    child = subprocess.Popen([sys.executable, "-m", "diag", *map(str, args)], stdin=slave, stdout=slave,
                             stderr=slave, env=_env(**env), close_fds=True)
    os.close(slave)
    output, pending, seen = b"", list(answers), 0
    deadline = time.monotonic() + _PATIENCE
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed its terminal
                    break
                if not chunk:
                    break
                output += chunk
                if pending and pending[0][0].encode() in output[seen:]:
                    seen = output.rindex(pending[0][0].encode()) + 1
                    os.write(master, pending.pop(0)[1].encode() + b"\n")
            elif child.poll() is not None:
                break
        else:
            child.kill()
            pytest.fail(f"diag did not finish; it printed:\n{output.decode(errors='replace')}")
        code = child.wait(timeout=_PATIENCE)
    finally:
        os.close(master)
    return code, output.decode(errors="replace").replace("\r\n", "\n")


def test_on_a_terminal_explain_asks_which_run_and_which_metric_is_the_loss(runs):
    code, out = on_terminal(["explain", runs], [("which run?", "1"), ("which one is the training loss?", "1")])
    assert code == 0, out
    assert f"{runs} holds 2 runs:\n    1. diverging  (tensorboard)\n    2. healthy  (tensorboard)" in out
    assert "diag: run diverging (next time: --run diverging)" in out
    assert "no metric diag knows as the training loss (loss). Metrics it does not know:\n    1. objective" in out
    assert "diag: next time, skip these questions with: --map objective=loss" in out
    report = out[out.index("diag: 1 cause") if "diag: 1 cause" in out else out.index("diag: 2 causes"):]
    assert "fields in the log: grad_norm, loss" in report
    first = report.split("\n1. ", 1)[1].split()[0]
    assert first in ("lr_too_high", "exploding_gradients"), report


def test_the_flags_the_questions_print_answer_them_without_asking(runs):
    code, out = on_terminal(["explain", runs, "--run", "diverging", "--map", "objective=loss"])
    assert code == 0, out
    assert "which" not in out and "fields in the log: grad_norm, loss" in out


def test_an_unanswered_question_is_the_usual_error(runs):
    code, out = on_terminal(["explain", runs], [("which run?", "")])
    assert code == 2
    assert "holds 2 runs; pick one with --run NAME" in out


@pytest.mark.parametrize("how", ["CI", "--no-input", "not a terminal"])
def test_it_never_asks_in_ci_with_no_input_or_without_a_terminal(runs, how):
    if how == "not a terminal":
        done = subprocess.run([sys.executable, "-m", "diag", "explain", str(runs)], stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, env=_env(), timeout=_PATIENCE)
        code, out = done.returncode, done.stdout + done.stderr
    elif how == "CI":
        code, out = on_terminal(["explain", runs], CI="true")
    else:
        code, out = on_terminal(["explain", runs, "--no-input"])
    assert code == 2
    assert "holds 2 runs; pick one with --run NAME" in out and "which run?" not in out
