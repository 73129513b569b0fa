"""The writer: whole lines only, flushed on its clocks, safe from many threads, one shard per process."""

from __future__ import annotations

import threading
import time

import pytest

from diag.trace import Header, Step, TraceWriter, load_trace


def test_records_from_many_threads_land_as_whole_lines(tmp_path):
    path = tmp_path / "run.jsonl"
    with TraceWriter(path, flush_every=7) as writer:
        writer.write(Header(run_id="r", framework="x"))

        def work(offset: int) -> None:
            for i in range(200):
                writer.write(Step(step=offset * 1000 + i, loss=float(i), metrics={"thread": float(offset)}))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    trace = load_trace(path)
    assert trace.problems == []
    assert trace.num_steps == 1600


def test_buffer_is_flushed_after_n_records(tmp_path):
    path = tmp_path / "run.jsonl"
    writer = TraceWriter(path, flush_every=5, flush_seconds=3600)
    for i in range(4):
        writer.write(Step(step=i))
    assert path.read_bytes() == b""
    writer.write(Step(step=4))
    assert path.read_bytes().count(b"\n") == 5
    writer.close()


def test_background_thread_flushes_a_quiet_writer_on_its_clock(tmp_path):
    path = tmp_path / "run.jsonl"
    writer = TraceWriter(path, flush_every=1000, flush_seconds=0.1, background=True)
    writer.write(Step(step=0))
    deadline = time.monotonic() + 10
    while path.read_bytes() == b"" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert path.read_bytes().count(b"\n") == 1
    writer.close()


def test_close_flushes_and_later_writes_are_refused(tmp_path):
    path = tmp_path / "run.jsonl"
    writer = TraceWriter(path, flush_every=1000, flush_seconds=3600)
    writer.write(Step(step=0))
    writer.close()
    assert path.read_bytes().count(b"\n") == 1
    with pytest.raises(ValueError, match="closed"):
        writer.write(Step(step=1))
    assert path.read_bytes().count(b"\n") == 1  # nothing was added


def test_each_process_writes_its_own_shard(tmp_path):
    for index in range(2):
        with TraceWriter.for_process(tmp_path / "run", index) as writer:
            writer.write(Header(run_id="r", framework="x", process_index=index))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["run.p0.jsonl", "run.p1.jsonl"]
