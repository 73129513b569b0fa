"""The README's foreign-log commands, run as written on the logs in examples/foreign/, print what it shows."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install 'diag[tensorboard]')")


def readme_commands() -> list[tuple[str, list[str]]]:
    text = README.read_text()
    block = re.search(r"### Explain a run you did not record with diag.*?```console\n(.*?)```", text, re.S).group(1)
    commands: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ diag "):
            commands.append((line[2:].split("  #")[0].strip(), []))
        elif commands and line.strip() and line.strip() != "...":
            commands[-1][1].append(line.rstrip())
    return commands


def test_the_readme_shows_every_source():
    sources = " ".join(command for command, _ in readme_commands())
    for folder in ("tensorboard", "lightning_logs", "hf_output", "mlruns", "wandb_"):
        assert f"examples/foreign/{folder}" in sources


@pytest.mark.parametrize("command, expected", readme_commands(), ids=lambda x: x if isinstance(x, str) else "")
def test_readme_foreign_log_command_prints_what_it_shows(command, expected, tmp_path):
    args = command.split()[1:]
    args = [str(tmp_path / a) if a.endswith(".jsonl") else a for a in args]
    out = subprocess.run([sys.executable, "-m", "diag", *args], cwd=REPO, capture_output=True, text=True,
                         timeout=600)
    printed = (out.stdout + out.stderr).splitlines()
    assert expected, f"the README shows no output for `{command}`: there is nothing to compare"
    wants_error = any(": error: " in line for line in expected)
    assert out.returncode == (2 if wants_error else 0), (command, out.stderr)
    position = 0
    for line in expected:  # in the order shown
        line = line.replace("diverging.jsonl", str(tmp_path / "diverging.jsonl"))
        assert line in printed[position:], (command, line, printed)
        position = printed.index(line, position) + 1
