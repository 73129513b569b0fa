"""Small real training runs, healthy or doomed, for the guard's and the callbacks' tests and benchmark.

Every framework fits the same problem: 4 classes from a fixed random linear map of 20 Gaussian
features (nothing downloaded). Faults:

* ``healthy``     Adam (or AdamW) at a sensible learning rate;
* ``lr_too_high`` plain SGD at a learning rate far too high (``HIGH_LR``);
* ``nan_data``    healthy, but every input batch from step ``NAN_ONSET`` holds NaN.
"""

from __future__ import annotations

import numpy as np

CLASSES = 4
FEATURES = 20
BATCH = 32
NAN_ONSET = 100
HIGH_LR = 50.0
FAULTS = ("healthy", "lr_too_high", "nan_data")


def make_data(n: int = 1024, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: float32 inputs, int64 labels of a learnable 4-class problem."""
    w = np.random.default_rng(1234).standard_normal((FEATURES, CLASSES))
    x = np.random.default_rng(seed).standard_normal((n, FEATURES)).astype(np.float32)
    return x, (x @ w).argmax(1).astype(np.int64)


def batch_indices(steps: int, n: int, seed: int = 1) -> np.ndarray:
    """``(steps, BATCH)`` example indices, one row per optimizer step."""
    return np.random.default_rng(seed).integers(0, n, size=(steps, BATCH))


def poison(x: np.ndarray, step: int, fault: str) -> np.ndarray:
    """The batch as the loader hands it over: NaN in one feature from ``NAN_ONSET`` for ``nan_data``."""
    if fault == "nan_data" and step >= NAN_ONSET:
        x = x.copy()
        x[:, 3] = np.nan
    return x


def learning_rate(fault: str) -> float:
    return HIGH_LR if fault == "lr_too_high" else 3e-3


# ---------------------------------------------------------------------------- plain PyTorch loop


def torch_mlp(seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, CLASSES))


def torch_optimizer(model, fault: str):
    import torch

    if fault == "lr_too_high":
        return torch.optim.SGD(model.parameters(), lr=HIGH_LR)
    return torch.optim.Adam(model.parameters(), lr=learning_rate(fault))


def fit_torch(path, fault: str, steps: int = 200, *, guard=True, recorder: bool = True) -> int:
    """A plain PyTorch loop recorded with ``TorchRecorder(guard=...)``; returns the steps run.

    ``recorder=False`` runs the same loop without diag (the overhead baseline). A guard stop
    surfaces as ``diag.TrainingDoomed`` from ``rec.record``, as in a user's loop.
    """
    import torch
    from torch.nn import functional as F

    from diag.adapters.torch import TorchRecorder

    x, y = make_data()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model = torch_mlp()
    opt = torch_optimizer(model, fault)
    rows = batch_indices(steps, len(x))
    rec = TorchRecorder(model, opt, path, task="classification", num_classes=CLASSES,
                        loss_kind="softmax_cross_entropy", batch_size=BATCH, capture_crashes=False,
                        guard=guard) if recorder else None
    ran = 0
    try:
        for step in range(steps):
            xb = torch.from_numpy(poison(x[rows[step]], step, fault))
            yb = yt[rows[step]]
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            ran = step + 1
            if rec is not None:
                rec.record(loss, labels=yb)
    finally:
        if rec is not None:
            rec.close()
    del xt
    return ran
