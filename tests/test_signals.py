"""The signal library: vectorized series functions rules read the trace through."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diag.engine import rolling, signals
from diag.engine.notation import NotationError, parse_series

finite_lists = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=60)


def naive_first_run(hold, n):
    run = 0
    for i, h in enumerate(hold):
        run = run + 1 if h else 0
        if run >= n:
            return i - n + 1
    return -1


@settings(max_examples=200, deadline=None)
@given(st.lists(st.booleans(), max_size=40), st.integers(1, 6))
def test_first_run_matches_a_step_by_step_scan(hold, n):
    assert signals.first_run(np.array(hold, dtype=bool), n) == naive_first_run(hold, n)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 300), st.integers(1, 6), st.integers(1, 6), st.floats(0, 1), st.integers(1, 9), st.integers(0, 2**32 - 1))
def test_first_run_and_first_true_match_a_scan_of_each_column(rows, cols, n, density, first_block, seed):
    # Long enough columns and small first blocks that the growing blocks and the columns leaving
    # the search early are exercised; density 0 and 1 included (never / always holds).
    hold = np.random.default_rng(seed).random((rows, cols)) < density ** 3
    assert signals.first_run(hold, n).tolist() == [naive_first_run(hold[:, j], n) for j in range(cols)]
    first = [int(np.flatnonzero(hold[:, j])[0]) if hold[:, j].any() else -1 for j in range(cols)]
    assert rolling.first_true(hold, first_block).tolist() == first


def test_first_run_works_per_layer_column():
    hold = np.array([[0, 1], [1, 1], [1, 0], [1, 0]], dtype=bool)
    assert signals.first_run(hold, 2).tolist() == [1, 0]
    assert signals.first_run(hold, 4).tolist() == [-1, -1]


@settings(max_examples=100, deadline=None)
@given(finite_lists, st.integers(1, 8))
def test_avg_matches_the_mean_of_the_trailing_window(xs, w):
    x = np.array(xs)
    out = signals.avg(x, w)
    for t in range(len(x)):
        window = x[max(0, t - w + 1): t + 1]
        assert out[t] == pytest.approx(window.mean(), rel=1e-6, abs=1e-6)


def test_avg_after_a_huge_value_is_the_mean_of_the_later_window_not_zero():
    # A loss that blew up to 1e23 and came back: the windows after it average the later values.
    x = np.array([1.0, 2.0e23, 1.5, 1.5, 1.5, 1.5])
    out = signals.avg(x, 2)
    assert out[1] == pytest.approx(1.0e23)
    assert out[3:].tolist() == [1.5, 1.5, 1.5]


@settings(max_examples=50, deadline=None)
@given(finite_lists, st.integers(1, 70))
def test_avg_per_layer_columns_match_scalar_columns(xs, w):
    x = np.array(xs)
    both = signals.avg(np.stack([x, 2 * x], axis=1), w)
    assert both[:, 0] == pytest.approx(signals.avg(x, w), rel=1e-9, abs=1e-9)
    assert both[:, 1] == pytest.approx(2 * signals.avg(x, w), rel=1e-9, abs=1e-9)


@settings(max_examples=100, deadline=None)
@given(finite_lists, st.integers(1, 9))
def test_median_before_excludes_the_point_itself(xs, w):
    x = np.array(xs)
    out = signals.median_before(x, w)
    assert math.isnan(out[0])
    size = w | 1
    for t in range(1, len(x)):
        window = x[max(0, t - size): t]
        assert out[t] == pytest.approx(np.median(window), rel=1e-9, abs=1e-9)


def test_slope_of_a_line_is_its_slope_and_ignores_nan():
    x = 3.0 + 0.5 * np.arange(20.0)
    x[7] = np.nan
    out = signals.slope(x, 5)
    assert out[10:] == pytest.approx(np.full(10, 0.5))


def test_ratio_to_running_max_ignores_non_finite_history():
    x = np.array([4.0, np.inf, 2.0, np.nan, 1.0])
    out = signals.ratio_to_running_max(x)
    assert out[[0, 2, 4]].tolist() == [1.0, 0.5, 0.25]


def test_ratio_to_first_uses_the_first_finite_value_per_column():
    x = np.array([[np.nan, 2.0], [4.0, 1.0], [2.0, 4.0]])
    out = signals.ratio_to_first(x)
    assert out[1:].tolist() == [[1.0, 0.5], [0.5, 2.0]]



def test_late_share_tells_a_levelled_off_loss_from_one_still_falling():
    steady = np.linspace(2.0, 1.0, 200)
    levelled = np.concatenate([np.linspace(2.0, 1.2, 100), np.full(100, 1.2)])
    assert signals.late_share(steady, 20)[-1] == pytest.approx(0.25)  # a steady pace: 1 of 4 windows
    assert signals.late_share(levelled, 20)[-1] == pytest.approx(0.0)
    # the windows are a share of the run: logging 10x as often gives the same answer
    assert signals.late_share(np.linspace(2.0, 1.0, 2000), 20)[-1] == pytest.approx(0.25)


def test_late_share_is_undefined_for_a_loss_that_never_fell_and_per_layer():
    rising = np.linspace(1.0, 2.0, 100)
    assert math.isnan(signals.late_share(rising, 20)[-1])
    both = np.stack([np.linspace(2.0, 1.0, 100), rising], axis=1)
    last = signals.late_share(both, 20)[-1]
    assert last[0] == pytest.approx(0.25) and math.isnan(last[1])
    assert np.isnan(signals.late_share(np.linspace(2.0, 1.0, 100), 20)[:40]).all()  # two windows first
    with pytest.raises(ValueError, match="percent from 1 to 33"):
        signals.late_share(rising, 50)


def test_a_spike_stands_out_against_its_running_median():
    x = np.ones(100)
    x[60] = 50.0
    out = signals.ratio_to_median(x, 50)
    assert out[60] == 50.0 and np.nanmax(np.delete(out, 60)) == 1.0


def test_align_takes_the_last_value_at_or_before_each_step():
    out = signals.align(np.array([0, 5, 10, 15]), np.array([4, 10]), np.array([1.0, 2.0]))
    assert np.isnan(out[0]) and out[1:].tolist() == [1.0, 2.0, 2.0]


def test_rolling_min_and_max_skip_non_finite_points():
    x = np.array([3.0, np.nan, 1.0, 5.0, np.inf])
    assert signals.rolling_min(x, 2).tolist()[2:] == [1.0, 1.0, 5.0]
    assert signals.rolling_max(x, 2).tolist()[2:] == [1.0, 5.0, 5.0]


def test_ratio_to_layer_max_compares_layers_at_the_same_step():
    x = np.array([[1e-8, 1.0], [2.0, 4.0]])
    assert signals.ratio_to_layer_max(x).tolist() == [[1e-8, 1.0], [0.5, 1.0]]


def test_every_registered_signal_keeps_the_series_length():
    x = np.abs(np.random.default_rng(0).normal(size=(30, 3))) + 0.1
    for name, spec in signals.SIGNALS.items():
        out = spec.fn(x, x) if spec.pair else spec.fn(x)
        assert out.shape == x.shape, name


@pytest.mark.parametrize("text, expected", [
    ("1+1x2", [1.0, 2.0, 3.0]),
    ("5-2x2", [5.0, 3.0, 1.0]),
    ("7x2", [7.0, 7.0, 7.0]),
    ("_ _x2 1", [None, None, None, 1.0]),
    ("inf -inf", [math.inf, -math.inf]),
    ("1e-3 2.5e2", [0.001, 250.0]),
])
def test_series_notation_expands_like_promtool(text, expected):
    assert parse_series(text) == expected


def test_series_notation_keeps_nan_as_a_value():
    assert math.isnan(parse_series("nan")[0])


@pytest.mark.parametrize("text", ["1+x3", "abc", "1+1", "_xz", "1x99999999"])
def test_series_notation_rejects_malformed_terms(text):
    with pytest.raises(NotationError):
        parse_series(text)


def test_ratio_to_last_layer_compares_each_layer_with_the_output_layer():
    x = np.array([[40.0, 60.0, 0.8], [1.0, 2.0, 1.0]])
    assert signals.ratio_to_last_layer(x).tolist() == [[50.0, 75.0, 1.0], [1.0, 2.0, 1.0]]


def test_ratio_to_last_layer_is_nan_when_the_last_layer_has_no_gradient():
    out = signals.ratio_to_last_layer(np.array([[1.0, 0.0], [1.0, np.inf]]))
    assert np.isnan(out).all()


# The kernels of diag.engine.rolling against scipy.ndimage, which they replaced (scipy takes
# longer to import than `diag explain` may take): the same numbers, not approximately the same.
series_with_gaps = st.lists(st.one_of(st.floats(-1e6, 1e6, allow_nan=False), st.just(math.inf), st.just(-math.inf)),
                            min_size=1, max_size=80)


@settings(max_examples=150, deadline=None)
@given(series_with_gaps, st.integers(1, 90), st.integers(1, 3))
def test_rolling_extremes_equal_scipy_ndimage_filters(xs, w, columns):
    from scipy import ndimage

    from diag.engine.rolling import rolling_extreme

    x = np.stack([np.roll(np.array(xs), c) for c in range(columns)], axis=1)
    w_eff = min(w, len(x))
    origin = (w_eff - 1) // 2
    expected_max = ndimage.maximum_filter1d(x, w_eff, axis=0, mode="nearest", origin=origin)
    expected_min = ndimage.minimum_filter1d(x, w_eff, axis=0, mode="nearest", origin=origin)
    assert np.array_equal(rolling_extreme(x, w, np.maximum), expected_max)
    assert np.array_equal(rolling_extreme(x, w, np.minimum), expected_min)
    assert np.array_equal(rolling_extreme(x[:, 0], w, np.maximum), expected_max[:, 0])


@settings(max_examples=150, deadline=None)
@given(series_with_gaps, st.integers(1, 90), st.integers(1, 3))
def test_median_by_partition_equals_scipy_ndimage_median_filter(xs, w, columns):
    from scipy import ndimage

    from diag.engine.rolling import median_by_partition

    x = np.stack([np.roll(np.array(xs), c) for c in range(columns)], axis=1)
    size = w | 1
    expected = ndimage.median_filter(x, size=(size, 1), mode="nearest", origin=((size - 1) // 2, 0))
    assert np.array_equal(median_by_partition(x, size), expected)
    assert np.array_equal(median_by_partition(x[:, 0], size), expected[:, 0])


def test_a_long_series_takes_the_scipy_median_and_gets_the_numpy_numbers():
    from diag.engine import rolling

    x = np.random.default_rng(3).lognormal(size=rolling.SCIPY_MEDIAN_POINTS + 501)
    x[::97] = np.inf
    assert np.array_equal(rolling.rolling_median(x, 51), rolling.median_by_partition(x, 51))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 40), st.integers(1, 6), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_signal_column_attributes_match_a_column_by_column_reading(n, cols, seed, density):
    """What a fired signal reports (peak, low, count, last point that held, ...), all columns at once or one."""
    from diag.engine.conditions.windows import SignalResult

    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, cols))
    y[rng.random((n, cols)) < 0.1] = np.nan
    hold = rng.random((n, cols)) < density
    fired = hold.any(axis=0) & (rng.random(cols) < 0.8)
    start = np.where(fired, np.argmax(hold, axis=0), -1)
    r = SignalResult(steps=np.arange(n), fired=fired, start=start, measured=np.ones(cols, dtype=bool), y=y,
                     raw=2 * y, holds=lambda columns=None, rows=slice(None): (hold if columns is None else hold[:, columns])[rows],
                     fired_at=start)
    every = r.stats()
    for j in range(cols):
        one = SignalResult(**{k: getattr(r, k) for k in ("steps", "fired", "start", "measured", "y", "raw", "holds",
                                                          "fired_at")}).column_stats(j)
        if not fired[j]:
            assert np.isnan(every["peak"][j]) and every["last_true"][j] == -1 and one["last_true"] == -1
            continue
        held = y[hold[:, j], j]
        expected = {"value": y[start[j], j], "raw": 2 * y[start[j], j], "count": hold[:, j].sum(),
                    "frac": hold[:, j].sum() / n, "last": y[-1, j], "last_true": np.flatnonzero(hold[:, j])[-1],
                    "peak": held.max(), "low": held.min()}
        for name, value in expected.items():
            for got in (every[name][j], one[name]):
                assert (np.isnan(got) and np.isnan(value)) or got == value, (name, j)


special_floats = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -1.0, 2.5, 1e-8])


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 12), st.integers(1, 5), st.lists(special_floats, min_size=60, max_size=60), st.integers(0, 2**32 - 1))
def test_ratio_to_layer_max_and_count_true_match_a_row_by_row_reading(rows, cols, specials, seed):
    from diag.engine.conditions.windows import count_true

    x = np.random.default_rng(seed).normal(size=(rows, cols))
    x.flat[: rows * cols: 3] = specials[: len(x.flat[: rows * cols: 3])]  # NaN, +-inf, zeros mixed in
    expected = np.full_like(x, np.nan)
    for i, row in enumerate(x):
        finite = row[np.isfinite(row)]
        if finite.size:
            with np.errstate(divide="ignore", invalid="ignore"):
                expected[i] = row / finite.max()
    assert np.array_equal(signals.ratio_to_layer_max(x), expected, equal_nan=True)
    hold = x > 0
    for view in (hold, hold[::-1], hold[:, ::2]):
        assert count_true(view).tolist() == [int(view[:, j].sum()) for j in range(view.shape[1])]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 60), cols=st.integers(1, 5), seed=st.integers(0, 2**32 - 1), block=st.integers(1, 40),
       op=st.sampled_from([">", ">=", "<", "<=", "==", "!="]), value=st.sampled_from([-0.5, 0.0, 0.3]),
       need=st.integers(1, 6), at=st.sampled_from(["any", "all", "last"]), min_frac=st.sampled_from([0.0, 0.3, 0.9]),
       non_finite_is_true=st.booleans())
def test_a_signal_read_in_row_blocks_fires_and_describes_as_read_whole(n, cols, seed, block, op, value, need, at,
                                                                       min_frac, non_finite_is_true):
    """Runs that straddle blocks, early stops once every layer is settled, and per-block peaks and
    last rows give what one pass over the whole matrix gives."""
    from types import SimpleNamespace

    from diag.engine.conditions import windows
    from diag.engine.conditions.clause import Clause

    rng = np.random.default_rng(seed)
    y = rng.normal(size=(n, cols))
    y[rng.random((n, cols)) < 0.05] = np.nan
    y[rng.random((n, cols)) < 0.05] = np.inf
    y[rng.random((n, cols)) < 0.2] = 0.0
    trace = SimpleNamespace(steps=np.arange(n) * 10, layer_columns={"layers.grad_norm": y},
                            layer_present={"layers.grad_norm": np.ones(n, dtype=bool)},
                            has=lambda name: name == "layers.grad_norm")

    def read(block_values):
        clause = Clause(kind="signal", text="t", pos=(0, 0), series="layers.grad_norm", op=op, value=value,
                        for_=need, at=at, min_frac=min_frac, non_finite_is_true=non_finite_is_true)
        saved, windows._BLOCK_VALUES = windows._BLOCK_VALUES, block_values
        try:
            r = windows.signal_result(clause, SimpleNamespace(trace=trace, cache={}))
            return r, r.stats(), [r.column_stats(j) for j in range(cols)]
        finally:
            windows._BLOCK_VALUES = saved

    whole, whole_stats, whole_columns = read(1 << 30)
    blocked, blocked_stats, blocked_columns = read(block)
    for name in ("fired", "start", "fired_at", "measured"):
        assert np.array_equal(getattr(whole, name), getattr(blocked, name)), name
    for a, b in [(whole_stats, blocked_stats), *zip(whole_columns, blocked_columns)]:
        for name in a:
            assert np.array_equal(a[name], b[name], equal_nan=True), name


@settings(max_examples=150, deadline=None)
@given(rows=st.integers(0, 300), cols=st.integers(0, 70), seed=st.integers(0, 2**32 - 1),
       density=st.floats(0.0, 1.0), step=st.sampled_from([1, 2]))
def test_column_reductions_with_rows_side_by_side_equal_numpys_axis_0_reductions(rows, cols, seed, density, step):
    from diag.engine.conditions.windows import count_true
    from diag.engine.rolling import column_any, column_reduce

    hold = np.random.default_rng(seed).random((rows, cols)) < density
    hold = hold[::step]  # every other row: not contiguous, numpy's own reduction
    assert np.array_equal(column_any(hold), hold.any(axis=0))
    assert np.array_equal(column_reduce(np.logical_and, hold), hold.all(axis=0))
    assert np.array_equal(count_true(hold), hold.sum(axis=0))
