"""One place that turns measured sums into the fields of a step record, for every adapter.

The adapters measure on the device what is cheap there (per-layer sums of squares of the
gradient, the parameters and the update; global sums on steps without per-layer detail) and
fetch the numbers in one transfer. What those numbers mean in the trace (a norm is the square
root of a sum of squares, a NaN or Inf in a sum is a non-finite tensor, an update ratio is the
update's norm over the parameters') is decided here, once, so that the Flax and PyTorch traces of
the same run agree by construction (tests/snapshots/adapter_parity.md).

The result is a plain dict in the field names of :class:`diag.trace.records.Step` with Python
floats (NaN and Inf kept as floats): the Flax adapter validates it into a ``Step``; the PyTorch
adapter encodes it directly (validating a model per step costs more than a small step).
"""

from __future__ import annotations

import math
from typing import Sequence


def norm_from_sum(sum_of_squares: float) -> float:
    """The norm of a tensor from its sum of squares; NaN and Inf stay as they are.

    Example:
      >>> norm_from_sum(9.0), norm_from_sum(float("inf"))
      (3.0, inf)
    """
    return math.sqrt(sum_of_squares) if sum_of_squares >= 0 else sum_of_squares


def update_ratio(update_norm: float, param_norm: float) -> float:
    """Update-to-weight ratio; Inf for an update to zero weights, NaN when either is non-finite.

    Example:
      >>> update_ratio(0.01, 2.0), update_ratio(1.0, 0.0), update_ratio(0.0, 0.0)
      (0.005, inf, 0.0)
    """
    if not (math.isfinite(update_norm) and math.isfinite(param_norm)):
        return float("nan")
    if param_norm > 0:
        return update_norm / param_norm
    return float("inf") if update_norm > 0 else 0.0


def measured_fields(
    *,
    grad_sq: Sequence[float] | None = None,
    param_sq: Sequence[float] | None = None,
    update_sq: Sequence[float] | None = None,
    totals: tuple[float, float, float] | None = None,
) -> dict:
    """Step-record fields from sums of squares measured on the device.

    Args:
      grad_sq, param_sq, update_sq: per-layer sums of squares of the gradient (unscaled), the
        parameters before the update and the update, in the header's layer order; None when not
        measured this step.
      totals: ``(gradient, parameters, update)`` global sums of squares, for steps without
        per-layer detail (ignored for a statistic whose per-layer sums are given).

    Returns:
      ``grad_norm``, ``param_norm``, ``update_norm`` (global) and ``layers`` (per-layer norms,
      update ratios and non-finite flags), each present only when measured.

    Example:
      >>> f = measured_fields(grad_sq=[9.0, 16.0], param_sq=[4.0, 0.0], update_sq=[0.01, 0.0])
      >>> f["grad_norm"], f["layers"]["grad_norm"], f["layers"]["update_ratio"]
      (5.0, [3.0, 4.0], [0.05, 0.0])
      >>> measured_fields(totals=(4.0, 1.0, float("nan")))
      {'grad_norm': 2.0, 'param_norm': 1.0, 'update_norm': nan}
    """
    fields: dict = {}
    layers: dict = {}
    per_layer = {"grad": grad_sq, "param": param_sq, "update": update_sq}
    for i, (name, sums) in enumerate(per_layer.items()):
        if sums is not None:
            fields[f"{name}_norm"] = norm_from_sum(sum(sums))
            layers[f"{name}_norm"] = [norm_from_sum(v) for v in sums]
        elif totals is not None:
            fields[f"{name}_norm"] = norm_from_sum(totals[i])
    if grad_sq is not None and (param_sq is not None or not all(map(math.isfinite, grad_sq))):
        layers["grad_nonfinite"] = [0.0 if math.isfinite(v) else 1.0 for v in grad_sq]
    if param_sq is not None:
        layers["param_nonfinite"] = [0.0 if math.isfinite(v) else 1.0 for v in param_sq]
        if update_sq is not None:
            layers["update_ratio"] = [update_ratio(u, p) for u, p in zip(layers["update_norm"], layers["param_norm"])]
    if layers:
        fields["layers"] = layers
    return fields
