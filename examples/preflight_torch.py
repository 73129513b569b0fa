"""Targets for ``diag preflight``: a healthy PyTorch setup and four broken twins.

Each broken target differs from ``healthy`` in one place, marked ``# the bug``:

  diag preflight examples/preflight_torch.py:healthy          # exit 0
  diag preflight examples/preflight_torch.py:detached_head    # disconnected_parameters
  diag preflight examples/preflight_torch.py:wrong_loss       # loss_output_mismatch (softmax, then cross-entropy)
  diag preflight examples/preflight_torch.py:lr_too_high      # lr_too_high
  diag preflight examples/preflight_torch.py:seedless_data    # nondeterminism (data order)

A target is a function without arguments that returns a dict with model, loss_fn, optimizer,
train_batches and optionally val_batches.
"""

import numpy as np
import torch
from torch import nn

FEATURES, CLASSES, EXAMPLES, BATCH = 8, 4, 512, 32


def make_data(seed: int = 0):
    """A 4-class problem a small MLP learns: the label is the argmax of a fixed linear map of the inputs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(EXAMPLES, FEATURES)).astype(np.float32)
    y = (x @ rng.normal(size=(FEATURES, CLASSES))).argmax(axis=1)
    return torch.from_numpy(x), torch.from_numpy(y)


class MLP(nn.Module):
    def __init__(self, softmax: bool = False, detach: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
        self.head = nn.Linear(32, CLASSES)
        self.softmax, self.detach = softmax, detach

    def forward(self, x):
        features = self.body(x)
        if self.detach:
            features = features.detach()  # the bug (detached_head): the body never learns
        logits = self.head(features)
        return logits.softmax(dim=-1) if self.softmax else logits  # the bug (wrong_loss): softmax, then CrossEntropyLoss


class ShuffledBatches:
    """Batches in a new order each epoch, from a generator made once with a seed."""

    def __init__(self, x, y, batch_size: int = BATCH, seed=0):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)
        self.seeded = seed is not None

    def __iter__(self):
        rng = self.rng if self.seeded else np.random.default_rng()  # the bug (seedless_data): a fresh unseeded generator
        order = torch.from_numpy(rng.permutation(len(self.x)))
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]


def setup(*, lr=1e-2, softmax=False, detach=False, data_seed=0):
    torch.manual_seed(0)
    x, y = make_data()
    model = MLP(softmax=softmax, detach=detach)
    return {
        "model": model,
        "loss_fn": nn.CrossEntropyLoss(),
        "optimizer": torch.optim.Adam(model.parameters(), lr=lr),
        "train_batches": ShuffledBatches(x[:448], y[:448], seed=data_seed),
        "val_batches": [(x[448:], y[448:])],
    }


def healthy():
    return setup()


def detached_head():
    return setup(detach=True)


def wrong_loss():
    return setup(softmax=True)


def lr_too_high():
    return setup(lr=3.0)


def seedless_data():
    return setup(data_seed=None)
