"""A signal clause's predicate over a series, all columns (layers) at once: the signal function,
the comparison, ``within:`` windows and the ``for``/``at``/``min_frac`` runs. Cached per clause.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from diag.engine import signals
from diag.engine.conditions.clause import OPS, Clause
from diag.engine.rolling import column_reduce, first_true


# A binding that names one column (a scalar series, the first layer that fired) gets that column's
# attributes alone; past this many distinct columns (per-layer bindings ask for every layer) they
# are computed for all columns in one pass.
_FEW_COLUMNS = 4


@dataclass
class SignalResult:
    """A signal clause evaluated over every layer (or the one scalar column) at once."""

    steps: np.ndarray
    fired: np.ndarray  # (columns,) bool
    start: np.ndarray  # (columns,) first index of the qualifying run
    measured: np.ndarray  # (columns,) bool: the column has data
    y: np.ndarray  # (points, columns)
    raw: np.ndarray
    # holds(columns=None, rows=slice(None)): where the comparison holds, for those columns (all
    # with None) and rows. Computed again, block by block, when a fired column is described,
    # rather than kept: a kept points x layers bool matrix per clause came to ~100 MB over the
    # built-in knowledge base on 100,000 x 64, faulted in afresh by every diagnosis.
    holds: Callable[..., np.ndarray]
    fired_at: np.ndarray
    _stats: dict | None = None
    _single: dict = field(default_factory=dict)

    def stats(self) -> dict:
        """Per-column attributes, computed for all columns at once (a few passes, not one per layer)."""
        if self._stats is None:
            self._stats = _column_stats(self)
        return self._stats

    def column_stats(self, j: int) -> dict:
        """The attributes of column ``j``: from the all-column pass once several columns were asked for."""
        if self._stats is None and (j in self._single or len(self._single) < _FEW_COLUMNS):
            if j not in self._single:
                self._single[j] = _column_stats(self, np.array([j]))
            return {name: values[j] for name, values in self._single[j].items()}
        return {name: values[j] for name, values in self.stats().items()}


def _column_stats(r: SignalResult, wanted: np.ndarray | None = None) -> dict:
    """Attributes of the fired columns (of ``wanted``, default all), from the rows where each holds."""
    n, cols = r.y.shape
    nan = np.full(cols, np.nan)
    out = {k: nan.copy() for k in ("value", "raw", "peak", "low", "count", "frac", "last")}
    out["last_true"] = np.full(cols, -1)
    fired = np.flatnonzero(r.fired) if wanted is None else wanted[r.fired[wanted]]
    if not n or not fired.size:
        return out
    start = np.clip(r.start[fired], 0, n - 1)
    # Copying most columns costs more than reducing them all: past half, reduce every column and
    # keep the fired ones' results.
    columns = fired if fired.size <= cols // 2 else None
    width = fired.size if columns is not None else cols
    peak, low = np.full(width, -np.inf), np.full(width, np.inf)
    count, last = np.zeros(width, dtype=np.int64), np.full(width, -1)
    for rows in row_blocks(n, width):
        hold = r.holds(columns, rows)
        held = count_true(hold)
        if not held.any():  # the usual block: the condition holds nowhere in it
            continue
        y = r.y[rows] if columns is None else r.y[rows][:, columns]
        with np.errstate(invalid="ignore"):
            np.maximum(peak, np.max(y, axis=0, where=hold, initial=-np.inf), out=peak)
            np.minimum(low, np.min(y, axis=0, where=hold, initial=np.inf), out=low)
        count += held
        # The last row that holds in this block: the first of its reversed rows.
        some = held > 0
        last[some] = rows.start + len(hold) - 1 - first_true(hold[::-1])[some]
    if columns is None:
        peak, low, count, last = peak[fired], low[fired], count[fired], last[fired]
    value = r.y[start, fired]
    out["value"][fired] = value
    out["raw"][fired] = r.raw[start, fired]
    out["peak"][fired] = np.where(np.isneginf(peak), value, peak)
    out["low"][fired] = np.where(np.isposinf(low), value, low)
    out["count"][fired] = count
    out["frac"][fired] = count / n
    out["last"][fired] = r.y[-1, fired]
    out["last_true"][fired] = last
    return out


# Per-layer predicates are read in blocks of rows of about this many values (4 MB of float64, a
# 512 KB bool block): each block's comparison, counts and runs stay in the CPU's cache, where
# whole-matrix passes wrote a points x layers bool matrix to memory and read it back for each
# (and faulted it in afresh). A scalar series is one block.
_BLOCK_VALUES = 1 << 19


def row_blocks(n: int, columns: int) -> list[slice]:
    """Consecutive row slices covering ``n`` rows of ``columns`` columns, each about ``_BLOCK_VALUES``."""
    size = max(_BLOCK_VALUES // max(columns, 1), 1)
    return [slice(lo, min(lo + size, n)) for lo in range(0, n, size)]


def count_true(hold: np.ndarray) -> np.ndarray:
    """True points per column: the bools' bytes summed as int32 (count_nonzero(axis=0) sums as
    intp after a bool pass, ~1.4x slower on 100,000 x 64), several rows per inner loop."""
    return column_reduce(np.add, hold.view(np.uint8), dtype=np.int32)


def base_columns(env, name: str):
    trace = env.trace
    if not trace.has(name):
        return None
    if name in trace.layer_columns:
        mask = trace.layer_present[name]
        if mask.all():  # the common case: no copy of a (steps, layers) matrix
            return trace.steps, trace.layer_columns[name]
        matrix = trace.layer_matrix(name)
        return matrix.steps, matrix.values
    series = trace.series(name)
    return series.steps, series.values


def _transform_key(clause: Clause) -> tuple:
    return (clause.series, clause.smooth, clause.fn, tuple(sorted(clause.args.items())), clause.other,
            clause.other_smooth)


def _transform(clause: Clause, env):
    key = ("y", *_transform_key(clause))
    if key in env.cache:
        return env.cache[key]
    base = base_columns(env, clause.series)
    if base is None:
        env.cache[key] = None
        return None
    steps, raw = base
    spec = signals.SIGNALS[clause.fn]
    source = signals.avg(raw, clause.smooth) if clause.smooth > 1 else raw
    if spec.pair:
        other = base_columns(env, clause.other)
        if other is None:
            env.cache[key] = None
            return None
        o_steps, o_values = other
        if clause.other_smooth > 1:
            o_values = signals.avg(o_values, clause.other_smooth)
        y = spec.fn(source, signals.align(steps, o_steps, o_values))
    else:
        y = spec.fn(source, **clause.args)
    out = (steps, np.asarray(raw, dtype=np.float64), np.asarray(y, dtype=np.float64))
    env.cache[key] = out
    return out


def _within_slice(steps: np.ndarray, within) -> slice:
    if not len(steps):
        return slice(0, 0)
    first, last = float(steps[0]), float(steps[-1])

    def to_step(bound):
        kind, v = bound
        return first + v * (last - first) if kind == "pct" else v

    lo = 0 if within[0] is None else int(np.searchsorted(steps, to_step(within[0]), side="left"))
    hi = len(steps) if within[1] is None else int(np.searchsorted(steps, to_step(within[1]), side="right"))
    return slice(lo, hi)


def _measured(env, clause: Clause, raw: np.ndarray) -> np.ndarray:
    if not len(raw):
        return np.zeros(raw.shape[1], dtype=bool)
    key = ("measured", clause.series, clause.within)
    if key not in env.cache:
        # Most columns have a number in their first row; only the others need a full scan.
        measured = ~np.isnan(raw[0])
        rest = np.flatnonzero(~measured)
        if rest.size:
            measured[rest] = ~np.isnan(raw[:, rest]).all(axis=0)
        env.cache[key] = measured
    return env.cache[key]


def _comparison_holds(clause: Clause, y: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Where the clause's comparison holds over ``y`` (``raw``: the recorded values behind it).

    NaN (a NaN value, or missing history at the start of a window) never satisfies a
    comparison; +-Inf compares as the number it is. With non_finite_is_true, an infinite
    *recorded* value holds even where the derived value is NaN (inf/inf); a recorded NaN does
    not (NaN is not a magnitude: a NaN gradient norm is not a spike).
    """
    with np.errstate(invalid="ignore"):
        hold = OPS[clause.op](y, clause.value)
    if clause.op == "!=":  # the only comparison NaN satisfies
        hold &= ~np.isnan(y)
    if clause.non_finite_is_true:
        hold |= np.isinf(raw)
    return hold


