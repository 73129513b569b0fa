"""Append trace records to a JSONL file, safely from several threads.

Records are buffered and written as whole lines, so a reader (or a TUI tailing the file) never sees
half a record except for the very last line of a process killed mid-write. The buffer is flushed
every ``flush_every`` records, when its oldest record is ``flush_seconds`` old, and on ``close()``.
A header is written through at once, so a run killed before its first flush still leaves a file
that says what it is.

The age bound is what ``kill -9`` can lose, so it must hold even when the training loop stops
writing (a long evaluation, a hung data loader): the background thread sleeps until the oldest
buffered record's deadline, not on a fixed tick, and a write into an empty buffer wakes it.

Multi-process runs write one shard per process: ``TraceWriter.for_process("runs/exp1", index)``
writes ``runs/exp1/run.p{index}.jsonl``; ``diag`` commands given the folder merge the shards.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Iterable

from diag.trace.records import Header, _Record


def encode_record(record: _Record) -> bytes:
    """One record as a JSON line (non-finite floats as "NaN"/"Infinity" strings, nulls dropped)."""
    return record.model_dump_json(by_alias=True, exclude_none=True).encode() + b"\n"


class TraceWriter:
    """Thread-safe, buffered JSONL writer of trace records.

    Args:
      path: the ``.jsonl`` file to append to (parent folders are created).
      flush_every: write the buffer out after this many records.
      flush_seconds: the longest a record waits in memory before it is written (what ``kill -9``
        can lose); 1 s by default.
      background: run a daemon thread that flushes at each record's deadline even when the
        training loop is not writing (for example during a long evaluation). Without it the
        deadline is checked only when a record is written.
      fsync: also ``os.fsync`` on every flush (survives a machine crash, costs a disk round trip).

    Example:
      >>> import tempfile, os
      >>> from diag.trace.records import Header, Step
      >>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
      >>> with TraceWriter(path) as w:
      ...     w.write(Header(run_id="demo", framework="jax"))
      ...     w.write(Step(step=0, loss=2.3))
      >>> sum(1 for _ in open(path))
      2
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        flush_every: int = 100,
        flush_seconds: float = 1.0,
        background: bool = True,
        fsync: bool = False,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.flush_every = max(1, flush_every)
        if not flush_seconds > 0:
            raise ValueError(f"flush_seconds must be a positive number of seconds, not {flush_seconds!r}")
        self.flush_seconds = float(flush_seconds)
        self.fsync = fsync
        self._file = open(self.path, "ab")
        self._buffer: list[bytes] = []
        self._oldest: float | None = None
        self._lock = threading.Lock()
        self._buffered = threading.Condition(self._lock)  # the flusher waits on it for a first record
        self._closed = False
        self.records_written = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._flush_periodically, name="diag-trace-writer", daemon=True)
            self._thread.start()

    @classmethod
    def for_process(cls, folder: str | os.PathLike, process_index: int, *, stem: str = "run", **kwargs):
        """The shard writer of one process of a multi-process run."""
        return cls(Path(folder) / f"{stem}.p{process_index}.jsonl", **kwargs)

    def write(self, record: _Record) -> None:
        self.write_encoded(encode_record(record), at_once=isinstance(record, Header))

    def write_many(self, records: Iterable[_Record]) -> None:
        for record in records:
            self.write(record)

    def write_encoded(self, line: bytes, *, at_once: bool = False) -> None:
        """Append an already encoded line (adapters that build JSON themselves use this).

        Args:
          line: one JSON record ending in a newline.
          at_once: write the buffer out now (a header: the file says what it is from the start).
        """
        with self._lock:
            if self._closed:
                raise ValueError(f"trace writer for {self.path} is closed")
            self._buffer.append(line)
            self.records_written += 1
            now = time.monotonic()
            if self._oldest is None:
                self._oldest = now
                self._buffered.notify()
            if at_once or len(self._buffer) >= self.flush_every or now - self._oldest >= self.flush_seconds:
                self._flush_locked()

    def flush(self) -> None:
        with self._lock:
            if not self._closed:
                self._flush_locked()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._buffered.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            if self._closed:
                return
            self._flush_locked()
            self._file.close()
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _flush_locked(self) -> None:
        if self._buffer:
            # One write call of whole lines: a concurrent reader sees complete records or nothing.
            self._file.write(b"".join(self._buffer))
            self._buffer.clear()
        self._oldest = None
        self._file.flush()
        if self.fsync:
            os.fsync(self._file.fileno())

    def _flush_periodically(self) -> None:
        with self._lock:
            while not self._stop.is_set() and not self._closed:
                if self._oldest is None:
                    self._buffered.wait()  # until a record arrives in the empty buffer (or close)
                    continue
                left = self._oldest + self.flush_seconds - time.monotonic()
                if left > 0:
                    self._buffered.wait(left)  # releases the lock: writers go on meanwhile
                    continue
                self._flush_locked()


def write_trace(path: str | os.PathLike, records: Iterable[_Record]) -> Path:
    """Write a whole trace at once (tests, importers, examples)."""
    with TraceWriter(path, flush_every=10_000, background=False) as writer:
        writer.write_many(records)
    return Path(path)


__all__ = ["TraceWriter", "encode_record", "write_trace", "Header"]
