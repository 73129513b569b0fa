"""Short, fixed-width renderings of numbers for tables and status lines."""

from __future__ import annotations

import math


def num(value: float | None, digits: int = 4) -> str:
    """A number in at most about eight characters: ``0.0312``, ``2.85e+03``, ``nan``, ``-``.

    Example:
      >>> num(0.031234), num(2850.9), num(None), num(float("nan")), num(3.0)
      ('0.03123', '2851', '-', 'nan', '3')
    """
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if 1e-3 <= magnitude < 1e5:
        return f"{value:.{digits}g}"
    return f"{value:.2e}"


def rate(value: float | None) -> str:
    """Steps per second, or ``-`` when unknown."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"
