"""A small fleet of real runs for the sweep tests: real numpy training runs, a shard folder, a broken trace.

Healthy runs train at lr 0.1; failed runs at lr 5 (they diverge: ``lr_too_high``) or with NaN
planted in the input from step 30 (``nan_in_input_data``). Beside them: a run written as two
shards, a trace cut off before its first complete record, a ``config.json`` that is not a run, and
a hidden folder that must not be searched.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from tests.numpy_training import train_softmax_regression

# path under the fleet's root -> expected status and top cause
EXPECTED = {
    "healthy/seed0.jsonl": ("healthy", None),
    "healthy/seed1.jsonl": ("healthy", None),
    "diverged/lr5-seed0.jsonl": ("likely", "lr_too_high"),
    "diverged/lr5-seed1.jsonl": ("likely", "lr_too_high"),
    "nan/run.jsonl": ("likely", "nan_in_input_data"),
    "multi": ("healthy", None),
    "broken/killed.jsonl": ("unreadable", None),
}


def make_fleet(root: Path) -> Path:
    """Write the fleet under ``root`` (takes a few seconds) and return ``root``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the diverging runs overflow, as they should
        for seed in range(2):
            _train(root / f"healthy/seed{seed}.jsonl", seed=seed, lr=0.1)
        for seed in range(2):
            _train(root / f"diverged/lr5-seed{seed}.jsonl", seed=seed, lr=5.0)
        _train(root / "nan/run.jsonl", seed=3, lr=0.1, nan_at=30)
        _train(root / "multi/run.p0.jsonl", seed=1, lr=0.1)
        _train(root / "multi/run.p1.jsonl", seed=1, lr=0.1)
    (root / "nan/config.json").write_text(json.dumps({"lr": 0.1, "note": "a config beside a run, not a run"}))
    broken = root / "broken/killed.jsonl"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b'{"kind": "header", "schema": "diag.trace/1", "run_id": "kil')  # killed mid-header
    hidden = root / ".hidden/run.jsonl"
    hidden.parent.mkdir(parents=True)
    hidden.write_bytes(b"not a run anyone asked for\n")
    return root


def _train(path: Path, **kwargs) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    train_softmax_regression(path, steps=60, **kwargs)


# The foreign logs of the mixed fleet: path under the root -> (status, the top causes allowed).
FOREIGN_EXPECTED = {
    "tensorboard/diverging": ("likely", {"lr_too_high", "exploding_gradients"}),
    "tensorboard/healthy": ("healthy", {None}),
    "lightning_logs/version_0/metrics.csv": ("likely", {"lr_too_high", "exploding_gradients"}),
    "hf_output/checkpoint-150/trainer_state.json": ("likely", {"overfitting"}),
}


def make_mixed_fleet(root: Path) -> Path:
    """Our traces (``make_fleet``) and, beside them, logs the real tools wrote: torch's SummaryWriter
    (a diverging and a healthy run), Lightning's CSVLogger in a real diverging fit, and a Hugging
    Face ``TrainerState.save_to_json`` of an overfitting run (the helpers of the importer tests)."""
    from tests.test_importers_csv import lightning_fit
    from tests.test_importers_hf_mlflow_wandb import save_trainer_state
    from tests.test_importers_tensorboard import write_tensorboard

    make_fleet(root)
    for name in ("diverging", "healthy"):
        write_tensorboard(root / "tensorboard" / name, name)
    lightning_fit(root, "diverging")
    save_trainer_state(root / "hf_output" / "checkpoint-150", "overfitting")
    return root
