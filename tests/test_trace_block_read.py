"""Reading a file a block of lines at a time gives the trace that reading it record by record gives.

``load_trace`` (``read_into`` without a builder) parses each 256 KiB block of lines before feeding it, hands the block's step
records to ``TraceBuilder.feed_steps`` together, and watches for a second run as it reads instead of
searching the file for headers first. A builder subclass that refuses every block
(``RecordByRecord``), read through ``read_into`` (which searches for the runs first), is the
reference: the step fast path and the model path, one record at a time. Every part of the two
traces must be equal, the order of the columns and the problems included.
"""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diag.trace import load_trace
from diag.trace.builder import TraceBuilder
from diag.trace.columnar import ColumnBuffer
from diag.trace.reader import read_into
from tests.fuzz_traces import MUTATIONS, SOURCES, mutate, source_lines


class RecordByRecord(TraceBuilder):
    """The reference: every step record goes through ``_fast_step`` (or the model) on its own."""

    blocks_offered = 0

    def feed_steps(self, raws: list) -> bool:
        self.blocks_offered += 1
        return False


class Counting(TraceBuilder):
    blocks_taken = blocks_refused = 0

    def feed_steps(self, raws: list) -> bool:
        taken = super().feed_steps(raws)
        self.blocks_taken += taken
        self.blocks_refused += not taken
        return taken


def read(path, builder=None, run=None):
    builder = read_into(path, builder, run=run)
    trace = builder.build()
    trace.run, trace.runs = builder.run, builder.runs
    return trace


def assert_same_trace(fast, slow):
    assert (fast.run, fast.runs) == (slow.run, slow.runs)
    assert fast.problems == slow.problems
    assert fast.header == slow.header and fast.headers == slow.headers
    assert (fast.evals, fast.data, fast.checks, fast.events) == (slow.evals, slow.data, slow.checks, slow.events)
    assert fast.steps.tobytes() == slow.steps.tobytes()
    # The same columns, created in the same order, with the same bits (NaN included).
    assert list(fast.columns) == list(slow.columns)
    assert list(fast.layer_columns) == list(slow.layer_columns)
    assert list(fast.layer_measured) == list(slow.layer_measured)
    for name in fast.columns:
        assert fast.columns[name].tobytes() == slow.columns[name].tobytes(), name
        assert fast.present[name].tobytes() == slow.present[name].tobytes(), name
    for name in fast.layer_columns:
        assert fast.layer_columns[name].shape == slow.layer_columns[name].shape, name
        assert fast.layer_columns[name].tobytes() == slow.layer_columns[name].tobytes(), name
        assert fast.layer_present[name].tobytes() == slow.layer_present[name].tobytes(), name
    for name in fast.layer_measured:
        assert fast.layer_measured[name].tobytes() == slow.layer_measured[name].tobytes(), name


def load_both(path, run=None):
    """(block-by-block trace, record-by-record trace), or the two errors' messages."""
    from diag.errors import DiagInputError

    outcomes = []
    for builder in (None, RecordByRecord(str(path))):
        try:
            outcomes.append(read(path, builder, run=run))
        except DiagInputError as e:
            outcomes.append(str(e))
    return outcomes


def dumps(record) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode()  # integers beyond 64 bits too


