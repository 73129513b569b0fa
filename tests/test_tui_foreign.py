"""``diag tui`` on foreign logs in a real terminal (tmux, 80x24): a TensorBoard folder of two real
runs (the TUI asks which, as a person at a terminal is asked) and a real Lightning CSVLogger
version folder; the diverging run's cause must be on the screen the user looks at."""

from __future__ import annotations

import re
import shutil

import pytest

from tests.test_tui_tmux import DIAG, Tmux

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="needs tmux for a real terminal (apt-get install tmux; .ci/run installs it)")
pytest.importorskip("torch")

CAUSE = re.compile(r"^ 1 +(lr_too_high|exploding_gradients) ", re.MULTILINE)


def test_tui_asks_which_run_of_a_tensorboard_folder_and_shows_its_cause(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tests.test_importers_tensorboard import write_tensorboard

    runs = tmp_path / "runs"
    for name in ("diverging", "healthy"):
        write_tensorboard(runs / name, name)
    tmux = Tmux("tb")
    try:
        # A person at a terminal: CI (set when the suite itself runs in CI) turns every prompt off.
        tmux.start(f"env -u CI {DIAG} tui {runs}")
        tmux.wait_for(r"which run\? \[1-2 or a name", timeout=180)
        screen = tmux.screen()
        assert "1. diverging  (tensorboard)" in screen and "2. healthy  (tensorboard)" in screen
        tmux.run("send-keys", "-t", "main", "1", "Enter")
        screen = tmux.wait_for(CAUSE, timeout=90)
        assert "diverging" in screen
        tmux.run("send-keys", "-t", "main", "q")
    finally:
        tmux.kill()


def test_tui_opens_a_lightning_csvlogger_version_and_shows_its_cause(tmp_path):
    from tests.test_importers_csv import lightning_fit

    version = lightning_fit(tmp_path, "diverging")
    tmux = Tmux("lightning")
    try:
        tmux.start(f"{DIAG} tui {version} --no-input")
        screen = tmux.wait_for(CAUSE, timeout=90)
        assert version.name in screen  # the run is named by its version folder
        tmux.run("send-keys", "-t", "main", "q")
    finally:
        tmux.kill()
