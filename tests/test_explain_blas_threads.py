"""`diag explain` loads OpenBLAS with one thread, leaves the user's choice alone, and lets no child inherit it.

OpenBLAS sizes its pool from the environment when numpy loads it; its idle threads cost CPU that
explain (no matrix products) has no use for. The threads are counted from /proc (Linux), after a
real explain in the same process; the control run shows the count sees OpenBLAS's threads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "healthy.jsonl"

AFTER_EXPLAIN = f"""
import contextlib, io, os
from diag.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    code = main(["explain", {str(EXAMPLE)!r}])
print(len(os.listdir("/proc/self/task")), os.environ.get("OPENBLAS_NUM_THREADS"), code, out.getvalue().count("\\n"))
"""
ONLY_NUMPY = 'import os, numpy; print(len(os.listdir("/proc/self/task")))'

pytestmark = pytest.mark.skipif(not Path("/proc/self/task").is_dir() or len(os.sched_getaffinity(0)) < 2,
                                reason="counts threads from Linux /proc; OpenBLAS starts no second thread on one CPU")


def _run(code: str, tmp_path: Path, **extra) -> list[str]:
    blas = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
    env = {k: v for k, v in os.environ.items() if k not in blas}
    env.update(DIAG_CACHE_DIR=str(tmp_path / "cache"), **extra)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()


def test_explain_runs_one_thread_and_restores_the_environment(tmp_path):
    assert _run(ONLY_NUMPY, tmp_path, OPENBLAS_NUM_THREADS="2") == ["2"]  # the count sees OpenBLAS's pool
    threads, variable, code, lines = _run(AFTER_EXPLAIN, tmp_path)
    assert (threads, variable, code) == ("1", "None", "0") and int(lines) > 3


def test_a_thread_count_the_user_chose_stands_and_the_output_is_the_same(tmp_path):
    ours = _run(AFTER_EXPLAIN, tmp_path)
    theirs = _run(AFTER_EXPLAIN, tmp_path, OPENBLAS_NUM_THREADS="2")
    assert theirs[:2] == ["2", "2"] and theirs[2:] == ours[2:]
