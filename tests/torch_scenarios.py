"""Small PyTorch training runs with one planted fault each, recorded with the TorchRecorder.

Test material (moved out of the shipped adapter): each scenario trains a real model on synthetic data for
a few seconds on the CPU and writes its trace. ``SCENARIOS`` maps a scenario name to the cause id
(shared/CAUSES.md) that was planted, ``healthy`` for none.

Example:
  >>> import tempfile, os
  >>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
  >>> SCENARIOS["torch_missing_zero_grad"].run(path, steps=20)
  >>> SCENARIOS["torch_missing_zero_grad"].cause
  'missing_zero_grad'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from diag.adapters.torch.recorder import TorchRecorder

CLASSES = 4


def _data(n: int = 2048, features: int = 20, seed: int = 0, scale: float = 1.0, shift: float = 0.0):
    """A learnable 4-class problem: labels from a fixed random linear map of Gaussian inputs;
    ``seed`` draws the examples (use different seeds for train and validation)."""
    w = torch.randn(features, CLASSES, generator=torch.Generator().manual_seed(1234))
    x = torch.randn(n, features, generator=torch.Generator().manual_seed(seed))
    y = (x @ w).argmax(1)
    return x * scale + shift, y


def _mlp(features: int = 20, hidden: int = 64, norm: nn.Module | None = None) -> nn.Module:
    layers = [nn.Linear(features, hidden)]
    if norm is not None:
        layers.append(norm)
    layers += [nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, CLASSES)]
    return nn.Sequential(*layers)


def _loop(path, model, opt, x, y, steps, *, zero_grad=True, scaler=None, autocast=None, val=None, seed=0):
    Path(path).unlink(missing_ok=True)  # the writer appends: one run per scenario file
    g = torch.Generator().manual_seed(seed + 1)
    with TorchRecorder(model, opt, path, scaler=scaler, task="classification", num_classes=CLASSES,
                       loss_kind="softmax_cross_entropy", batch_size=64, steps_planned=steps, seed=seed,
                       capture_crashes=False) as rec:
        for step in range(steps):
            i = torch.randint(0, len(x), (64,), generator=g)
            if zero_grad:
                opt.zero_grad()
            with torch.autocast("cpu", dtype=autocast, enabled=autocast is not None):
                loss = F.cross_entropy(model(x[i]).float(), y[i])
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            rec.record(loss, labels=y[i])
            if val is not None and (step + 1) % max(steps // 5, 1) == 0:
                rec.evaluate("val", [val], F.cross_entropy)
                rec.evaluate_train_subset(x[:512], y[:512], F.cross_entropy)


def healthy(path, steps: int = 150) -> None:
    """Adam at a sensible learning rate on normalized inputs."""
    torch.manual_seed(0)
    x, y = _data()
    vx, vy = _data(512, seed=1)
    model = _mlp()
    _loop(path, model, torch.optim.Adam(model.parameters(), lr=3e-3), x, y, steps, val=(vx, vy))


def missing_zero_grad(path, steps: int = 150) -> None:
    """``optimizer.zero_grad()`` is never called: gradients accumulate across steps."""
    torch.manual_seed(0)
    x, y = _data()
    model = _mlp()
    _loop(path, model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9), x, y, steps, zero_grad=False)


def fp16_overflow(path, steps: int = 60) -> None:
    """float16 autocast with unnormalized inputs (x1000): activations overflow 65504, the GradScaler
    skips every step and halves its scale each time."""
    torch.manual_seed(0)
    x, y = _data(scale=1000.0)
    model = _mlp()
    scaler = torch.amp.GradScaler("cpu")
    _loop(path, model, torch.optim.SGD(model.parameters(), lr=0.01), x, y, steps, scaler=scaler,
          autocast=torch.float16)


def batchnorm_without_running_stats(path, steps: int = 150) -> None:
    """BatchNorm with ``momentum=0``: its running statistics never leave their initial values, so the
    model is fine in train mode and wrong in eval mode (inputs have mean 3, std 4)."""
    torch.manual_seed(0)
    x, y = _data(scale=4.0, shift=3.0)
    vx, vy = _data(512, seed=1, scale=4.0, shift=3.0)
    model = _mlp(norm=nn.BatchNorm1d(64, momentum=0.0))
    _loop(path, model, torch.optim.Adam(model.parameters(), lr=3e-3), x, y, steps, val=(vx, vy))


@dataclass(frozen=True)
class Scenario:
    cause: str
    run: Callable[..., None]


SCENARIOS = {
    "torch_healthy": Scenario("healthy", healthy),
    "torch_missing_zero_grad": Scenario("missing_zero_grad", missing_zero_grad),
    "torch_fp16_overflow": Scenario("fp16_overflow", fp16_overflow),
    "torch_batchnorm_without_running_stats": Scenario("train_eval_mode_mismatch", batchnorm_without_running_stats),
}
