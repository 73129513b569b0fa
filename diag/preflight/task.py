"""What kind of task a batch is for, read from the model's outputs and the targets, and its chance loss.

The chance level is the loss of an uninformed guess: ``log C`` for C classes (uniform
probabilities), ``log 2`` for each binary output, and for regression the loss of predicting the
targets' mean everywhere (the target variance for a squared error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass(frozen=True)
class Task:
    kind: str  # "classification" | "binary" | "multilabel" | "regression"
    classes: Optional[int] = None
    one_hot: bool = False

    @property
    def chance(self) -> Optional[float]:
        """The loss of a uniform guess, for the classification kinds."""
        if self.kind == "classification":
            return math.log(self.classes)
        if self.kind in ("binary", "multilabel"):
            return math.log(2.0)
        return None

    def describe(self) -> str:
        if self.kind == "classification":
            return f"{self.classes}-class classification"
        return {"binary": "binary classification", "multilabel": "multi-label classification"}.get(self.kind, "regression")


def integral(y: np.ndarray) -> bool:
    """Whether every target is a whole number (class ids, even when stored as floats)."""
    if y.dtype.kind in "biu":
        return True
    return y.dtype.kind == "f" and bool(np.all(np.isfinite(y))) and bool(np.all(y == np.round(y)))


def infer_task(outputs: np.ndarray, targets: np.ndarray) -> Task:
    """The task a batch is for, from the output width and the targets' values.

    Example:
      >>> infer_task(np.zeros((4, 10)), np.array([0, 3, 9, 1])).describe()
      '10-class classification'
      >>> infer_task(np.zeros((4, 1)), np.array([0.5, 1.5, 2.0, 0.1])).kind
      'regression'
    """
    out, y = np.asarray(outputs), np.asarray(targets)
    width = out.shape[-1] if out.ndim >= 2 else 1
    binary_values = y.size > 0 and bool(np.all(np.isin(y, (0, 1))))
    if width >= 2 and y.ndim == out.ndim - 1 and integral(y):
        return Task("classification", width)
    if width >= 2 and y.shape == out.shape and binary_values:
        one_hot = bool(np.all(y.sum(axis=-1) == 1))
        return Task("classification", width, one_hot=True) if one_hot else Task("multilabel", width)
    if width == 1 and binary_values:
        return Task("binary", 1)
    return Task("regression")