def _scan(clause: Clause, holds, n: int, columns: int) -> tuple[np.ndarray, np.ndarray]:
    """``fired`` and ``start`` (the first row of the first qualifying run) per column, for ``at:
    any`` (a run of ``for`` points) or ``at: all``, in one pass over row blocks.

    A run may straddle two blocks: the last ``for - 1`` rows of a block are searched again with
    the next. The pass stops early once every column is settled, unless ``min_frac`` needs the
    count of every row.
    """
    need = clause.for_
    counting = clause.min_frac > 0
    count = np.zeros(columns, dtype=np.int64)
    every = clause.at == "all"
    alive = np.ones(columns, dtype=bool)  # at: all: no row has failed yet
    start = np.full(columns, -1)
    carry = None  # the previous rows a run may start in
    for rows in row_blocks(n, columns):
        hold = holds(None, rows)
        if counting:
            count += count_true(hold)
        if every:
            alive &= column_reduce(np.logical_and, hold)
            if not alive.any():
                break
            continue
        todo = np.flatnonzero(start < 0)
        if todo.size:
            window = hold if carry is None else np.concatenate([carry, hold])
            found = signals.first_run(window if todo.size == columns else window[:, todo], need)
            hit = found >= 0
            start[todo[hit]] = rows.start - (len(window) - len(hold)) + found[hit]
            carry = window[max(len(window) - (need - 1), 0):] if need > 1 else None
        elif not counting:
            break
    if every:
        start = np.where(alive, 0, -1)
    fired = start >= 0
    if counting:
        fired &= count >= clause.min_frac * n
    return fired, start


