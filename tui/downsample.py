"""Reduce long series to what a terminal can show, keeping spikes visible."""

from __future__ import annotations

import numpy as np


def envelope(steps: np.ndarray, values: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``2 * bins`` points: each bin's minimum and maximum, so a one-step spike survives.

    Non-finite values are dropped (plots mark the first non-finite step separately).

    Example:
      >>> import numpy as np
      >>> x, y = envelope(np.arange(1000), np.r_[np.zeros(500), [50.0], np.zeros(499)], 10)
      >>> len(x) <= 20, float(y.max())
      (True, 50.0)
    """
    keep = np.isfinite(values)
    steps, values = steps[keep], values[keep]
    n = len(values)
    if n <= 2 * bins or bins < 1:
        return steps, values
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    starts = edges[:-1]
    lows = np.minimum.reduceat(values, starts)
    highs = np.maximum.reduceat(values, starts)
    x = np.empty(2 * bins, dtype=steps.dtype)
    y = np.empty(2 * bins, dtype=np.float64)
    x[0::2], x[1::2] = steps[starts], steps[edges[1:] - 1]
    y[0::2], y[1::2] = lows, highs
    return x, y


def bin_columns(steps: np.ndarray, matrix: np.ndarray, measured: np.ndarray, bins: int):
    """Average ``log10|value|`` of a (steps, layers) matrix over ``bins`` step ranges.

    Args:
      steps: the step of each row.
      matrix: values, NaN where not finite or not measured.
      measured: False where the statistic does not apply (those NaNs are not "non-finite").
      bins: how many step ranges (columns of the heat view).

    Returns:
      ``(first_steps, mean_log10, nonfinite)``: the first step of each bin, the mean log10 magnitude
      per bin and layer (NaN where nothing finite was recorded), and whether a bin saw a NaN/Inf.
    """
    n = matrix.shape[0]
    bins = max(1, min(bins, n))
    edges = np.linspace(0, n, bins + 1).astype(np.int64)
    starts = edges[:-1]
    finite = np.isfinite(matrix)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(finite & (matrix != 0), np.log10(np.abs(np.where(finite, matrix, 1.0))), np.nan)
    logs = np.where(finite & (matrix == 0), -12.0, logs)  # exact zeros: far below any threshold
    counted = np.isfinite(logs)
    sums = np.add.reduceat(np.where(counted, logs, 0.0), starts, axis=0)
    counts = np.add.reduceat(counted.astype(np.int64), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    # Only a measured NaN/Inf counts: entries the adapter left null are NaN-filled by the loader.
    bad = np.add.reduceat((~finite & measured).astype(np.int64), starts, axis=0) > 0
    return steps[starts], means, bad
