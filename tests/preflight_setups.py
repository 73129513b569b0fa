"""Small real training setups for the preflight tests, one builder per framework with the same knobs.

Each knob plants one fault; the defaults are the healthy twin (a 4-class MLP that Adam at 1e-2
fits easily). Both builders return the dict that a ``diag preflight`` target returns.
"""

from __future__ import annotations

import numpy as np

FEATURES, CLASSES, EXAMPLES, BATCH = 8, 4, 384, 32


def data(seed: int = 0, regression: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(EXAMPLES, FEATURES)).astype(np.float32)
    w = rng.normal(size=(FEATURES, CLASSES))
    if regression:
        y = (x @ w[:, 0]).astype(np.float32)
    else:
        y = (x @ w).argmax(axis=1).astype(np.int64)
    return x, y


class Batches:
    """A new order every epoch from a generator made once with a seed (seed=None: a fresh unseeded one per pass)."""

    def __init__(self, x, y, seed=0, batch_size=BATCH):
        self.x, self.y, self.seed, self.batch_size = x, y, seed, batch_size
        self.rng = np.random.default_rng(seed)

    def __iter__(self):
        rng = self.rng if self.seed is not None else np.random.default_rng()
        order = rng.permutation(len(self.x))
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]


def _arrays(nan_inputs=False, label_offset=0, regression=False, target_column=False, float_labels=False):
    x, y = data(regression=regression)
    if nan_inputs:
        x = x.copy()
        x[::10, 2] = np.nan  # one example in ten, as a broken join leaves them
    if label_offset:
        y = y + label_offset
    if target_column:
        y = y.reshape(-1, 1)
    if float_labels:
        y = y.astype(np.float32)
    return x, y


def _splits(x, y, data_seed, overlap):
    train_x, train_y = x[:320], y[:320]
    val_x, val_y = (x[:64], y[:64]) if overlap else (x[320:], y[320:])
    return Batches(train_x, train_y, seed=data_seed), [(val_x, val_y)]


def torch_setup(*, lr=1e-2, softmax=False, detach=False, out_scale=1.0, data_seed=0, nan_inputs=False,
                label_offset=0, overlap=False, regression=False, target_column=False, unseeded_dropout=False):
    import torch
    from torch import nn

    torch.manual_seed(0)
    x, y = _arrays(nan_inputs, label_offset, regression, target_column)
    outputs = 1 if regression else CLASSES

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
            self.head = nn.Linear(32, outputs)

        def forward(self, x):
            h = self.body(x)
            if unseeded_dropout and self.training:  # dropout from a fresh unseeded numpy generator
                keep = np.random.default_rng().random(tuple(h.shape)) > 0.1
                h = h * torch.from_numpy(keep) / 0.9
            h = h.detach() if detach else h
            out = self.head(h) * out_scale
            return out.softmax(-1) if softmax else out

    model = MLP()
    train, val = _splits(torch.from_numpy(x), torch.from_numpy(y), data_seed, overlap)
    return {"model": model, "loss_fn": nn.MSELoss() if regression else nn.CrossEntropyLoss(),
            "optimizer": torch.optim.Adam(model.parameters(), lr=lr), "train_batches": train, "val_batches": val}


def flax_setup(*, lr=1e-2, softmax=False, detach=False, out_scale=1.0, data_seed=0, nan_inputs=False,
               label_offset=0, overlap=False, regression=False, target_column=False, unseeded_dropout=False):
    import jax
    import optax
    from flax import nnx

    x, y = _arrays(nan_inputs, label_offset, regression, target_column)
    y = y.astype(np.float32 if regression else np.int32)
    outputs = 1 if regression else CLASSES

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.body1 = nnx.Linear(FEATURES, 32, rngs=rngs)
            self.body2 = nnx.Linear(32, 32, rngs=rngs)
            self.head = nnx.Linear(32, outputs, rngs=rngs)

        def __call__(self, x):
            h = nnx.relu(self.body2(nnx.relu(self.body1(x))))
            h = jax.lax.stop_gradient(h) if detach else h
            out = self.head(h) * out_scale
            return jax.nn.softmax(out) if softmax else out

    def cross_entropy(logits, labels):
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    def mse(out, target):
        return optax.l2_loss(out, target).mean() * 2

    train, val = _splits(x, y, data_seed, overlap)
    return {"model": MLP(nnx.Rngs(0)), "loss_fn": mse if regression else cross_entropy,
            "optimizer": optax.adam(lr), "train_batches": train, "val_batches": val}
