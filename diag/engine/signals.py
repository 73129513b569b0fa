"""Vectorized time-series functions that rules read the trace through.

Every function maps the values of one recorded series to a derived series of the same length:
``x`` is ``(points,)`` for a scalar series or ``(points, layers)`` for a per-layer one, and windows
are counted in logged points, trailing (a value at point ``t`` sees points ``t-window+1 .. t``, or
``t-window .. t-1`` for functions that compare a point with its past). Nothing here loops over
steps in Python, so a 100,000-step trace costs milliseconds.

The set is closed: rules pick a function by name (``fn: ratio_to_median(window=50)``) from
``SIGNALS``; adding one is a code change with a test, never something a rule file can do.

Example:
  >>> import numpy as np
  >>> ratio_to_running_max(np.array([1.0, 4.0, 2.0])).tolist()
  [1.0, 1.0, 0.5]
  >>> ratio_to_median(np.array([1.0, 1.0, 1.0, 9.0]), window=3).tolist()[1:]
  [1.0, 1.0, 9.0]

The windowed kernels these are built on (sums, extremes, medians, runs) are in
``diag.engine.rolling``; ``first_run`` is re-exported here for the condition evaluator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from diag.engine.rolling import first_run, rolling_extreme, rolling_median, rolling_sum  # noqa: F401 - first_run re-exported
from diag.engine.rolling import shift as _shift

# --------------------------------------------------------------------------- helpers


def _as_float(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _finite_or(x: np.ndarray, fill: float) -> np.ndarray:
    return np.where(np.isfinite(x), x, fill)


def _window(window: int, n: int) -> int:
    if window < 1:
        raise ValueError(f"window must be at least 1 point, got {window}")
    return min(int(window), max(n, 1))


# --------------------------------------------------------------------------- pointwise


def value(x: np.ndarray) -> np.ndarray:
    """The recorded values themselves."""
    return _as_float(x)


def non_finite(x: np.ndarray) -> np.ndarray:
    """1.0 where the value is NaN or +-Inf, else 0.0."""
    return (~np.isfinite(_as_float(x))).astype(np.float64)


def is_zero(x: np.ndarray) -> np.ndarray:
    """1.0 where the value is exactly zero."""
    return (_as_float(x) == 0.0).astype(np.float64)


def abs_(x: np.ndarray) -> np.ndarray:
    """Absolute value."""
    return np.abs(_as_float(x))


def log10(x: np.ndarray) -> np.ndarray:
    """Base-10 logarithm (-inf at 0, NaN below)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.log10(_as_float(x))


# --------------------------------------------------------------------------- windows


def delta(x: np.ndarray, window: int = 1) -> np.ndarray:
    """``x[t] - x[t-window]`` (NaN for the first ``window`` points)."""
    x = _as_float(x)
    return x - _shift(x, _window(window, len(x)))


