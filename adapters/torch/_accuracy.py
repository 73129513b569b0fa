"""Accuracy by the rule a model's outputs call for, and the name of that rule for the record.

``argmax`` over the last axis is right for one logit per class and wrong for everything else: on a
binary classifier with one logit it reports the share of label 0 whatever the model does. The rule
follows the output and the loss:

* one output per class (``out.shape[-1] > 1``, integer labels): ``argmax``;
* one output (``(N,)`` or ``(N, 1)``): a logit thresholded at 0 (``logit>0``), or a probability at
  0.5 (``probability>0.5``) when the loss takes probabilities (``nn.BCELoss``, a loss kind without
  "logits") or the model ends in a ``Sigmoid``;
* multi-label targets (float labels of the output's shape): each label decided the same way, the
  accuracy being the share of correct label decisions (``per_label ...``).
"""

from __future__ import annotations

import torch
from torch import nn


def accuracy_rule(out: torch.Tensor, labels: torch.Tensor, loss_fn=None, loss_kind: str | None = None,
                  model: nn.Module | None = None) -> str:
    """The accuracy rule for a batch of outputs and labels (see the module docstring).

    Example:
      >>> accuracy_rule(torch.zeros(4, 1), torch.ones(4, 1), nn.BCEWithLogitsLoss())
      'logit>0'
      >>> accuracy_rule(torch.zeros(4, 3), torch.ones(4, 3), nn.BCEWithLogitsLoss())
      'per_label logit>0'
      >>> accuracy_rule(torch.zeros(4, 3), torch.tensor([0, 1, 2, 0]))
      'argmax'
    """
    single = out.ndim == 1 or out.shape[-1] == 1
    multi_label = not single and labels.shape == out.shape and labels.is_floating_point()
    if not (single or multi_label):
        return "argmax"
    decision = "probability>0.5" if _takes_probabilities(loss_fn, loss_kind, model) else "logit>0"
    return f"per_label {decision}" if multi_label else decision


def correct_decisions(out: torch.Tensor, labels: torch.Tensor, rule: str) -> tuple[torch.Tensor, int]:
    """(correct decisions, decisions made) of one batch under ``rule``."""
    if rule == "argmax":
        return (out.argmax(-1) == labels).sum(), int(labels.shape[0])
    threshold = 0.5 if rule.endswith("probability>0.5") else 0.0
    predicted = out.reshape(labels.shape) > threshold if out.numel() == labels.numel() else out > threshold
    truth = labels > 0.5 if labels.is_floating_point() else labels.bool()
    return (predicted == truth).sum(), int(truth.numel())


def _takes_probabilities(loss_fn, loss_kind: str | None, model: nn.Module | None) -> bool:
    if isinstance(loss_fn, nn.BCELoss) or getattr(loss_fn, "__name__", "") == "binary_cross_entropy":
        return True
    if isinstance(loss_fn, nn.BCEWithLogitsLoss) or getattr(loss_fn, "__name__", "") == "binary_cross_entropy_with_logits":
        return False
    if loss_kind:
        return "logit" not in loss_kind
    last = list(model.modules())[-1] if model is not None else None
    return isinstance(last, nn.Sigmoid)
