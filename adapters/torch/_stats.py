"""Device-side statistics: fused norms per layer, activation and batch statistics.

Everything here returns tensors on the model's device and never calls ``.item()``: the recorder
stacks the results and copies them to the host once per step. Per-parameter norms come from one
fused call (``_foreach.norms``); per-layer sums from one ``index_add_``.
"""

from __future__ import annotations

import math

import torch

from diag.adapters.torch import _foreach
from diag.adapters.torch._layers import SATURATING, ZERO_ACTIVATIONS

# Within this distance of a bound counts as saturated (the schema's definition).
SATURATION_MARGIN = 1e-3


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
    norms = torch.stack(_foreach.norms(tensors))
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


def sums(x: torch.Tensor) -> torch.Tensor:
    """``(2,)`` float32: sum and sum of squares of a tensor, two cheap passes.

    Mean and std follow on the host (:func:`moments`). ``torch.std_mean`` and ``isfinite`` counts
    cost 30-100x more on the CPU (1.4 ms and 0.5 ms for 131k floats against 5 us for a sum and
    7 us for a dot product); a NaN or Inf shows up in the sums, and only then is the exact count
    of non-finite entries worth a pass (:func:`nonfinite_count`).
    """
    t = x.detach().float().reshape(-1)
    return torch.stack([t.sum(), torch.dot(t, t)])


def moments(total: float, total_sq: float, n: int) -> tuple[float, float]:
    """(mean, population std) from a sum and a sum of squares over ``n`` entries."""
    if n == 0:
        return float("nan"), float("nan")
    mean = total / n
    var = total_sq / n - mean * mean
    return mean, math.sqrt(var) if var > 0 else (0.0 if var == var else var)


def nonfinite_count(x: torch.Tensor) -> int:
    """Exact count of NaN/Inf entries (one extra pass and a host sync: for the rare bad step)."""
    return int(x.numel() - torch.count_nonzero(torch.isfinite(x.detach())))


class Scratch:
    """One float32 buffer reused for the full-size temporaries of activation statistics.

    On the CPU a freed temporary the size of a layer's output goes back to the operating system,
    and the next one is faulted in again page by page, which cost more than the statistic itself:
    a persistent buffer, as large as the largest output measured, is written in place instead.
    """

    def __init__(self):
        self._buffer: torch.Tensor | None = None

    def like(self, t: torch.Tensor) -> torch.Tensor:
        """A float32 tensor of ``t``'s shape and device to write into (overwritten by the next call)."""
        n = t.numel()
        if self._buffer is None or self._buffer.numel() < n or self._buffer.device != t.device:
            self._buffer = torch.empty(n, dtype=torch.float32, device=t.device)
        return self._buffer[:n].view(t.shape)


def activation_counts(output: torch.Tensor, activation: str | None, scratch: Scratch | None = None) -> torch.Tensor:
    """``(2,)`` float32 of a nonlinearity's output: how many entries are exactly zero (ReLU-like)
    and how many lie within 1e-3 of a bound (sigmoid/tanh); NaN where a column does not apply.
    With ``scratch``, the full-size temporary is written into its buffer instead of allocated."""
    t = output.detach().float()
    n = t.numel()
    nan = torch.full((), float("nan"), device=t.device)
    tmp = scratch.like(t) if scratch is not None and (activation in ZERO_ACTIVATIONS or activation in SATURATING) else None
    zero = nan
    if activation in ZERO_ACTIVATIONS:
        # ReLU outputs are >= 0: sign() is 1 or 0, so its sum counts the non-zeros. About 3x
        # cheaper than count_nonzero or a boolean comparison on the CPU.
        zero = n - (torch.sign(t) if tmp is None else torch.sign(t, out=tmp)).sum()
    saturation = nan
    if activation in SATURATING:
        low, high = SATURATING[activation]
        middle, half = (low + high) / 2, (high - low) / 2 - SATURATION_MARGIN
        # sign(|t - middle| - half) is 1 when saturated, -1 when not (0 exactly at the margin).
        shifted = t - middle if tmp is None else torch.sub(t, middle, out=tmp)
        distance = shifted.abs_().sub_(half)
        saturation = (distance.sign_().sum() + n) / 2
    return torch.stack([zero, saturation])


def batch_stats(x: torch.Tensor) -> torch.Tensor:
    """``(4,)`` float32 of an input batch: sum, sum of squares, min, max."""
    t = x.detach().float().reshape(-1)
    low, high = torch.aminmax(t)
    return torch.stack([t.sum(), torch.dot(t, t), low, high])


def batch_summary(values: list[float], x: torch.Tensor) -> dict:
    """The trace's input/label statistics from :func:`batch_stats` values fetched to the host."""
    total, total_sq, low, high = values
    mean, std = moments(total, total_sq, x.numel())
    finite = math.isfinite(total) and math.isfinite(total_sq)
    return {"mean": mean, "std": std, "min": low, "max": high, "nonfinite": 0 if finite else nonfinite_count(x)}


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
