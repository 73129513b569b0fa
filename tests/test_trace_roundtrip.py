"""Every record kind survives writing and reading, NaN and Inf included."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diag.trace import (
    ActivationStats, BatchStats, Check, Data, Eval, ExceptionEvent, FeatureScore, Header, LayerInfo,
    LayerStats, NonFiniteEvent, NoteEvent, OptimizerInfo, ParamInfo, RunEndEvent, SignalEvent, Step,
    encode_record, load_trace, read_records,
)

any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
maybe_float = st.none() | any_float
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=12)
LAYERS = 3


def layer_values(allow_null: bool = True):
    item = (st.none() | any_float) if allow_null else any_float
    return st.lists(item, min_size=LAYERS, max_size=LAYERS)


headers = st.builds(
    Header,
    run_id=names,
    framework=st.sampled_from(["flax", "torch", "jax"]),
    layers=st.lists(
        st.builds(
            LayerInfo,
            name=names,
            params=st.lists(
                st.builds(ParamInfo, name=names, shape=st.lists(st.integers(0, 4096), max_size=4),
                          dtype=st.sampled_from(["float32", "bfloat16", "float16"])),
                max_size=2,
            ),
            activation=st.sampled_from([None, "relu", "tanh"]),
        ),
        min_size=LAYERS, max_size=LAYERS,
    ),
    optimizer=st.none() | st.builds(OptimizerInfo, name=names, hyperparameters=st.dictionaries(
        names, st.none() | st.booleans() | st.integers(-10, 10) | any_float | names, max_size=3)),
    task=st.sampled_from([None, "classification", "regression"]),
    num_classes=st.none() | st.integers(0, 1000),
    seed=st.none() | st.integers(-(2**31), 2**31),
    tags=st.dictionaries(names, st.none() | st.booleans() | any_float | names, max_size=3),
)
steps = st.builds(
    Step,
    step=st.integers(0, 10**9),
    loss=maybe_float, lr=maybe_float, grad_norm=maybe_float, loss_scale=maybe_float,
    skipped=st.none() | st.booleans(),
    layers=st.none() | st.builds(LayerStats, grad_norm=layer_values(), update_ratio=layer_values()),
    activations=st.none() | st.builds(ActivationStats, zero_fraction=layer_values(), nonfinite=layer_values()),
    input=st.none() | st.builds(BatchStats, mean=maybe_float, nonfinite=maybe_float),
    metrics=st.dictionaries(names, maybe_float, max_size=3),
)
evals = st.builds(Eval, step=st.integers(0, 10**6), split=names, loss=maybe_float,
                  metrics=st.dictionaries(names, maybe_float, max_size=3),
                  model_mode=st.sampled_from([None, "train", "eval"]))
datas = st.builds(Data, split=names, size=st.integers(0, 10**9),
                  label_histogram=st.none() | st.dictionaries(names, st.integers(0, 10**6), max_size=4),
                  overlap_fraction=maybe_float, time_min=maybe_float,
                  feature_scores=st.lists(st.builds(FeatureScore, feature=names, score=any_float), max_size=3))
checks = st.builds(Check, name=names, passed=st.booleans(), error=maybe_float, threshold=maybe_float,
                   worst_elements=st.lists(st.lists(st.integers(0, 100), max_size=3), max_size=2))
events = st.one_of(
    st.builds(NonFiniteEvent, tensor=names, layer=st.none() | names, value=maybe_float, step=st.none() | st.integers(0, 99)),
    st.builds(ExceptionEvent, type=names, message=st.none() | names, traceback=st.none() | names),
    st.builds(RunEndEvent, status=st.sampled_from(["completed", "crashed", "interrupted", "killed", "stopped"])),
    st.builds(SignalEvent, signal=st.sampled_from(["SIGINT", "SIGTERM"])),
    st.builds(NoteEvent, message=names, level=st.sampled_from(["info", "warning", "error"])),
)
any_record = st.one_of(headers, steps, evals, datas, checks, events)


def dumped(record) -> str:
    # NaN != NaN, so compare the canonical JSON text (non-finite floats are strings there).
    return record.model_dump_json(by_alias=True)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(any_record)
def test_every_record_kind_round_trips_through_a_line(record):
    line = encode_record(record)
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    again = type(record).model_validate_json(line)
    assert dumped(again) == dumped(record)


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(header=headers, body=st.lists(st.one_of(steps, evals, datas, checks, events), max_size=8))
def test_a_written_trace_reads_back_the_same_records(tmp_path_factory, header, body):
    path = tmp_path_factory.mktemp("rt") / "run.jsonl"
    path.write_bytes(b"".join(encode_record(r) for r in [header, *body]))
    result = read_records(path)
    assert result.problems == []
    assert [dumped(r) for r in result.records] == [dumped(r) for r in [header, *body]]


def test_nan_and_inf_are_values_in_the_columns(tmp_path):
    path = tmp_path / "run.jsonl"
    records = [
        Header(run_id="r", framework="jax", layers=[LayerInfo(name=n) for n in ("a", "b", "c")]),
        Step(step=0, loss=1.0, layers=LayerStats(grad_norm=[1.0, 2.0, 3.0])),
        Step(step=1, loss=math.nan, layers=LayerStats(grad_norm=[math.inf, -math.inf, math.nan])),
        Step(step=2, loss=math.inf),
    ]
    path.write_bytes(b"".join(encode_record(r) for r in records))
    assert b'"NaN"' in path.read_bytes() and b'"Infinity"' in path.read_bytes()
    trace = load_trace(path)
    loss = trace.series("loss")
    assert loss.values[0] == 1.0 and math.isnan(loss.values[1]) and loss.values[2] == math.inf
    grads = trace.layer_matrix("layers.grad_norm")
    assert list(grads.steps) == [0, 1]  # step 2 recorded no per-layer statistics: not a NaN row
    assert grads.values[1, 0] == math.inf and grads.values[1, 1] == -math.inf and math.isnan(grads.values[1, 2])


def test_bare_nan_tokens_from_other_writers_are_accepted(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_text('{"kind": "header", "run_id": "r", "framework": "x"}\n'
                    '{"kind": "step", "step": 0, "loss": NaN, "grad_norm": Infinity}\n')
    trace = load_trace(path)
    assert math.isnan(trace.series("loss").values[0])
    assert trace.series("grad_norm").values[0] == math.inf


def test_null_in_a_per_layer_array_is_unmeasured_not_nan(tmp_path):
    path = tmp_path / "run.jsonl"
    records = [Header(run_id="r", framework="jax", layers=[LayerInfo(name="a"), LayerInfo(name="out")]),
               *[Step(step=i, activations=ActivationStats(zero_fraction=[0.25, None])) for i in range(3)]]
    path.write_bytes(b"".join(encode_record(r) for r in records))
    matrix = load_trace(path).layer_matrix("activations.zero_fraction")
    assert matrix.measured[:, 0].all() and not matrix.measured[:, 1].any()
    np.testing.assert_array_equal(matrix.values[:, 0], [0.25, 0.25, 0.25])


def test_fast_and_model_paths_build_the_same_columns(tmp_path, real_trace):
    """The validated fast path for step records must agree with the pydantic model path."""
    from diag.trace.builder import TraceBuilder
    from diag.trace.reader import read_into

    class ModelOnly(TraceBuilder):
        def _fast_step(self, raw, may_hold_null=True):
            return False

    class Counting(TraceBuilder):
        fast_steps = 0

        def _fast_step(self, raw, may_hold_null=True):
            taken = super()._fast_step(raw, may_hold_null)
            self.fast_steps += taken
            return taken

    counting = Counting(str(real_trace))
    read_into(real_trace, counting).build()
    fast = load_trace(real_trace)
    slow = read_into(real_trace, ModelOnly(str(real_trace))).build()
    # The comparison means something only if the fast path took the steps and there are columns.
    assert counting.fast_steps == fast.num_steps == 60 and "loss" in fast.columns and fast.layer_columns
    assert fast.columns.keys() == slow.columns.keys()
    assert fast.layer_columns.keys() == slow.layer_columns.keys()
    for name in fast.columns:
        np.testing.assert_array_equal(fast.columns[name], slow.columns[name])
        np.testing.assert_array_equal(fast.present[name], slow.present[name])
    for name in fast.layer_columns:
        np.testing.assert_array_equal(fast.layer_columns[name], slow.layer_columns[name])
        np.testing.assert_array_equal(fast.layer_matrix(name).measured, slow.layer_matrix(name).measured)