def signal_result(clause: Clause, env) -> SignalResult | None:
    """The clause's predicate over all columns, cached for per-layer bindings and for every clause
    that asks the same (rules share symptoms: the knowledge base has the same predicate in
    several rules)."""
    key = ("r", *_transform_key(clause), clause.op, clause.value, clause.for_, clause.at, clause.min_frac,
           clause.within, clause.non_finite_is_true)
    if key in env.cache:
        return env.cache[key]
    transformed = _transform(clause, env)
    if transformed is None:
        env.cache[key] = None
        return None
    steps, raw, y = transformed
    window = _within_slice(steps, clause.within)
    steps, raw, y = steps[window], raw[window], y[window]
    if y.ndim == 1:
        y, raw = y[:, None], raw[:, None]

    def holds(columns: np.ndarray | None = None, rows: slice = slice(None)) -> np.ndarray:
        y_rows, raw_rows = y[rows], raw[rows]
        if columns is None:
            return _comparison_holds(clause, y_rows, raw_rows)
        return _comparison_holds(clause, y_rows[:, columns],
                                 raw_rows[:, columns] if clause.non_finite_is_true else raw_rows)

    if clause.is_layer_signal:
        # A per-layer column that is NaN at every point was not measured (null in the trace).
        measured = _measured(env, clause, raw)
    else:
        measured = np.full(y.shape[1], len(raw) > 0)
    n, columns = y.shape
    need = clause.for_
    if n == 0:
        start = np.full(columns, -1)
        fired = np.zeros(columns, dtype=bool)
    elif clause.at == "last":
        # Only the last `need` points decide; the start of the trailing run is searched only
        # for the columns that fired.
        fired = holds(None, slice(n - need, n)).all(axis=0) if n >= need else np.zeros(columns, dtype=bool)
        start = np.full(columns, -1)
        for j in np.flatnonzero(fired):
            falses = np.flatnonzero(~holds(np.array([j]))[:, 0])
            start[j] = falses[-1] + 1 if falses.size else 0
        if clause.min_frac > 0:
            fired &= count_true(holds()) >= clause.min_frac * n
    else:
        fired, start = _scan(clause, holds, n, columns)
    if clause.min_frac > 0 and n:
        start = np.where(fired, start, -1)
    fired &= measured
    fired_at = np.where(fired, np.minimum(start + (need - 1 if clause.at == "any" else 0), max(n - 1, 0)), -1)
    result = SignalResult(steps, fired, start, measured, y, raw, holds, fired_at)
    env.cache[key] = result
    return result