HEADER = {"kind": "header", "schema": "diag.trace/1", "run_id": "r", "framework": "torch",
          "layers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}
LAYERS = 3

number = st.floats(allow_nan=False, allow_infinity=False, width=64) | st.integers(-2**70, 2**70)
odd = st.sampled_from([None, "NaN", "Infinity", "1.5", "x", True, False, [], {}, [1.0]])
value = number | odd  # mostly numbers
row = st.lists(number, min_size=LAYERS, max_size=LAYERS) | st.lists(number | odd, min_size=1, max_size=4) | odd


@st.composite
def step_record(draw, step):
    """A step record as recorders write them (mostly), with a few odd values mixed in."""
    record = {"kind": "step", "step": step}
    for key in draw(st.lists(st.sampled_from(["epoch", "loss", "lr", "grad_norm", "skipped", "memory_bytes"]),
                             unique=True, max_size=4)):
        plain = {"epoch": st.integers(0, 5), "skipped": st.booleans()}.get(key, number)
        record[key] = draw(plain | value if draw(st.integers(0, 9)) == 0 else plain)
    for group, names in (("layers", ["grad_norm", "param_norm", "update_ratio"]),
                         ("activations", ["mean", "zero_fraction"])):
        if draw(st.booleans()):
            chosen = draw(st.lists(st.sampled_from(names), unique=True, min_size=1, max_size=3))
            plain = st.lists(number, min_size=LAYERS, max_size=LAYERS)
            record[group] = {n: draw(row if draw(st.integers(0, 9)) == 0 else plain) for n in chosen}
    if draw(st.booleans()):
        record["metrics"] = {m: draw(number | value) for m in draw(st.lists(st.sampled_from(["acc", "f1"]),
                                                                          unique=True, max_size=2))}
    if draw(st.integers(0, 4)) == 0:
        record["input"] = {"mean": draw(number), "distinct_labels": draw(st.integers(-1, 9) | value)}
    if draw(st.integers(0, 14)) == 0:
        record[draw(st.sampled_from(["lossy", "loss_per_replica"]))] = [1.0, 2.0]
    return record


@st.composite
def trace_lines(draw):
    lines = [orjson.dumps(HEADER)]
    step = 0
    for _ in range(draw(st.integers(0, 30))):
        step += draw(st.sampled_from([1, 1, 1, 0, -1, 5]))
        kind = draw(st.integers(0, 19))
        if kind == 0:
            lines.append(b'{"kind":"eval","step":%d,"split":"val","loss":1.0}' % max(step, 0))
        elif kind == 1:
            lines.append(orjson.dumps(HEADER))  # a second run (or a restated header)
        elif kind == 2:
            lines.append(draw(st.sampled_from([b"", b"  ", b"not json", b"[1, 2]", b'{"step": 3}',
                                               b'{"kind":"step","step":1,"loss":NaN}'])))
        else:
            lines.append(dumps(draw(step_record(max(step, 0)))))
    return lines


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=trace_lines(), final_newline=st.booleans(), run=st.sampled_from([None, None, 1, 0]))
def test_block_reading_gives_the_record_by_record_trace(tmp_path_factory, lines, final_newline, run):
    path = tmp_path_factory.mktemp("block") / "t.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if final_newline else b""))
    fast, slow = load_both(path, run=run)
    if isinstance(fast, str) or isinstance(slow, str):
        assert fast == slow
    else:
        assert_same_trace(fast, slow)


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.sampled_from(SOURCES), rng=st.randoms(use_true_random=False), rounds=st.integers(1, 3))
def test_block_reading_of_a_mutated_real_trace_gives_the_record_by_record_trace(tmp_path, mutation, source, rng,
                                                                                 rounds):
    path = tmp_path / "mutated.jsonl"
    path.write_bytes(mutate(mutation, b"\n".join(source_lines(source)), rng, rounds))
    fast, slow = load_both(path)
    if isinstance(fast, str) or isinstance(slow, str):
        assert fast == slow
    else:
        assert_same_trace(fast, slow)


# A null and a "NaN" string go to numpy inside a taken block; "x" and a list make the block
# refused (and the record skipped, as record by record).
ODD_VALUES = [None, "NaN", "x", True, [1.0], "Infinity"]


