"""Trailing-window kernels under the signal functions: sums, extremes, medians and runs along axis 0.

Every kernel takes ``(points,)`` or ``(points, columns)`` arrays and works on all columns at once,
with no Python loop over points: sums and runs by binary decomposition of the window (O(n log w)),
extremes by van Herk/Gil-Werman block scans (O(n) whatever the window), medians by selection in
bounded chunks. They are exact (no difference of cumulative sums that a huge value would wipe
out) and import nothing beyond numpy: ``scipy.ndimage`` alone takes longer to import than
``diag explain`` takes on a small trace, so it is loaded only for the one case where it is faster
(the median of a long single series).

Example:
  >>> import numpy as np
  >>> rolling_extreme(np.array([3.0, 1.0, 4.0, 1.0, 5.0]), 2, np.maximum).tolist()
  [3.0, 3.0, 4.0, 4.0, 5.0]
  >>> first_run(np.array([False, True, True, False, True]), 2)
  1
"""

from __future__ import annotations

import operator

import numpy as np

# Above this many points a single series' median goes to scipy.ndimage (C selection, ~7x faster
# than numpy's per-window partition at 100,000 points); below it, or for several columns (where
# ndimage's 2-D filter is the slower one), numpy. Both give the same numbers (tests/test_signals.py).
SCIPY_MEDIAN_POINTS = 20_000
_CHUNK_ELEMENTS = 1 << 21  # windows gathered per partition call: about 16 MB of float64
# Column reductions lay this many values side by side per inner loop (see column_reduce).
_ROW_VALUES = 1024


def shift(x: np.ndarray, k: int, fill: float = np.nan) -> np.ndarray:
    """``x`` moved ``k`` points later along axis 0; the first ``k`` points are ``fill``."""
    out = np.full_like(x, fill)
    if k < len(x):
        out[k:] = x[: len(x) - k]
    return out


def window_sum(x: np.ndarray, window: int) -> np.ndarray:
    """``out[t] = x[t-window+1 .. t].sum(axis=0)`` (fewer points at the start), without subtraction.

    A difference of cumulative sums loses everything after one huge value: a loss of 1e23 at a
    divergence leaves ``csum[t] - csum[t-w]`` at 0 for every later window, so a run that blew up
    and came back would look like it had a loss of 0. Sums of power-of-two windows built by
    pairwise addition (``S_{a+b}(i) = S_a(i) + S_b(i+a)``) only ever add: O(n log w), exact to
    rounding.
    """
    n = len(x)
    if not n:
        return x.copy()
    w = min(max(int(window), 1), n)
    padded = np.concatenate([np.zeros((w - 1,) + x.shape[1:]), x]) if w > 1 else x
    return np.array(_forward_windows(padded, w, operator.add)[:n], dtype=np.float64)


