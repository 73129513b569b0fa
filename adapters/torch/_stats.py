"""Device-side statistics: fused norms per layer, activation and batch statistics.

Everything here returns tensors on the model's device and never calls ``.item()``: the recorder
stacks the results and copies them to the host once per step. Per-parameter norms come from one
fused call (``_foreach.norms``); the host adds them up per layer (:func:`layer_sums`): a few
float additions there cost less than three more operations dispatched on the device.
"""

from __future__ import annotations

import math

import torch

from diag.adapters.torch import _foreach
from diag.adapters.torch._layers import SATURATING, ZERO_ACTIVATIONS

# Within this distance of a bound counts as saturated (the schema's definition).
SATURATION_MARGIN = 1e-3


def norms_vector(tensors: list[torch.Tensor | None]) -> torch.Tensor:
    """The float32 L2 norm of each tensor as one vector (one fused call); ``None`` (a parameter
    without a gradient) counts as 0. A NaN or Inf anywhere in a tensor makes its norm non-finite,
    so no separate ``isfinite`` pass is needed.

    Example:
      >>> norms_vector([torch.ones(4), None, torch.full((9,), 2.0)]).tolist()
      [2.0, 0.0, 6.0]
    """
    present = [t for t in tensors if t is not None]
    norms = _foreach.norms(present)
    if len(present) < len(tensors):
        device = present[0].device if present else torch.device("cpu")
        zero = torch.zeros((), dtype=torch.float32, device=device)
        found = iter(norms)
        norms = [zero if t is None else next(found) for t in tensors]
    return torch.stack(norms) if norms else torch.zeros(0)


def grad_norms(params: list[torch.Tensor]) -> torch.Tensor:
    """Per-parameter gradient norms (:func:`norms_vector`); a parameter without a gradient counts as 0."""
    return norms_vector([p.grad for p in params])


def layer_sums(norms: list[float], layer_of: list[int], num_layers: int,
               scales: list[float] | None = None) -> list[float]:
    """Per-layer sums of squares from per-parameter norms fetched to the host (in float64).

    Args:
      norms: one norm per parameter, in the plan's parameter order.
      layer_of: the layer index of each parameter.
      num_layers: number of layers.
      scales: a factor per parameter applied to its norm first (the learning rate, for an update
        measured as ``lr * |grad|``), or None.

    Example:
      >>> layer_sums([3.0, 4.0, 1.0], [0, 0, 1], 2)
      [25.0, 1.0]
      >>> layer_sums([3.0, 4.0, 1.0], [0, 0, 1], 2, scales=[0.1, 0.1, 0.0])
      [0.25000000000000006, 0.0]
    """
    out = [0.0] * num_layers
    if scales is None:
        for norm, layer in zip(norms, layer_of):
            out[layer] += norm * norm
    else:
        for norm, layer, scale in zip(norms, layer_of, scales):
            scaled = norm * scale
            out[layer] += scaled * scaled
    return out


def sums(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum and sum of squares of a tensor as float32 0-d tensors, two cheap passes.

    Mean and std follow on the host (:func:`moments`). ``torch.std_mean`` and ``isfinite`` counts
    cost 30-100x more on the CPU (1.4 ms and 0.5 ms for 131k floats against 5 us for a sum and
    7 us for a dot product); a NaN or Inf shows up in the sum of squares, and only then is the
    exact count of non-finite entries worth a pass (:func:`nonfinite_count`).
    """
    t = x.detach()
    if t.dtype != torch.float32:
        t = t.float()
    t = t.reshape(-1)
    return t.sum(), torch.dot(t, t)


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
        self._views: dict = {}  # (shape, device) -> a view of the buffer, made once

    def like(self, t: torch.Tensor) -> torch.Tensor:
        """A float32 tensor of ``t``'s shape and device to write into (overwritten by the next call)."""
        key = (t.shape, t.device)
        view = self._views.get(key)
        if view is None:
            n = t.numel()
            if self._buffer is None or self._buffer.numel() < n or self._buffer.device != t.device:
                self._buffer = torch.empty(n, dtype=torch.float32, device=t.device)
                self._views = {}
            view = self._views[key] = self._buffer[:n].view(t.shape)
        return view


def sign_sum(output: torch.Tensor, activation: str | None, scratch: Scratch | None = None) -> torch.Tensor | None:
    """A float32 0-d tensor from which the host counts a nonlinearity's zero or saturated outputs
    (:func:`activation_fraction`); None for an activation without such a count.

    ReLU-like (outputs >= 0): ``sum(sign(t))``, the number of non-zero entries; about 3x cheaper
    than ``count_nonzero`` or a boolean comparison on the CPU. Sigmoid/tanh-like:
    ``sum(sign(|t - middle| - half))``, saturated minus unsaturated entries (within 1e-3 of a
    bound counts as saturated). A NaN output makes it NaN. With ``scratch``, the full-size
    temporary is written into its buffer instead of allocated.
    """
    if activation not in ZERO_ACTIVATIONS and activation not in SATURATING:
        return None
    t = output.detach()
    if t.dtype != torch.float32:
        t = t.float()
    tmp = scratch.like(t) if scratch is not None else None
    if activation in ZERO_ACTIVATIONS:
        return (torch.sign(t) if tmp is None else torch.sign(t, out=tmp)).sum()
    low, high = SATURATING[activation]
    middle, half = (low + high) / 2, (high - low) / 2 - SATURATION_MARGIN
    shifted = t - middle if tmp is None else torch.sub(t, middle, out=tmp)
    return shifted.abs_().sub_(half).sign_().sum()


def activation_fraction(activation: str, measured_as: str | None, value: float, n: int) -> float:
    """The zero fraction (ReLU-like) or saturated fraction (sigmoid/tanh-like) of ``n`` outputs
    from :func:`sign_sum`'s value; NaN when it was measured as another kind of activation."""
    if activation in ZERO_ACTIVATIONS:
        count = n - value if measured_as in ZERO_ACTIVATIONS else float("nan")
    else:
        count = (value + n) / 2 if measured_as in SATURATING else float("nan")
    return count / n


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
