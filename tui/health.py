"""Healthy ranges of per-layer statistics, for highlighting values that are out of range.

The bounds are the starting thresholds of shared/CAUSES.md and the seed documents (a gradient norm
below 1e-6 vanishes, above 100 explodes; an update/weight ratio far from 1e-3; more than half of a
ReLU layer's outputs exactly zero; any non-finite value). They only colour the display: the
diagnosis itself comes from the rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """Values inside [low, high] are healthy; ``None`` leaves a side open."""

    low: float | None
    high: float | None
    why_low: str = ""
    why_high: str = ""

    def verdict(self, value: float | None) -> str | None:
        """``None`` when healthy or unknown, else a short reason (``"non-finite"``, ``"> 100"``)."""
        if value is None:
            return None
        if not math.isfinite(value):
            return "non-finite"
        if self.low is not None and value < self.low:
            return self.why_low or f"< {self.low:g}"
        if self.high is not None and value > self.high:
            return self.why_high or f"> {self.high:g}"
        return None


HEALTHY: dict[str, Range] = {
    "layers.grad_norm": Range(1e-6, 100.0, "vanishing (< 1e-6)", "exploding (> 100)"),
    "layers.update_ratio": Range(1e-5, 1e-1, "too small (< 1e-5)", "too large (> 0.1)"),
    "activations.zero_fraction": Range(None, 0.5, why_high="mostly dead (> 50% zeros)"),
    "activations.saturation_fraction": Range(None, 0.5, why_high="saturated (> 50%)"),
    "layers.grad_nonfinite": Range(None, 0.0, why_high="non-finite gradients"),
    "layers.param_nonfinite": Range(None, 0.0, why_high="non-finite parameters"),
    "activations.nonfinite": Range(None, 0.0, why_high="non-finite outputs"),
}


def verdict(series: str, value: float | None) -> str | None:
    """Why ``value`` of a per-layer ``series`` is out of its healthy range, or ``None``.

    Example:
      >>> verdict("layers.grad_norm", 1e-9)
      'vanishing (< 1e-6)'
      >>> verdict("layers.grad_norm", 0.3) is None
      True
    """
    bounds = HEALTHY.get(series)
    if bounds is None:
        return None if value is None or math.isfinite(value) else "non-finite"
    return bounds.verdict(value)
