"""Reading traces a user hands us: torn lines, bad records, documents, shards."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diag.errors import DiagInputError
from diag.trace import Header, Step, TraceWriter, encode_record, load_trace, read_records


def test_a_real_trace_truncated_anywhere_loads_its_valid_prefix(real_trace, tmp_path):
    data = real_trace.read_bytes()
    full = load_trace(real_trace)
    line_ends = [i + 1 for i, b in enumerate(data) if b == ord("\n")]
    lines = data.split(b"\n")[:-1]
    # from just after the header (a cut inside it leaves nothing usable) to the last byte
    offsets = sorted(set(np.linspace(line_ends[0], len(data) - 1, 60).astype(int)))
    for offset in offsets:
        cut = tmp_path / f"cut{offset}.jsonl"
        cut.write_bytes(data[:offset])
        complete_lines = sum(1 for end in line_ends if end <= offset)
        if offset < line_ends[1] - 1:  # the header and part of the first step: nothing to diagnose
            with pytest.raises(DiagInputError, match="holds a header but no step"):
                load_trace(cut)
            continue
        trace = load_trace(cut)
        # a cut that only drops a line's newline leaves a complete record
        torn = offset not in line_ends and data[offset:offset + 1] != b"\n"
        # every complete line survives; the torn one only warns
        assert [p.severity for p in trace.problems] == (["warning"] if torn else [])
        assert list(trace.steps) == list(full.steps[: trace.num_steps])
        whole = [line for line, end in zip(lines, line_ends) if end <= offset or (end == offset + 1 and not torn)]
        assert trace.num_steps == sum(1 for line in whole if b'"kind":"step"' in line)
        if torn:
            assert "last line is incomplete" in trace.problems[0].message
            assert trace.problems[0].line == complete_lines + 1


def test_a_bad_record_in_the_middle_is_reported_and_the_rest_kept(tmp_path):
    path = tmp_path / "run.jsonl"
    lines = [encode_record(Header(run_id="r", framework="x"))]
    lines += [encode_record(Step(step=i, loss=1.0)) for i in range(3)]
    lines.insert(2, b'{"kind": "step", "step": 7, "loss": "lots"}\n')
    lines.insert(3, b'{"kind": "step", "step": 8, "los": 1.0}\n')
    lines.insert(4, b'this is not json\n')
    path.write_bytes(b"".join(lines))
    trace = load_trace(path)
    assert list(trace.steps) == [0, 1, 2]
    messages = [(p.line, p.field, p.severity) for p in trace.problems]
    assert messages == [(3, "loss", "error"), (4, "los", "error"), (5, None, "error")]
    assert "valid number" in trace.problems[0].message and "'lots'" in trace.problems[0].message
    assert "unknown field" in trace.problems[1].message
    assert "not valid JSON" in trace.problems[2].message


def test_unknown_record_kind_names_the_allowed_kinds(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_bytes(encode_record(Header(run_id="r", framework="x")) + b'{"kind": "stpe", "step": 1}\n'
                     + encode_record(Step(step=2, loss=1.0)))
    problem = load_trace(path).problems[0]
    assert problem.line == 2 and problem.field == "kind"
    assert "unknown kind 'stpe'" in problem.message and "'step'" in problem.message


def test_one_json_document_with_the_same_records_is_accepted(tmp_path, real_trace):
    records = [json.loads(line) for line in real_trace.read_text().splitlines()]
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps(records, indent=1))
    as_object = tmp_path / "object.json"
    as_object.write_text(json.dumps({"schema": "diag.trace/1", "records": records}))
    expected = load_trace(real_trace)
    for path in (as_list, as_object):
        trace = load_trace(path)
        assert trace.problems == []
        np.testing.assert_array_equal(trace.series("loss").values, expected.series("loss").values)
        assert len(trace.evals) == len(expected.evals)


def test_shards_of_a_multi_process_run_merge_with_process_zero_winning(tmp_path):
    folder = tmp_path / "run"
    for index in range(3):
        with TraceWriter.for_process(folder, index) as writer:
            writer.write(Header(run_id="r", framework="jax", process_index=index, world_size=3))
            for step in range(index, 12, 3):  # each process wrote some steps alone
                writer.write(Step(step=step, loss=float(step)))
            writer.write(Step(step=20, loss=float(index)))  # and one step all of them wrote
    trace = load_trace(folder)
    assert list(trace.steps) == list(range(12)) + [20]
    assert trace.series("loss").values[-1] == 0.0
    assert trace.header.process_index == 0 and len(trace.headers) == 3


def test_a_later_record_of_the_same_step_in_one_file_wins(tmp_path):
    path = tmp_path / "run.jsonl"
    path.write_bytes(b"".join(encode_record(r) for r in [
        Header(run_id="r", framework="x"), Step(step=0, loss=3.0), Step(step=1, loss=2.0),
        Step(step=1, loss=1.5), Step(step=2, loss=1.0)]))
    trace = load_trace(path)
    assert list(trace.steps) == [0, 1, 2] and list(trace.series("loss").values) == [3.0, 1.5, 1.0]


@pytest.mark.parametrize("content, message, line, field", [
    (b"", "the trace is empty", None, None),
    (b"\n\n  \n", "the trace is empty", None, None),
    (b"hello\nworld\n", "no valid trace records", 1, None),
    (b'{"kind": "header", "schema": "diag.trace/2", "run_id": "r", "framework": "x"}\n',
     "'diag.trace/2' is not supported by this diag", 1, "schema"),
    (b'{"kind": "header", "schema": "tensorboard/1", "run_id": "r", "framework": "x"}\n',
     "not a diag trace", 1, "schema"),
    (b'{"kind": "step", "step": -1}\n', "no valid trace records", 1, None),
    (b'{"kind": "header", "run_id": "r", "fram', "holds only an incomplete record", 1, None),
])
def test_unusable_input_raises_one_clear_error(tmp_path, content, message, line, field):
    path = tmp_path / "run.jsonl"
    path.write_bytes(content)
    with pytest.raises(DiagInputError) as info:
        load_trace(path)
    problem = info.value.problem
    assert message in problem.message
    assert problem.path == str(path) and problem.line == line and problem.field == field


def test_missing_file_and_empty_folder_are_clear_errors(tmp_path):
    with pytest.raises(DiagInputError, match="no such file or folder"):
        load_trace(tmp_path / "nope.jsonl")
    with pytest.raises(DiagInputError, match="folder holds no trace shards"):
        load_trace(tmp_path)


def test_read_records_gives_models_with_their_lines(real_trace):
    result = read_records(real_trace)
    assert result.problems == []
    assert isinstance(result.records[0], Header) and result.lines[0] == 1
    assert result.lines == sorted(result.lines)


def _runs_line_by_line(data: bytes) -> list[int]:
    """The definition of a run's first line, read one line at a time (what find_runs must agree with)."""
    import orjson

    starts, records, number = [1], 0, 0
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            raw = orjson.loads(line)
        except orjson.JSONDecodeError:
            raw = None
        if isinstance(raw, dict) and raw.get("kind") == "header":
            if records:
                starts.append(number)
                records = 0
        else:
            records += 1
    return starts