def rel_change(x: np.ndarray, window: int = 1) -> np.ndarray:
    """``(x[t] - x[t-window]) / |x[t-window]|``."""
    x = _as_float(x)
    past = _shift(x, _window(window, len(x)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return (x - past) / np.abs(past)


def avg(x: np.ndarray, window: int = 10) -> np.ndarray:
    """Mean of the finite values among the last ``window`` points."""
    x = _as_float(x)
    total, count = rolling_sum(x, _window(window, len(x)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return total / count


def std(x: np.ndarray, window: int = 10) -> np.ndarray:
    """Standard deviation of the finite values among the last ``window`` points."""
    x = _as_float(x)
    w = _window(window, len(x))
    total, count = rolling_sum(x, w)
    # A diverged loss (1e200) squares to inf: an infinite spread is the right answer, not a warning.
    with np.errstate(over="ignore"):
        total2, _ = rolling_sum(x * x, w)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mean = total / count
        return np.sqrt(np.maximum(total2 / count - mean * mean, 0.0))


def slope(x: np.ndarray, window: int = 10) -> np.ndarray:
    """Least-squares slope per logged point over the last ``window`` points (finite points only)."""
    x = _as_float(x)
    w = _window(window, len(x))
    t = np.arange(len(x), dtype=np.float64).reshape((-1,) + (1,) * (x.ndim - 1))
    t = np.broadcast_to(t, x.shape)
    tx = np.where(np.isfinite(x), t, np.nan)
    sx, n = rolling_sum(tx, w)
    sy, _ = rolling_sum(x, w)
    sxy, _ = rolling_sum(tx * x, w)
    sxx, _ = rolling_sum(tx * tx, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (n * sxy - sx * sy) / (n * sxx - sx * sx)
    return np.where(n >= 2, out, np.nan)


def rolling_min(x: np.ndarray, window: int = 10) -> np.ndarray:
    """Minimum of the last ``window`` points (non-finite points are ignored)."""
    x = _as_float(x)
    w = _window(window, len(x))
    out = rolling_extreme(_finite_or(x, np.inf), w, np.minimum)
    return np.where(np.isinf(out), np.nan, out)


def rolling_max(x: np.ndarray, window: int = 10) -> np.ndarray:
    """Maximum of the last ``window`` points (non-finite points are ignored)."""
    x = _as_float(x)
    w = _window(window, len(x))
    out = rolling_extreme(_finite_or(x, -np.inf), w, np.maximum)
    return np.where(np.isinf(out), np.nan, out)


def median_before(x: np.ndarray, window: int = 50) -> np.ndarray:
    """Median of the ``window`` points before each point (the point itself excluded).

    The window is rounded up to an odd number of points; the first points use the history they
    have. Non-finite history counts as +Inf, so a few NaN points do not move the median.
    """
    x = _as_float(x)
    w = max(int(window), 1) | 1  # odd, so the trailing window is exact; history before 0 repeats x[0]
    if not len(x):
        return x.copy()
    filled = _finite_or(x, np.inf)
    inclusive = rolling_median(filled, w)
    out = _shift(inclusive, 1)
    # The first points have less history than a window: use what there is, not copies of x[0]
    # (padding would make early growth look like a spike against the first value).
    # (np.median would do, but it imports numpy.ma, a tenth of a small explain's time.)
    for t in range(1, min(w, len(x))):
        ordered = np.sort(filled[:t], axis=0)
        out[t] = ordered[t // 2] if t % 2 else (ordered[t // 2 - 1] + ordered[t // 2]) / 2
    return out


def ratio_to_median(x: np.ndarray, window: int = 50) -> np.ndarray:
    """``x[t]`` over the median of the ``window`` points before it (a spike detector)."""
    x = _as_float(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return x / median_before(x, window)


def zscore(x: np.ndarray, window: int = 50) -> np.ndarray:
    """Standard score of ``x[t]`` against the ``window`` points before it."""
    x = _as_float(x)
    mean = _shift(avg(x, window), 1)
    dev = _shift(std(x, window), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (x - mean) / dev


# --------------------------------------------------------------------------- relative to history


def running_max(x: np.ndarray) -> np.ndarray:
    """Largest finite value so far."""
    return np.fmax.accumulate(np.where(np.isfinite(x), x, np.nan), axis=0)


def running_min(x: np.ndarray) -> np.ndarray:
    """Smallest finite value so far."""
    return np.fmin.accumulate(np.where(np.isfinite(x), x, np.nan), axis=0)


def ratio_to_running_max(x: np.ndarray) -> np.ndarray:
    """``x[t]`` over the largest finite value up to ``t`` (a collapse detector)."""
    x = _as_float(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return x / running_max(x)


def ratio_to_running_min(x: np.ndarray) -> np.ndarray:
    """``x[t]`` over the smallest finite value up to ``t`` (a divergence detector for a loss)."""
    x = _as_float(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return x / running_min(x)


def first_finite(x: np.ndarray) -> np.ndarray:
    """The first finite value of each column (NaN for a column without one), shape ``x.shape[1:]``."""
    x = _as_float(x)
    ok = np.isfinite(x)
    idx = np.argmax(ok, axis=0)
    first = np.take_along_axis(x, np.expand_dims(idx, 0), axis=0)[0] if x.ndim > 1 else x[idx]
    return np.where(ok.any(axis=0), first, np.nan)


def ratio_to_first(x: np.ndarray) -> np.ndarray:
    """``x[t]`` over the first finite value (how far a loss has come from its start)."""
    x = _as_float(x)
    with np.errstate(divide="ignore", invalid="ignore"):
        return x / first_finite(x)


def late_share(x: np.ndarray, percent: int = 20) -> np.ndarray:
    """Share of the fall since the first ``percent``% of the points made in the last ``percent``%.

    With ``w`` = ``percent``% of the logged points (the whole series, so the windows are a share of
    the run however often it logged), the value at ``t`` is ``(mean(x[t-2w+1..t-w]) -
    mean(x[t-w+1..t])) / (mean(x[0..w-1]) - mean(x[t-w+1..t]))``: how much of the progress since
    the start came in the latest window. A loss falling at a steady pace gives ``w / (t - w)``
    (0.25 at the end of a run, with ``percent=20``); one that stopped falling gives about 0.
    NaN where the series has not fallen since its first window (nothing to share) and before
    ``2w`` points. Window means are over finite points (as ``avg``), windows at least one point.

    Example:
      >>> round(float(late_share(np.array([4.0, 3, 2.5, 2.2, 2.1, 2.05, 2.02, 2.01, 2.0, 2.0]))[-1]), 3)
      0.01
    """
    x = _as_float(x)
    if not 1 <= percent <= 33:
        raise ValueError(f"late_share takes a percent from 1 to 33 (three windows must fit), got {percent}")
    n = len(x)
    w = max(1, int(round(n * percent / 100)))
    out = np.full_like(x, np.nan)
    if n < 2 * w + 1:
        return out
    mean = avg(x, w)
    start = mean[w - 1]
    earlier = _shift(mean, w)
    fell = start - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(fell > 0, (earlier - mean) / fell, np.nan)
    out[: 2 * w] = np.nan
    return out


# --------------------------------------------------------------------------- across layers


def ratio_to_layer_max(x: np.ndarray) -> np.ndarray:
    """Per-layer value over the largest layer's value at the same step (for vanishing gradients)."""
    x = _as_float(x)
    if x.ndim == 1:
        return np.ones_like(x)
    if not x.shape[1]:
        return x.copy()
    # fmax skips NaN but not +-inf: the rows whose largest value is not finite (a NaN-only or
    # infinite row, rare) are reduced again over their finite values alone, by max(where=),
    # which skips them without a filled copy of the row but runs ~1.5x slower than fmax.
    top = np.fmax.reduce(x, axis=1, keepdims=True)
    again = np.flatnonzero(~np.isfinite(top[:, 0]))
    if again.size:
        rows = x[again]
        top[again] = np.max(rows, axis=1, where=np.isfinite(rows), initial=-np.inf, keepdims=True)
    top[np.isneginf(top)] = np.nan  # a step where no layer has a finite value
    with np.errstate(divide="ignore", invalid="ignore"):
        return x / top


def ratio_to_last_layer(x: np.ndarray) -> np.ndarray:
    """Per-layer value over the last layer's (the output's, layers being in forward order) at the same step.

    Gradients that grow as they flow backward (through depth or time) make the earlier layers'
    gradient norms many times the output layer's: the signature of exploding gradients that a
    global norm hides when it starts high and stays there.
    """
    x = _as_float(x)
    if x.ndim == 1 or not x.shape[1]:
        return np.ones_like(x)
    last = x[:, -1:]
    # A last layer with no gradient (a disconnected head) is no yardstick: NaN, never a spike.
    last = np.where(np.isfinite(last) & (last > 0), last, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        return x / last


# --------------------------------------------------------------------------- pairs


def align(a_steps: np.ndarray, b_steps: np.ndarray, b_values: np.ndarray) -> np.ndarray:
    """The last value of ``b`` recorded at or before each of ``a_steps`` (NaN before b starts)."""
    idx = np.searchsorted(b_steps, a_steps, side="right") - 1
    out = np.where(idx >= 0, b_values[np.clip(idx, 0, None)] if len(b_values) else np.nan, np.nan)
    return out.astype(np.float64)


def gap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a - b`` for two aligned series (e.g. validation loss minus training loss)."""
    return _as_float(a) - _as_float(b)


def ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a / b`` for two aligned series."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return _as_float(a) / _as_float(b)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class SignalSpec:
    """A function rules may name: its parameters (name -> default) and whether it takes a second series."""

    fn: Callable[..., np.ndarray]
    params: dict[str, int] = field(default_factory=dict)
    pair: bool = False
    doc: str = ""


def _spec(fn, pair: bool = False, **params) -> SignalSpec:
    return SignalSpec(fn=fn, params=params, pair=pair, doc=(fn.__doc__ or "").strip().splitlines()[0])


SIGNALS: dict[str, SignalSpec] = {
    "value": _spec(value),
    "non_finite": _spec(non_finite),
    "is_zero": _spec(is_zero),
    "abs": _spec(abs_),
    "log10": _spec(log10),
    "delta": _spec(delta, window=1),
    "rel_change": _spec(rel_change, window=1),
    "avg": _spec(avg, window=10),
    "std": _spec(std, window=10),
    "slope": _spec(slope, window=10),
    "min": _spec(rolling_min, window=10),
    "max": _spec(rolling_max, window=10),
    "ratio_to_median": _spec(ratio_to_median, window=50),
    "zscore": _spec(zscore, window=50),
    "running_max": _spec(running_max),
    "running_min": _spec(running_min),
    "ratio_to_running_max": _spec(ratio_to_running_max),
    "ratio_to_running_min": _spec(ratio_to_running_min),
    "ratio_to_first": _spec(ratio_to_first),
    "late_share": _spec(late_share, percent=20),
    "ratio_to_layer_max": _spec(ratio_to_layer_max),
    "ratio_to_last_layer": _spec(ratio_to_last_layer),
    "gap": _spec(gap, pair=True),
    "ratio": _spec(ratio, pair=True),
}
"""Signal functions by the name rules use."""
