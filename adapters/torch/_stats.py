"""Device-side statistics: fused norms per layer, activation and batch statistics.

Everything here returns tensors on the model's device and never calls ``.item()``: the recorder
stacks the results and copies them to the host once per step. Per-parameter work goes through
``torch._foreach_norm`` (one call for all tensors); per-layer sums come from one ``index_add_``.
"""

from __future__ import annotations

import torch

from diag.adapters.torch._layers import SATURATING, ZERO_ACTIVATIONS

# Within this distance of a bound counts as saturated (the schema's definition).
SATURATION_MARGIN = 1e-3
# Columns of the activation table.
ACTIVATION_COLUMNS = ("mean", "std", "zero_fraction", "saturation_fraction", "nonfinite")


def per_layer_sq(tensors: list[torch.Tensor], segment: torch.Tensor, num_layers: int) -> torch.Tensor:
    """Sum of squares of each layer's tensors, shape ``(num_layers,)``, float32.

    Args:
      tensors: one tensor per parameter, in the plan's parameter order.
      segment: the layer index of each tensor (int64, same device).
      num_layers: number of layers.

    Returns:
      Per-layer sums of squares; a NaN or Inf anywhere in a layer makes its entry non-finite, so
      no separate ``isfinite`` pass is needed.

    Example:
      >>> t = [torch.ones(4), torch.ones(9), torch.ones(1)]
      >>> per_layer_sq(t, torch.tensor([0, 0, 1]), 2).tolist()
      [13.0, 1.0]
    """
    norms = torch.stack(torch._foreach_norm(tensors, 2, dtype=torch.float32))
    out = torch.zeros(num_layers, dtype=torch.float32, device=norms.device)
    return out.index_add_(0, segment, norms * norms)


def grad_layer_sq(params: list[torch.Tensor], segment: torch.Tensor, num_layers: int) -> torch.Tensor:
    """Per-layer gradient sum of squares; a parameter without a gradient counts as zero."""
    grads = [p.grad for p in params]
    if all(g is not None for g in grads):
        return per_layer_sq(grads, segment, num_layers)
    present = [i for i, g in enumerate(grads) if g is not None]
    out = torch.zeros(num_layers, dtype=torch.float32, device=segment.device)
    if present:
        index = torch.tensor(present, device=segment.device)
        out = per_layer_sq([grads[i] for i in present], segment[index], num_layers)
    return out


def output_row(output: torch.Tensor) -> torch.Tensor:
    """``(3,)`` float32 of a layer's own output (before its nonlinearity, as the Flax adapter
    measures it): mean, std, count of non-finite entries."""
    # .float() is free for float32 and gives bfloat16/float16 outputs a float32 accumulator.
    t = output.detach().float()
    std, mean = torch.std_mean(t, correction=0)
    nonfinite = (t.numel() - torch.count_nonzero(torch.isfinite(t))).float()
    return torch.stack([mean, std, nonfinite])


def activation_fractions(output: torch.Tensor, activation: str | None) -> torch.Tensor:
    """``(2,)`` float32 of a nonlinearity's output: zero fraction (ReLU-like) and saturation
    fraction (sigmoid/tanh); NaN where the column does not apply to this activation."""
    t = output.detach()
    nan = torch.full((), float("nan"), device=t.device)
    zero = nan
    if activation in ZERO_ACTIVATIONS:
        zero = 1.0 - torch.count_nonzero(t).float() / t.numel()
    saturation = nan
    if activation in SATURATING:
        low, high = SATURATING[activation]
        saturated = (t <= low + SATURATION_MARGIN) | (t >= high - SATURATION_MARGIN)
        saturation = torch.count_nonzero(saturated).float() / t.numel()
    return torch.stack([zero, saturation])


def batch_stats(x: torch.Tensor) -> torch.Tensor:
    """``(5,)`` float32 of an input batch: mean, std, min, max, count of non-finite entries."""
    t = x.detach().float()
    std, mean = torch.std_mean(t, correction=0)
    low, high = torch.aminmax(t)
    nonfinite = (t.numel() - torch.count_nonzero(torch.isfinite(t))).float()
    return torch.stack([mean, std, low.float(), high.float(), nonfinite])


def label_stats(y: torch.Tensor, num_classes: int | None) -> tuple[str, torch.Tensor]:
    """Statistics of a label batch: ``("classes", [entropy, distinct])`` or ``("values", batch_stats)``.

    Integer labels give the entropy (nats) of the batch's label histogram and the number of distinct
    labels; negative labels (an ignore index such as -100) are left out. One-hot or soft labels
    (float, 2-D) are summed per class. Other float labels are treated as regression targets.
    """
    t = y.detach()
    if not t.is_floating_point():
        # Shift so that every ignored (negative) label lands in bin 0, which is then dropped:
        # a boolean mask would force a host sync to learn its size.
        shifted = t.reshape(-1).clamp_min(-1) + 1
        counts = torch.bincount(shifted, minlength=(num_classes or 0) + 1)[1:].float()
    elif t.dim() == 2 and (num_classes is None or t.shape[1] == num_classes) and t.shape[1] > 1:
        counts = t.float().sum(0)
    else:
        return "values", batch_stats(t)
    total = counts.sum().clamp_min(1e-12)
    entropy = torch.special.entr(counts / total).sum()
    distinct = torch.count_nonzero(counts).float()
    return "classes", torch.stack([entropy, distinct])