def write_long_trace(path, steps: int, rng: random.Random, odd_every: int = 0) -> None:
    """A trace of several 1 MiB blocks; ``odd_every``: a null, a string or a bad value now and then."""
    lines = [orjson.dumps({**HEADER, "layers": [{"name": f"l{i}"} for i in range(64)]})]
    for step in range(steps):
        record = {"kind": "step", "step": step, "loss": rng.random(), "lr": 1e-3,
                  "layers": {"grad_norm": [rng.random() for _ in range(64)],
                             "param_norm": [rng.random() for _ in range(64)]}}
        if step % 7 == 0:
            record["activations"] = {"zero_fraction": [rng.random() for _ in range(63)] + [None]}
        if step % 50 == 0:
            lines.append(b'{"kind":"eval","step":%d,"split":"val","loss":0.5}' % step)
        if odd_every and step % odd_every == odd_every - 1:
            odd = ODD_VALUES[(step // odd_every) % len(ODD_VALUES)]
            record["layers"]["grad_norm"][rng.randrange(64)] = odd
        lines.append(orjson.dumps(record))
    path.write_bytes(b"\n".join(lines) + b"\n")


@pytest.mark.parametrize("odd_every", [0, 500])
def test_a_trace_of_many_blocks_is_read_block_by_block_and_gives_the_same_trace(tmp_path, odd_every):
    path = tmp_path / "long.jsonl"
    write_long_trace(path, 3000, random.Random(odd_every), odd_every)
    assert path.stat().st_size > 3 << 20  # several blocks
    counting = Counting(str(path))
    read_into(path, counting)
    # The check means something only when blocks were taken (and, with odd values, refused).
    assert counting.blocks_taken >= 3 and counting.blocks_refused == (2 if odd_every else 0)
    fast, slow = load_both(path)
    assert_same_trace(fast, slow)
    assert fast.num_steps == (2998 if odd_every else 3000) and "activations.zero_fraction" in fast.layer_measured


def test_a_file_with_a_second_run_is_read_again_and_gives_the_chosen_run(tmp_path):
    path = tmp_path / "two.jsonl"
    write_long_trace(path, 600, random.Random(1))
    first = path.read_bytes()
    path.write_bytes(first + first.replace(b'"run_id":"r"', b'"run_id":"s"'))
    for run in (None, 1, 2, 0):
        fast, slow = load_both(path, run=run)
        assert_same_trace(fast, slow)
    assert load_trace(path).runs == 2 and load_trace(path).num_steps == 600
    assert load_trace(path, run=0).num_steps == 600  # both runs, the same steps


def test_struct_packs_a_row_to_the_doubles_numpy_converts_it_to():
    rows = [[2**53 + 1, 2**63 - 1, 2**64 - 1], [-(2**63), True, False], [1e308, -0.0, 5e-324],
            [float("nan"), float("inf"), 0.1], [3, -7, 1 / 3]]
    packed, converted = ColumnBuffer(len(rows), 3), np.full((len(rows), 3), np.nan)
    for i, values in enumerate(rows):
        packed.put_row(i, values)
        converted[i] = values
    assert packed.values.tobytes() == converted.tobytes() and packed.present.all()
    # What struct refuses goes to numpy, as before: nulls unmeasured, numeric strings converted.
    column = ColumnBuffer(2, 3)
    column.put_row(0, [1.0, None, "NaN"])
    assert column.measured[0].tolist() == [True, False, True] and np.isnan(column.values[0, 1:]).all()
    with pytest.raises(ValueError):
        column.put_row(1, [1.0, "x", 2.0])
    with pytest.raises(ValueError):
        column.put_row(1, [1.0, 2.0])  # a short row is refused, never packed into part of a row
    with pytest.raises(struct.error):
        struct.Struct("3d").pack(1.0, None, 2.0)  # the refusal put_row relies on


def test_a_header_after_a_block_of_steps_only_starts_a_run(tmp_path):
    """The second run's header opens a block, the block before it holds steps only: still two runs."""
    block = 1 << 20  # the reader's read size

    def padded(line: bytes, size: int) -> bytes:  # the same record, ``size`` bytes with its newline
        return line[:-2] + b',"tags":{"pad":"' + b"x" * (size - len(line) - 18) + b'"}}\n'

    def steps(first: int, size: int) -> bytes:
        lines = [b'{"kind":"step","step":%d,"loss":1.0,"layers":{"grad_norm":[1.0,2.0,3.0]}}\n' % s
                 for s in range(first, first + size // 80)]
        body = b"".join(lines[:-1])
        last = lines[-1][:-1]  # the last record's loss takes the rest: 1.0 becomes 1.0000...
        return body + last.replace(b'"loss":1.0', b'"loss":1.' + b"0" * (size - len(body) - len(last)), 1) + b"\n"

    header = orjson.dumps(HEADER) + b"\n"
    data = padded(header, block) + steps(0, block) + header + steps(10_000, 4000)
    assert data[block - 1:block] == data[2 * block - 1:2 * block] == b"\n"
    path = tmp_path / "t.jsonl"
    path.write_bytes(data)
    fast, slow = load_both(path)
    assert_same_trace(fast, slow)
    assert fast.runs == 2 and fast.steps[0] == 10_000


def plain_step(step: int) -> dict:
    return {"kind": "step", "step": step, "epoch": 0, "loss": 1.5, "lr": 1e-3, "skipped": False,
            "layers": {"grad_norm": [1.0, 2, 3.5], "param_norm": [4.0, 5.0, 6.0]},
            "activations": {"zero_fraction": [0.5, 0.25, 0.0]},
            "input": {"mean": 0.1, "distinct_labels": 3}, "metrics": {"acc": 0.5}}


# Where one odd value goes in a block of plain step records, and what goes there.
PLACES = {
    "step": lambda r, v: r.__setitem__("step", v),
    "epoch": lambda r, v: r.__setitem__("epoch", v),
    "loss": lambda r, v: r.__setitem__("loss", v),
    "skipped": lambda r, v: r.__setitem__("skipped", v),
    "layers": lambda r, v: r.__setitem__("layers", v),
    "row": lambda r, v: r["layers"].__setitem__("grad_norm", v),
    "layers.extra": lambda r, v: r["layers"].__setitem__("grad_nrom", v),
    "entry": lambda r, v: r["layers"]["param_norm"].__setitem__(1, v),
    "activation": lambda r, v: r["activations"]["zero_fraction"].__setitem__(2, v),
    "input": lambda r, v: r["input"].__setitem__("distinct_labels", v),
    "input.extra": lambda r, v: r["input"].__setitem__("median", v),
    "metrics": lambda r, v: r["metrics"].__setitem__("acc", v),
    "metrics.new": lambda r, v: r["metrics"].__setitem__("f1", v),
    "group order": lambda r, v: r.__setitem__("layers", dict(reversed(list(r["layers"].items())))),
    "key order": lambda r, v: r.update(r.pop("loss") and {"loss": 1.5}),
    "missing": lambda r, v: r.pop("lr"),
    "extra key": lambda r, v: r.__setitem__("lossy", v),
}
ODD = [None, True, 0, -1, 2**53 + 1, 2**64 - 1, 2**70, 1.5, "NaN", "1.5", "x", [], [1.0], [1.0, 2.0, 3.0], {}, {"a": 1},
       # Three of something that is not three numbers: packing (struct) must refuse each.
       [1.0, 2.0, 3.0, 4.0], "abc", {"a": 1, "b": 2, "c": 3}, [None, 1.0, "NaN"], [1.0, [2.0], 3.0], [True, 2, 1e308]]


@pytest.mark.parametrize("place", sorted(PLACES))
@pytest.mark.parametrize("at", [0, 7])
def test_one_odd_value_in_a_block_of_plain_steps_gives_the_record_by_record_trace(tmp_path, place, at):
    for number, odd in enumerate(ODD):
        records = [plain_step(step) for step in range(12)]
        PLACES[place](records[at], odd)
        lines = [orjson.dumps(HEADER)] + [dumps(record) for record in records]
        path = tmp_path / f"odd{number}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        fast, slow = load_both(path)
        if isinstance(fast, str) or isinstance(slow, str):
            assert fast == slow, (place, odd)
        else:
            assert_same_trace(fast, slow)


def test_a_block_of_plain_steps_is_taken_whole(tmp_path):
    """What the odd-value test varies from: without the odd value, feed_steps takes the block."""
    path = tmp_path / "plain.jsonl"
    path.write_bytes(b"\n".join([orjson.dumps(HEADER)] + [dumps(plain_step(step)) for step in range(12)]) + b"\n")
    counting = Counting(str(path))
    read_into(path, counting)
    assert (counting.blocks_taken, counting.blocks_refused, counting.records) == (1, 0, 13)


@pytest.mark.parametrize("group", ["layers", "activations"])
def test_a_statistic_the_schema_does_not_know_in_every_record_gives_the_record_by_record_trace(tmp_path, group):
    records = [plain_step(step) for step in range(12)]
    for record in records:
        record[group]["grad_nrom"] = [1.0, 2.0, 3.0]
    path = tmp_path / "unknown.jsonl"
    path.write_bytes(b"\n".join([orjson.dumps(HEADER)] + [dumps(record) for record in records]) + b"\n")
    fast, slow = load_both(path)
    assert_same_trace(fast, slow)
    assert fast.problems and f"{group}.grad_nrom" not in fast.layer_columns


def test_the_line_estimate_of_a_file_of_alike_lines_is_a_little_above_the_count(tmp_path):
    from diag.trace.reader import count_lines, estimate_lines

    path = tmp_path / "alike.jsonl"
    write_long_trace(path, 3000, random.Random(3))
    lines = count_lines(path)
    estimate = estimate_lines(path)
    assert estimate is not None and lines <= estimate <= 1.05 * lines + 64


def test_a_file_the_samples_cannot_speak_for_is_counted(tmp_path):
    from diag.trace.reader import estimate_lines

    short = b'{"kind":"step","step":%d,"loss":1.0}\n'
    path = tmp_path / "light_then_full.jsonl"
    write_long_trace(path, 3000, random.Random(4))
    path.write_bytes(b"".join(short % s for s in range(100_000)) + path.read_bytes())  # short lines first
    assert estimate_lines(path) is None
    path.write_bytes(short * 10)  # small: counted
    assert estimate_lines(path) is None


def test_a_file_that_fools_the_samples_is_read_whole_all_the_same(tmp_path):
    """Long lines where the samples look, short ones between them: more rows than the estimate."""
    from diag.trace.reader import count_lines, estimate_lines

    long_part = tmp_path / "long.jsonl"
    write_long_trace(long_part, 1200, random.Random(5))
    head, *steps = long_part.read_bytes().split(b"\n")[:-1]
    short = [b'{"kind":"step","step":%d,"loss":0.5}' % (10_000 + s) for s in range(20_000)]
    quarter = len(steps) // 4  # the short lines lie between the first sample and the middle one
    tail = [line.replace(b'"step":', b'"step":9', 1) for line in steps[quarter:]]  # no step of the short ones
    path = tmp_path / "fooled.jsonl"
    path.write_bytes(b"\n".join([head, *steps[:quarter], *short, *tail]) + b"\n")
    assert estimate_lines(path) is not None and estimate_lines(path) < count_lines(path)
    fast, slow = load_both(path)
    assert_same_trace(fast, slow)
    assert fast.num_steps == 1200 + len(short)


def test_the_last_run_of_a_file_is_read_in_one_pass(tmp_path, monkeypatch):
    """Each run's first line starts the builder afresh: no search for the runs first, no second read."""
    import diag.trace.reader as reader

    path = tmp_path / "three.jsonl"
    write_long_trace(path, 300, random.Random(6))
    one = path.read_bytes()
    path.write_bytes(one + one.replace(b'"run_id":"r"', b'"run_id":"s"') + one.replace(b'"run_id":"r"', b'"run_id":"t"'))
    reference_trace = load_both(path)[1]  # searched for the runs, then read the last

    def no_search(path):
        raise AssertionError("the runs were searched for before reading")

    monkeypatch.setattr(reader, "find_runs", no_search)
    trace = load_trace(path)
    assert_same_trace(trace, reference_trace)
    assert (trace.run, trace.runs, trace.header.run_id, trace.num_steps) == (3, 3, "t", 300)


def read_line_by_line(path):
    """The plainest reading of a one-run file: ``split(b"\\n")``, then ``feed_line`` for each line that
    is not blank; the piece after the last newline is a torn last line. Shares nothing with how
    ``read_lines`` cuts the file into blocks and lines."""
    from diag.trace.reader import feed_line

    builder = TraceBuilder(str(path))
    builder.start_shard(str(path), 0)
    *lines, rest = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, 1):
        if line.strip():
            feed_line(path, builder, number, line)
    if rest.strip():
        feed_line(path, builder, len(lines) + 1, rest, torn=True)
    return builder.build()


one_run_line = st.one_of(
    st.builds(lambda record: dumps(record), st.integers(0, 40).flatmap(step_record)),
    st.sampled_from([b"", b"  ", b"\r", b"\t \x0c", b"not json", b"[1, 2]", b'{"step": 3}', b'{"kind":"st',
                     b'{"kind":"eval","step":2,"split":"val","loss":1.0}', b'{"kind":"step","step":1,"loss":NaN}']),
)


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(one_run_line, max_size=25), crlf=st.booleans(), ending=st.sampled_from([b"\n", b"", b'{"kind":"st']),
       read_bytes=st.sampled_from([16, 100, 333, 4096, 1 << 18]))
def test_the_lines_read_lines_cuts_are_the_lines_of_the_file(tmp_path_factory, lines, crlf, ending, read_bytes):
    """Chunks of any size, lines across chunk boundaries, blank lines, CRLF endings, a torn last line:
    every line gets what ``feed_line`` gives it, with its number."""
    import diag.trace.jsonl as jsonl
    from diag.errors import DiagInputError

    path = tmp_path_factory.mktemp("lines") / "t.jsonl"
    newline = b"\r\n" if crlf else b"\n"
    path.write_bytes(newline.join([orjson.dumps(HEADER), *lines]) + newline + ending)
    before = jsonl.READ_BYTES
    jsonl.READ_BYTES = read_bytes
    try:
        try:
            trace = read(path)
        except DiagInputError:
            return  # nothing usable: the reference has no such error to compare with
        for builder in (None, RecordByRecord(str(path))):
            assert_same_trace(read(path, builder), read_line_by_line(path))
    finally:
        jsonl.READ_BYTES = before
    assert trace.num_steps <= len(lines)
