"""Synthetic datasets for the demo: generated on the spot, nothing downloaded.

A Gaussian-mixture classification table: each class has a random center in feature space and
examples scatter around it, so a small MLP learns it to about 90% accuracy in a few hundred steps.
Each planted data fault is one small, visible edit of the clean data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Dataset:
    """Train and validation splits (float32 inputs, int32 labels), plus optional timestamps."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    feature_names: list[str]
    num_classes: int


def gaussian_mixture(*, n_train=2048, n_val=512, features=16, classes=4, spread=1.6, seed=0) -> Dataset:
    """A clean, standardized classification table.

    Example:
      >>> d = gaussian_mixture(n_train=100, n_val=20)
      >>> d.x_train.shape, d.y_val.shape, d.num_classes
      ((100, 16), (20,), 4)
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, features))
    n = n_train + n_val
    y = rng.integers(0, classes, size=n)
    x = centers[y] + spread * rng.normal(size=(n, features))
    x = (x - x[:n_train].mean(0)) / x[:n_train].std(0)
    names = [f"x{j}" for j in range(features)]
    return Dataset(x[:n_train].astype(np.float32), y[:n_train].astype(np.int32),
                   x[n_train:].astype(np.float32), y[n_train:].astype(np.int32), names, classes)


def with_target_leak(d: Dataset, seed=0) -> Dataset:
    """Add a feature that is the label plus a little noise (a 'promotion' column, seed 003)."""
    rng = np.random.default_rng(seed)
    leak = lambda y: (3.0 * y + 0.1 * rng.normal(size=len(y))).astype(np.float32)[:, None]  # noqa: E731
    return Dataset(np.hstack([d.x_train, leak(d.y_train)]), d.y_train, np.hstack([d.x_val, leak(d.y_val)]),
                   d.y_val, d.feature_names + ["promo_code"], d.num_classes)


def with_val_copied_from_train(d: Dataset, share=0.6) -> Dataset:
    """Replace a share of the validation set with training examples (a bad de-duplication)."""
    k = int(share * len(d.x_val))
    x_val, y_val = d.x_val.copy(), d.y_val.copy()
    x_val[:k], y_val[:k] = d.x_train[:k], d.y_train[:k]
    return Dataset(d.x_train, d.y_train, x_val, y_val, d.feature_names, d.num_classes)


def with_label_noise(d: Dataset, share=0.4, seed=0) -> Dataset:
    """Give a share of the training labels a random class, and repeat some rows with both labels."""
    rng = np.random.default_rng(seed)
    y = d.y_train.copy()
    flip = rng.random(len(y)) < share
    y[flip] = rng.integers(0, d.num_classes, size=int(flip.sum()))
    x = d.x_train.copy()
    k = len(x) // 10  # the same input annotated twice, differently
    x[-k:] = x[:k]
    y[-k:] = (y[:k] + 1) % d.num_classes
    return Dataset(x, y, d.x_val, d.y_val, d.feature_names, d.num_classes)


def with_nan_rows(d: Dataset, share=0.01, seed=0) -> Dataset:
    """Blank out a few input values as NaN (a failed join upstream)."""
    rng = np.random.default_rng(seed)
    x = d.x_train.copy()
    rows = rng.choice(len(x), size=max(1, int(share * len(x))), replace=False)
    x[rows, rng.integers(0, x.shape[1], size=len(rows))] = np.nan
    return Dataset(x, d.y_train, d.x_val, d.y_val, d.feature_names, d.num_classes)


def scaled(d: Dataset, factor: float) -> Dataset:
    """Inputs multiplied by ``factor`` (raw pixel values, unnormalized sensor units)."""
    return Dataset(d.x_train * factor, d.y_train, d.x_val * factor, d.y_val, d.feature_names, d.num_classes)


def small(d: Dataset, n: int) -> Dataset:
    """Only the first ``n`` training examples (a model much bigger than its data)."""
    return Dataset(d.x_train[:n], d.y_train[:n], d.x_val, d.y_val, d.feature_names, d.num_classes)
