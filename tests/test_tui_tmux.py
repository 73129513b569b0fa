"""Smoke test in a real terminal: ``diag tui --follow`` in tmux (80x24) while a real training run
(``diag demo lr_too_high``: a Flax MLP trained with SGD at learning rate 8) writes the trace; the
cause must appear on the screen the user is looking at."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

# A real terminal is the point of this test; without tmux there is nothing to drive (CI installs it).
pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="needs tmux for a real terminal (apt-get install tmux; .ci/run installs it)")

ROOT = Path(__file__).resolve().parents[1]
DIAG = Path(sys.executable).with_name("diag")
# The first row of the causes table (the model name mentions the scenario too, so match the row).
CAUSE = re.compile(r"^ 1 +(lr_too_high|exploding_gradients|nonfinite_values) ", re.MULTILINE)


class Tmux:
    """One private tmux server (its own socket), one 80x24 session."""

    def __init__(self, name: str):
        self.socket = f"diag-test-{os.getpid()}-{name}"

    def run(self, *args: str) -> str:
        result = subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10)
        return result.stdout

    def start(self, command: str) -> None:
        self.run("new-session", "-d", "-s", "main", "-x", "80", "-y", "24", command)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "main")

    def wait_for(self, pattern: re.Pattern | str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if re.search(pattern, screen):
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{pattern!r} did not appear within {timeout}s; the terminal shows:\n{screen}")

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


def test_follow_shows_the_cause_of_a_live_diverging_run_in_a_real_terminal(tmp_path):
    trace = tmp_path / "live.jsonl"  # does not exist yet: the TUI waits for the run to create it
    tmux = Tmux("follow")
    training = None
    try:
        tmux.start(f"{DIAG} tui --follow {trace}")
        tmux.wait_for("no records yet", timeout=120)  # patience on a loaded machine, not a timing check
        training = subprocess.Popen(
            [str(DIAG), "demo", "lr_too_high", "--out", str(trace), "--no-explain"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        screen = tmux.wait_for(CAUSE, timeout=180)
        assert re.search(r"step \d+/\d+", screen), screen
        assert re.search(r"\d+ causes? · \d+ rules fired", screen), screen
        assert re.search(r"● (following|completed)", screen), screen
        tmux.run("send-keys", "-t", "main", "q")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "main" in tmux.run("list-sessions"):
            time.sleep(0.2)
        assert "main" not in tmux.run("list-sessions"), "q did not quit the TUI"
    finally:
        if training is not None:
            training.kill()
            training.wait()
        tmux.kill()
