"""Follow a trace as a run writes it: read new lines, validate them, grow the columnar trace.

``TraceFollower.poll()`` does the work of one tick and reports what changed; it reads only the
bytes appended since the previous tick and feeds each complete line to one long-lived
``diag.trace.builder.TraceBuilder`` (the reader's own validation, fast path included), whose
``build()`` is a cheap snapshot. A trace given as one JSON document or as a folder of shards is
reloaded whole when it changes: those are finished or multi-process runs, not one growing file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from diag.errors import DiagInputError, Problem
from diag.trace import reader as trace_reader
from diag.trace.builder import TraceBuilder
from diag.trace.columnar import Trace

from diag.tui.tail import JsonlTail


@dataclass
class PollResult:
    """What one poll found."""

    new_records: int = 0
    new_steps: int = 0
    restarted: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.new_records or self.restarted)


class TraceFollower:
    """Incremental loader of one trace path.

    Args:
      path: a ``.jsonl`` file (followed line by line), a ``.json`` document or a folder of shards.

    Example:
      >>> import tempfile, os
      >>> from diag.trace import Header, Step, write_trace
      >>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
      >>> _ = write_trace(path, [Header(run_id="r", framework="jax"), Step(step=0, loss=1.0)])
      >>> follower = TraceFollower(path)
      >>> follower.poll().new_steps
      1
      >>> follower.trace().num_steps
      1
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.fatal: DiagInputError | None = None
        self._tail = JsonlTail(self.path)
        self._builder: TraceBuilder | None = None
        self._steps = 0
        self._whole: Trace | None = None  # document or folder mode
        self._whole_stamp: tuple | None = None
        self._mode: str | None = None  # "jsonl" | "whole", decided once there is something to read

    @property
    def pending_line(self) -> bytes:
        """An unterminated last line being written (held back until complete)."""
        return self._tail.pending if self._mode == "jsonl" else b""

    @property
    def caught_up(self) -> bool:
        """True when the last poll read everything the file held."""
        return self._mode != "jsonl" or self._tail.at_end

    def poll(self, max_bytes: int = 8 << 20) -> PollResult:
        """Read up to ``max_bytes`` appended since the last poll and fold them into the trace."""
        if self.fatal is not None:
            return PollResult()
        try:
            if self._mode is None:
                self._mode = self._detect_mode()
                if self._mode is None:
                    return PollResult()
            if self._mode == "whole":
                return self._poll_whole()
            return self._poll_jsonl(max_bytes)
        except DiagInputError as e:
            self.fatal = e
            return PollResult(restarted=True)

    def trace(self) -> Trace:
        """The trace read so far (a snapshot: later polls do not change it)."""
        if self._mode == "whole" and self._whole is not None:
            return self._whole
        if self._builder is None:
            return TraceBuilder(str(self.path)).build()
        trace = self._builder.build()
        if self._tail.pending.strip():
            trace.problems.append(Problem(
                str(self.path), "last line is incomplete (still being written, or the run was killed "
                f"mid-write); read the {self._builder.records} records before it",
                line=self._tail.line_number + 1, severity="warning",
            ))
        return trace

    def _detect_mode(self) -> str | None:
        if self.path.is_dir():
            return "whole"
        try:
            with open(self.path, "rb") as f:
                head = f.read(4096).lstrip()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise DiagInputError(Problem(str(self.path), f"cannot read: {e.strerror or e}")) from None
        if not head:
            return None
        first_line = head.split(b"\n", 1)[0]
        if head[:1] == b"[" or (head[:1] == b"{" and b'"records"' in first_line):
            return "whole"
        return "jsonl"

    def _new_builder(self) -> TraceBuilder:
        builder = TraceBuilder(str(self.path), capacity=trace_reader.count_lines(self.path))
        builder.start_shard(str(self.path), 0)
        return builder

    def _poll_jsonl(self, max_bytes: int) -> PollResult:
        lines = self._tail.read_lines(max_bytes)
        restarted = self._tail.restarted or self._builder is None
        if self._tail.restarted:
            self._tail.restarted = False
            self._builder = None
        if self._builder is None:
            self._builder = self._new_builder()
            self._steps = 0
        builder = self._builder
        before = builder.records
        for number, line in lines:
            if line.strip():
                trace_reader.feed_line(self.path, builder, number, line, torn=False)
        if builder.records == 0 and builder.problems and builder.problems[0].field == "schema":
            # The file starts with another format's header (the reader skips it and reads on;
            # with nothing else read, this is not a diag trace).
            first = builder.problems[0]
            raise DiagInputError(Problem(first.path, first.message.split("; header skipped")[0],
                                         line=first.line, field="schema"))
        steps = builder.step_rows
        result = PollResult(builder.records - before, steps - self._steps, restarted)
        self._steps = steps
        return result

    def _poll_whole(self) -> PollResult:
        stamp = _stamp(self.path)
        if stamp == self._whole_stamp:
            return PollResult()
        self._whole_stamp = stamp
        before = self._whole.num_steps if self._whole is not None else 0
        self._whole = trace_reader.read_into(self.path).build()
        return PollResult(self._whole.num_steps + len(self._whole.evals) + len(self._whole.events),
                          self._whole.num_steps - before, True)


def _stamp(path: Path) -> tuple:
    if path.is_dir():
        return tuple(sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir() if f.is_file()))
    stat = path.stat()
    return (stat.st_size, stat.st_mtime_ns)