_RUN_PIECES = [
    b'{"kind":"header","schema":"diag.trace/1","run_id":"r","framework":"torch"}',
    b'{"kind":"step","step":1,"loss":2.0}',
    b'{"kind":"event","event":"note","message":"a \\"header\\" in a message"}',
    b"", b"  \t", b'{"kind": "header"', b'{"kind": "header", "run_id": 3}',
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_RUN_PIECES), max_size=14), st.booleans(), st.integers(0, 3))
def test_find_runs_agrees_with_reading_line_by_line(tmp_path_factory, lines, final_newline, padding):
    from diag.trace.reader import find_runs

    # Long lines push the headers across the reader's 1 MiB chunks.
    filler = b'{"kind":"step","step":2,"loss":1.0,"pad":"' + b"x" * (300_000 * padding) + b'"}'
    data = b"\n".join(line if line != b"" or not padding else filler for line in lines) + (b"\n" if final_newline else b"")
    path = tmp_path_factory.mktemp("runs") / "t.jsonl"
    path.write_bytes(data)
    assert find_runs(path) == _runs_line_by_line(data)


_RECORDS = [
    {"kind": "header", "run_id": "r", "framework": "flax", "layers": [{"name": "a", "params": [{"name": "w", "shape": [2], "dtype": "float32"}]}]},
    {"kind": "header", "run_id": "r"},  # framework missing
    {"kind": "header", "schema": "diag.trace/1", "run_id": "r", "framework": "torch", "task": "translation"},
    {"kind": "step", "step": 3, "loss": "NaN", "layers": {"grad_norm": [1.0, None]}},
    {"kind": "step", "step": -1},
    {"kind": "eval", "step": 1, "split": "val", "metrics": {"accuracy": 0.5}, "model_mode": "eval"},
    {"kind": "eval", "step": 1, "split": "val", "extra": 1},
    {"kind": "data", "split": "train", "size": 3, "feature_scores": [{"feature": "x", "score": 0.1}]},
    {"kind": "check", "name": "gradient", "passed": True, "worst_elements": [[1, 2]]},
    {"kind": "event", "event": "run_end", "status": "completed", "steps": 10},
    {"kind": "event", "event": "run_end", "status": "exploded"},
    {"kind": "event", "event": "exception", "type": "ValueError", "input_shapes": [[2, 3], None]},
    {"kind": "event", "event": "nonfinite_replay", "tool": "jax.debug_nans"},
    {"kind": "event", "event": "boom"},
    {"kind": "event", "event": ["run_end"]},
    {"kind": "event"},
    {"kind": ["step"], "step": 1},
    {"kind": {"a": 1}},
    {"kind": "nope"},
    {"step": 1},
]


@pytest.mark.parametrize("raw", _RECORDS, ids=range(len(_RECORDS)))
def test_a_record_is_read_by_its_own_model_exactly_as_by_the_union_of_every_kind(raw):
    # The reader validates a record with the model its tags name (built on first use); the union of
    # every kind is the reference: same record, or the same errors.
    from pydantic import TypeAdapter, ValidationError

    from diag.trace.builder import validate_record
    from diag.trace.records import Record

    try:
        expected = TypeAdapter(Record).validate_python(raw)
    except ValidationError as e:
        with pytest.raises(ValidationError) as got:
            validate_record(raw)
        assert got.value.errors() == e.errors()
    else:
        record = validate_record(raw)
        assert type(record) is type(expected) and record.model_dump_json() == expected.model_dump_json()
