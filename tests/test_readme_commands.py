"""Every shell example in the README runs as written, in order, as a new user would run it.

The README's set-up block (the two commands that create the virtual environment and run these
tests) is what CI itself runs, so it is the one block not re-run here. Every other ``console``
block is executed line by line: a line starting with ``$ `` is a command, the lines after it are
its output as shown. They run in order, in one fresh copy of the checkout (the README's paths,
such as ``examples/healthy.jsonl``, are relative to it), with the virtual environment's ``bin``
first on PATH, as after ``source .venv/bin/activate``.

A command passes when it exits 0, or with the status its trailing ``# exit N`` comment
announces (``diag explain --fail-on`` and ``diag sweep`` exit 1 on findings by design), and no
Python traceback reaches the terminal. Commands that need a terminal (``diag tui``) are shown in
``text`` blocks instead and covered by the tmux smoke test.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
EXIT_COMMENT = re.compile(r"#\s*exit\s+(\d+)\b")


def shell_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command) of every ``$ `` line of every console block, in README order."""
    commands = []
    for match in FENCE.finditer(text):
        language, body = match.group(1), match.group(2)
        if language != "console":
            continue
        first_line = text.count("\n", 0, match.start()) + 2
        for offset, line in enumerate(body.splitlines()):
            if line.startswith("$ "):
                commands.append((first_line + offset, line[2:]))
    return commands


def test_readme_has_the_two_setup_commands_and_the_activation_step():
    text = README.read_text()
    setup = next(m.group(2) for m in FENCE.finditer(text) if m.group(1) == "bash")
    lines = [line for line in setup.splitlines() if line.strip() and not line.startswith("#")]
    assert len(lines) == 2, f"the set-up is two commands, the README shows {len(lines)}"
    assert "pytest" in lines[1], "the second set-up command runs the tests"
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest -q" in ci and "-m pytest -q" in lines[1]
    assert "source .venv/bin/activate" in text and "python -m diag" in text


def test_every_console_command_in_the_readme_runs_as_written(tmp_path):
    commands = shell_commands(README.read_text())
    assert len(commands) >= 10, "the README's console examples were not found"
    checkout = tmp_path / "checkout"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    if not tracked:
        pytest.fail("not a git checkout: the README examples run in a copy of the tracked files")
    for name in tracked.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(Path(sys.executable).parent.parent)
    env["DIAG_CACHE_DIR"] = str(tmp_path / "cache")
    env.pop("DIAG_RULES_PATH", None)
    failures = []
    for line_number, command in commands:
        match = EXIT_COMMENT.search(command)
        expected = int(match.group(1)) if match else 0
        result = subprocess.run(["bash", "-c", command], cwd=checkout, env=env, capture_output=True,
                                text=True, timeout=600, stdin=subprocess.DEVNULL)
        output = result.stdout + result.stderr
        if result.returncode != expected or "Traceback (most recent call last)" in output:
            failures.append(f"README.md:{line_number}: `{command}` exited {result.returncode} "
                            f"(expected {expected}):\n{output[-2000:]}")
    assert not failures, "\n\n".join(failures)
