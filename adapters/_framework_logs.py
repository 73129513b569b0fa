"""Read the metrics a framework logged (Lightning ``callback_metrics``, Hugging Face ``logs``, Keras
``logs``) as diag evaluations: which split, its loss, its metrics under the trace's names.

The frameworks name validation metrics by prefix: ``val_loss``, ``val/acc`` (Lightning, by the
user's choice), ``eval_loss`` (Hugging Face), ``val_sparse_categorical_accuracy`` (Keras).
"""

from __future__ import annotations

import math
from typing import Mapping

# Prefix -> trace split.
SPLITS = {"val": "val", "valid": "val", "validation": "val", "eval": "val", "test": "test"}
# A framework's metric name -> the trace's (the rules read eval.<split>.metrics.accuracy).
METRIC_NAMES = {"acc": "accuracy", "accuracy": "accuracy", "sparse_categorical_accuracy": "accuracy",
                "categorical_accuracy": "accuracy", "binary_accuracy": "accuracy"}
# Bookkeeping a framework logs beside its metrics: not measurements of the model.
NOT_METRICS = {"runtime", "samples_per_second", "steps_per_second", "epoch", "step", "model_preparation_time"}


def as_float(value) -> float | None:
    """A logged value (float, numpy or torch scalar) as a float; None when it is not one number."""
    try:
        if hasattr(value, "numel") and value.numel() != 1:
            return None
        number = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        return None
    return number


def split_of(key: str) -> tuple[str, str] | None:
    """``'val_loss'`` -> ``('val', 'loss')``; None for a key without a split prefix."""
    for sep in ("/", "_"):
        head, found, rest = key.partition(sep)
        if found and head.lower() in SPLITS and rest:
            return SPLITS[head.lower()], rest
    return None


def metric_name(name: str) -> str:
    """The trace's name for a framework's metric (``sparse_categorical_accuracy`` -> ``accuracy``)."""
    name = name.removesuffix("_epoch")
    return METRIC_NAMES.get(name.lower(), name)


def evaluations(logs: Mapping[str, object]) -> dict[str, tuple[float | None, dict[str, float]]]:
    """The evaluations among ``logs``: ``{split: (loss, {metric: value})}``."""
    found: dict[str, tuple[float | None, dict[str, float]]] = {}
    for key, raw in logs.items():
        parsed = split_of(str(key))
        value = as_float(raw)
        if parsed is None or value is None:
            continue
        split, name = parsed
        loss, metrics = found.get(split, (None, {}))
        name = name.removesuffix("_epoch")
        if name == "loss":
            loss = value
        elif name not in NOT_METRICS:
            metrics[metric_name(name)] = value
        found[split] = (loss, metrics)
    return {split: entry for split, entry in found.items() if entry[0] is not None or entry[1]}


def training_metrics(logs: Mapping[str, object], skip: tuple[str, ...] = ("loss",)) -> dict[str, float]:
    """The finite training metrics among ``logs`` (keys without a split prefix), trace names."""
    metrics = {}
    for key, raw in logs.items():
        key = str(key)
        if key in skip or split_of(key) is not None or key in NOT_METRICS or key in ("learning_rate", "lr",
                                                                                      "grad_norm"):
            continue
        value = as_float(raw)
        if value is not None and math.isfinite(value):
            metrics[metric_name(key.removesuffix("_step"))] = value
    return metrics
