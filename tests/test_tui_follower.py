"""The follower behind ``diag tui --follow``: reads each byte once, holds back a torn line,
starts over when a new run replaces the file, and reports bad lines like ``diag explain`` does."""

from __future__ import annotations

from diag.tui.follower import TraceFollower
from tests.tui_traces import write_run


def test_follower_reads_only_what_was_appended(tmp_path):
    path = tmp_path / "run.jsonl"
    write_run(path, lr=0.1, steps=20, eval_every=0)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:11]))  # header and steps 0-9
    follower = TraceFollower(path)
    assert follower.poll().new_steps == 10
    with open(path, "ab") as f:
        f.write(b"".join(lines[11:14]))
    result = follower.poll()
    assert (result.new_records, result.new_steps, result.restarted) == (3, 3, False)
    assert follower._tail.offset == path.stat().st_size
    assert follower.trace().series("loss").steps.tolist() == list(range(13))
    assert follower.poll().new_records == 0


def test_half_written_line_waits_for_its_end(tmp_path):
    path = tmp_path / "run.jsonl"
    write_run(path, lr=0.1, steps=3, eval_every=0)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3]) + lines[3][:25])
    follower = TraceFollower(path)
    assert follower.poll().new_steps == 2
    assert follower.pending_line == lines[3][:25]
    with open(path, "ab") as f:
        f.write(lines[3][25:])
    assert follower.poll().new_steps == 1
    assert follower.trace().last_step == 2
    assert not follower.trace().problems


def test_a_new_run_writing_over_the_file_starts_the_trace_again(tmp_path):
    path = tmp_path / "run.jsonl"
    write_run(path, lr=0.1, steps=30, eval_every=0, run_id="first")
    follower = TraceFollower(path)
    follower.poll()
    write_run(path, lr=0.1, steps=5, eval_every=0, run_id="second")
    assert follower.poll().restarted
    trace = follower.trace()
    assert trace.header.run_id == "second" and trace.num_steps == 5


def test_a_bad_line_is_reported_with_its_number_and_the_rest_is_read(tmp_path):
    path = tmp_path / "run.jsonl"
    write_run(path, lr=0.1, steps=4, eval_every=0)
    follower = TraceFollower(path)
    follower.poll()
    with open(path, "ab") as f:
        f.write(b'{"kind": "step", "step": 9, "loss": "high"}\n')
        f.write(b'{"kind": "step", "step": 10, "loss": 0.5}\n')
    follower.poll()
    trace = follower.trace()
    assert trace.last_step == 10
    problem = next(p for p in trace.problems if p.severity == "error")
    assert problem.line == 7 and problem.field == "loss"
