"""Targets for ``diag preflight``: a healthy Flax NNX setup and four broken twins.

The same five as examples/preflight_torch.py, in Flax NNX with optax; each broken target differs
from ``healthy`` in one place, marked ``# the bug``:

  diag preflight examples/preflight_flax.py:healthy          # exit 0
  diag preflight examples/preflight_flax.py:detached_head    # disconnected_parameters
  diag preflight examples/preflight_flax.py:wrong_loss       # loss_output_mismatch
  diag preflight examples/preflight_flax.py:lr_too_high      # lr_too_high
  diag preflight examples/preflight_flax.py:seedless_data    # nondeterminism (data order)
"""

import jax
import numpy as np
import optax
from flax import nnx

FEATURES, CLASSES, EXAMPLES, BATCH = 8, 4, 512, 32


def make_data(seed: int = 0):
    """A 4-class problem a small MLP learns: the label is the argmax of a fixed linear map of the inputs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(EXAMPLES, FEATURES)).astype(np.float32)
    y = (x @ rng.normal(size=(FEATURES, CLASSES))).argmax(axis=1).astype(np.int32)
    return x, y


class MLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, softmax: bool = False, detach: bool = False):
        self.body1 = nnx.Linear(FEATURES, 32, rngs=rngs)
        self.body2 = nnx.Linear(32, 32, rngs=rngs)
        self.head = nnx.Linear(32, CLASSES, rngs=rngs)
        self.softmax, self.detach = softmax, detach

    def __call__(self, x):
        features = nnx.relu(self.body2(nnx.relu(self.body1(x))))
        if self.detach:
            features = jax.lax.stop_gradient(features)  # the bug (detached_head): the body never learns
        logits = self.head(features)
        return jax.nn.softmax(logits) if self.softmax else logits  # the bug (wrong_loss): softmax, then cross-entropy


def cross_entropy(logits, labels):
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


class ShuffledBatches:
    """Batches in a new order each epoch, from a generator made once with a seed."""

    def __init__(self, x, y, batch_size: int = BATCH, seed=0):
        self.x, self.y, self.batch_size = x, y, batch_size
        self.rng = np.random.default_rng(seed)
        self.seeded = seed is not None

    def __iter__(self):
        rng = self.rng if self.seeded else np.random.default_rng()  # the bug (seedless_data): a fresh unseeded generator
        order = rng.permutation(len(self.x))
        for i in range(0, len(order), self.batch_size):
            idx = order[i:i + self.batch_size]
            yield self.x[idx], self.y[idx]


def setup(*, lr=1e-2, softmax=False, detach=False, data_seed=0):
    x, y = make_data()
    return {
        "model": MLP(nnx.Rngs(0), softmax=softmax, detach=detach),
        "loss_fn": cross_entropy,
        "optimizer": optax.adam(lr),
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
