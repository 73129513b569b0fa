"""Shared fixtures: real (small) traces written the way adapters write them."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from tests.numpy_training import train_softmax_regression


# The user cache (parsed rule files, rule-engine's parser tables) is never the developer's own in a
# test run, and is shared by the run's processes: set before any test imports diag.
os.environ.setdefault("DIAG_CACHE_DIR", tempfile.mkdtemp(prefix="diag-test-cache-"))


@pytest.fixture(scope="session")
def real_trace(tmp_path_factory) -> Path:
    """A trace of a real, healthy training run (numpy softmax regression, 60 steps)."""
    path = tmp_path_factory.mktemp("real") / "run.jsonl"
    train_softmax_regression(path, steps=60)
    return path