def rolling_sum(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of the finite values among the last ``window`` points (inclusive)."""
    ok = np.isfinite(x)
    filled = np.where(ok, x, 0.0)
    return window_sum(filled, window), window_sum(ok.astype(np.float64), window)


def rolling_extreme(x: np.ndarray, window: int, pick) -> np.ndarray:
    """``out[t] = pick.reduce(x[max(0, t-window+1) .. t])``, for ``pick`` ``np.maximum`` or ``np.minimum``.

    van Herk/Gil-Werman: cut the series, padded in front with ``window - 1`` copies of ``x[0]``
    (which changes no extreme: ``x[0]`` is in every window it pads), into blocks of ``window``
    points; every window is the suffix of one block and the prefix of the next, so two
    accumulates and one ``pick`` give every window in O(n), whatever its length.
    """
    n = len(x)
    w = min(max(int(window), 1), max(n, 1))
    if n == 0 or w == 1:
        return np.array(x, dtype=np.float64)
    tail = (-(n + w - 1)) % w
    padded = np.concatenate([np.repeat(x[:1], w - 1, axis=0), x, np.repeat(x[-1:], tail, axis=0)])
    blocks = padded.reshape((-1, w) + x.shape[1:])
    prefix = pick.accumulate(blocks, axis=1).reshape(padded.shape)
    suffix = pick.accumulate(blocks[:, ::-1], axis=1)[:, ::-1].reshape(padded.shape)
    # The window ending at padded index j = t + w - 1 starts at t.
    return pick(suffix[:n], prefix[w - 1:w - 1 + n])


def rolling_median(x: np.ndarray, window: int) -> np.ndarray:
    """``out[t] = median(x[t-window+1 .. t])`` with history before 0 repeating ``x[0]``; ``window`` odd.

    NaN-free input (callers map non-finite values to +-inf first), so the median is the middle
    order statistic and both implementations below return exactly the same numbers.
    """
    w = max(int(window), 1) | 1
    n = len(x)
    if n == 0:
        return np.array(x, dtype=np.float64)
    if x.ndim == 1 and n > SCIPY_MEDIAN_POINTS:
        from scipy import ndimage  # noqa: PLC0415 - only here: importing it costs more than small traces take

        return ndimage.median_filter(x, size=w, mode="nearest", origin=(w - 1) // 2)
    return median_by_partition(x, w)


def median_by_partition(x: np.ndarray, window: int) -> np.ndarray:
    """``rolling_median`` by numpy alone: each window's middle element by ``np.partition``, in chunks."""
    from numpy.lib.stride_tricks import sliding_window_view

    w = window
    padded = np.concatenate([np.repeat(x[:1], w - 1, axis=0), x])
    windows = sliding_window_view(padded, w, axis=0)  # (n, ..., w), a view: nothing copied yet
    out = np.empty(x.shape, dtype=np.float64)
    rows = max(1, _CHUNK_ELEMENTS // (w * max(1, int(np.prod(x.shape[1:])))))
    middle = w // 2
    for start in range(0, len(x), rows):
        out[start:start + rows] = np.partition(windows[start:start + rows], middle, axis=-1)[..., middle]
    return out


def first_run(hold: np.ndarray, n: int = 1):
    """Index where the first run of at least ``n`` consecutive true points starts, or -1.

    For a ``(points, layers)`` array, one index per layer. Columns with no true point are
    skipped, and runs are found with O(log n) shifted ANDs, so a 100,000 x 64 array costs a
    few milliseconds.
    """
    hold = np.asarray(hold, dtype=bool)
    if hold.ndim == 1:
        return int(first_run(hold[:, None], n)[0])
    n = max(int(n), 1)
    if len(hold) < n:
        return np.full(hold.shape[1], -1)
    if n == 1:
        return first_true(hold)
    out = np.full(hold.shape[1], -1)
    # Reducing along rows is contiguous (fast); find the columns with anything true first.
    cols = np.flatnonzero(column_any(hold))
    if cols.size == 0:
        return out
    h = hold if cols.size == hold.shape[1] else hold[:, cols]
    out[cols] = first_true(_all_in_window(h, n))
    return out


def column_reduce(ufunc: np.ufunc, a: np.ndarray, dtype=None) -> np.ndarray:
    """``ufunc.reduce(a, axis=0, dtype=dtype)`` for a C-contiguous 2-D array, several times faster
    when it has few columns.

    numpy reduces along axis 0 one row at a time: one inner-loop call per row, of only as many
    values as there are columns (64 layers: 64 bytes of bools), so the calls cost more than the
    work. Read as ``g`` rows side by side (a free reshape), the same data makes ``g`` times fewer,
    longer calls; the ``g`` partial results are then reduced per column.
    """
    rows, cols = a.shape
    group = min(_ROW_VALUES // max(cols, 1), rows)
    if group <= 1 or not cols or not a.flags.c_contiguous:
        return ufunc.reduce(a, axis=0, dtype=dtype)
    body = rows - rows % group
    out = ufunc.reduce(ufunc.reduce(a[:body].reshape(-1, group * cols), axis=0, dtype=dtype).reshape(group, cols),
                       axis=0)
    if body < rows:
        out = ufunc(out, ufunc.reduce(a[body:], axis=0, dtype=dtype))
    return out


def column_any(hold: np.ndarray) -> np.ndarray:
    """``hold.any(axis=0)`` for a 2-D bool array, by :func:`column_reduce`."""
    return column_reduce(np.logical_or, hold)


def first_true(hold: np.ndarray, first_block: int = 64) -> np.ndarray:
    """Per column of a 2-D bool array, the first row that is true, or -1.

    Rows are read in blocks that grow fourfold, and a column leaves the search at its first hit:
    a condition that holds from the start (common: ``x > 0``) is settled in the first block,
    where an ``argmax`` over all rows of a (100,000 x 64) array costs ~20 ms. A column that
    never holds is read once, by contiguous row blocks.
    """
    rows, cols = hold.shape
    out = np.full(cols, -1)
    todo = np.arange(cols)
    start, size = 0, max(int(first_block), 1)
    while start < rows and todo.size:
        block = hold[start:start + size] if todo.size == cols else hold[start:start + size, todo]
        hit = column_any(block)
        if hit.any():
            out[todo[hit]] = start + np.argmax(block[:, hit], axis=0)
            todo = todo[~hit]
        start += size
        size *= 4
    return out


def _all_in_window(h: np.ndarray, n: int) -> np.ndarray:
    """``out[i] = h[i:i+n].all(axis=0)``."""
    return _forward_windows(h, n, operator.and_)


def _forward_windows(x: np.ndarray, w: int, combine) -> np.ndarray:
    """``out[i] = combine(x[i], ..., x[i+w-1])`` for every full window, by binary decomposition of
    ``w``: windows of power-of-two lengths, R_{2k}(i) = R_k(i) . R_k(i+k), and R_{a+b}(i) =
    R_a(i) . R_b(i+a). O(n log w), and only ever combining (no subtraction)."""
    total = len(x)
    acc, a = None, 0
    power, k = x, 1
    while True:
        if w & 1:
            if acc is None:
                acc, a = power, k
            else:
                length = total - (a + k) + 1
                acc = combine(acc[:length], power[a:a + length])
                a += k
        w >>= 1
        if not w:
            return acc
        length = len(power) - k
        power = combine(power[:length], power[k:k + length])
        k *= 2
