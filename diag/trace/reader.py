"""Read trace records from JSONL, one JSON document, or a folder of shards.

The reader never trusts the file. Each bad record is reported with its line, field and reason and
the valid records around it are kept; a torn last line (a run killed mid-write) is the normal end
of a crashed run and only warns. Lines that are too long, too deeply nested or hold integers out of
range are skipped the same way (``diag.trace.limits``). Only inputs that hold nothing usable raise
``DiagInputError``.

One file may hold several runs: a run recorded again to the same path appends a second header.
Each header that follows records starts a new run; ``load_trace`` reads the last run unless
``run=N`` picks another, and says in a warning how many runs the file holds. A header of another
version of the format starts a new run too; versions compare as versions (``diag.trace/1.2`` is
read by a diag that reads ``diag.trace/1``), and a header of another major version or another
format is reported and skipped, not a reason to drop the records around it.

Files are read in blocks of lines (256 KiB); each block is parsed and goes into a ``TraceBuilder``
before the next is read, its step records together (``TraceBuilder.feed_steps``), so loading a
large trace never holds the whole file or more than a block of its records in memory. A block
with a line that is not JSON, blank or too long is read line by line, which reports the line. A
file is read once: the runs it holds are found as it is read, and for the last run (the default)
the builder starts afresh at each run's first line; only ``run=1`` of a file that holds several
reads it again, after a search for its runs.

Beside it: ``jsonl`` (lines into a builder), ``runs`` (the runs of a file), ``line_count`` (sizing a
builder), ``versions`` (which headers are read) and ``parse`` (one JSON value); what they export
for users is importable from here as before.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from diag.errors import DiagInputError, Problem
from diag.trace.builder import TraceBuilder
from diag.trace.columnar import Trace
from diag.trace.jsonl import feed_line, read_lines
from diag.trace.line_count import count_lines, estimate_lines
from diag.trace.parse import loads
from diag.trace.runs import ALL_RUNS, RunWatch, SeveralRuns, find_runs, runs_warning
from diag.trace.shards import shard_problems
from diag.trace.versions import header_problem, schema_version

SHARD_SUFFIXES = (".jsonl", ".json")
_DOCUMENT_LIMIT = 256 << 20  # a single JSON document larger than this is read as JSONL
TRACE_EXAMPLE = ('a trace is one JSON object per line, a header first: '
                 '{"kind":"header","schema":"diag.trace/1","run_id":"r1","framework":"torch"} then step records '
                 'such as {"kind":"step","step":0,"loss":2.3} (diag schema prints the full format)')


def load_trace(path: str | os.PathLike, run: int | None = None) -> Trace:
    """Load a trace file or folder of shards into a columnar ``Trace``.

    Args:
      path: a ``.jsonl``/``.json`` trace or a folder of shards.
      run: which run of a file that holds several (1-based; default the last).

    Bad records are skipped and listed in ``Trace.problems``; a trace with nothing usable (no
    record, or a header and nothing after it) raises ``DiagInputError``.
    """
    builder = read_into(path, run=run)
    if builder.records and builder.records == len(builder.headers):
        where = f"run {builder.run} of {builder.runs}" if builder.runs > 1 else "the trace"
        raise DiagInputError(
            Problem(str(path), f"{where} holds a header but no step, eval, data, check or event record: "
                    "nothing to diagnose (was the run stopped before its first step?)"),
            hint=f"--run N reads another run of this file" if builder.runs > 1 else TRACE_EXAMPLE)
    trace = builder.build()
    trace.run, trace.runs = builder.run, builder.runs
    return trace


def read_into(path: str | os.PathLike, builder: TraceBuilder | None = None, *,
              run: int | None = None) -> TraceBuilder:
    """Feed the records of a trace file or folder of shards into a builder (a new one by default).

    Args:
      path: the file or folder.
      builder: where the records go.
      run: the run to read from a file that holds several (1-based); None: the last;
        ``ALL_RUNS``: all of them. The builder gets ``run`` and ``runs`` set.
    """
    p = Path(path)
    if not p.exists():
        raise DiagInputError(Problem(str(p), "no such file or folder"),
                             hint="pass the path of a trace (.jsonl or .json) or a folder of shards")
    if p.is_dir():
        shards = sorted((f for f in p.iterdir() if f.is_file() and f.name.endswith(SHARD_SUFFIXES)),
                        key=_natural_key)
        if not shards:
            raise DiagInputError(Problem(str(p), "folder holds no trace shards"),
                                 hint="expected files like run.p0.jsonl, run.p1.jsonl")
        builder = builder or TraceBuilder(str(p), capacity=sum(count_lines(s) for s in shards))
        builder.run = builder.runs = 1
        held = []
        for rank, shard in enumerate(shards):
            builder.start_shard(str(shard), rank)
            first = len(builder.headers)
            _read_file(shard, builder, allow_empty=True, run=run)
            held.append((str(shard), builder.headers[first:]))
        builder.problems.extend(shard_problems(str(p), held))  # duplicate or missing processes
        if builder.records == 0:
            raise DiagInputError(Problem(str(p), "no valid records in any shard"), hint=TRACE_EXAMPLE)
        return builder
    if builder is None and run in (None, 1, ALL_RUNS):
        # One pass, watching for a second run as it goes (most files hold one): no search for
        # headers first. A file that holds several is read again the other way.
        builder = TraceBuilder(str(p), capacity=estimate_lines(p) or count_lines(p))
        builder.start_shard(str(p), 0)
        try:
            # The last run (the default): each run's first line starts the builder afresh, so the
            # records of earlier runs are read but not kept. Run 1: stop at run 2 and read again.
            watch = RunWatch(stop=run == 1, restart=builder.reset if run is None else None)
            _read_file(p, builder, allow_empty=False, run=run, watch=watch)
            return builder
        except SeveralRuns:
            builder = None
    builder = builder or TraceBuilder(str(p), capacity=count_lines(p))
    builder.start_shard(str(p), 0)
    _read_file(p, builder, allow_empty=False, run=run)
    return builder


def _read_file(path: Path, builder: TraceBuilder, *, allow_empty: bool, run: int | None = None,
               watch: RunWatch | None = None) -> None:
    before = builder.records
    problems_before = len(builder.problems)
    try:
        size = path.stat().st_size
        handle = open(path, "rb")
    except OSError as e:
        raise DiagInputError(Problem(str(path), f"cannot read: {e.strerror or e}")) from None
    with handle:
        head = handle.read(1 << 16)
        if not head.strip():
            if allow_empty:
                builder.problems.append(Problem(str(path), "empty shard", severity="warning"))
                return
            raise DiagInputError(Problem(str(path), "the trace is empty"),
                                 hint="a trace holds at least a header record, one JSON object per line")
        handle.seek(0)
        document = _as_document(path, head, handle, size)
        if document is not None:
            builder.run = builder.runs = 1
            _read_document(path, document, builder)
        elif watch is not None:
            handle.seek(0)
            read_lines(path, handle, builder, watch=watch)
            builder.runs = len(watch.starts)
            builder.run = builder.runs if run is None else (run or 1)
            if run is None and builder.runs > 1:  # where the other reading puts it: first
                builder.problems.insert(problems_before, runs_warning(path, watch.starts, builder.runs))
        else:
            handle.seek(0)
            lines = _choose_run(path, builder, run)
            read_lines(path, handle, builder, lines)
    if builder.records == before and not allow_empty:
        new = builder.problems[problems_before:]
        first = next((p for p in new if p.severity == "error"), None)
        if first is None and new:
            raise DiagInputError(
                Problem(str(path), "the trace holds only an incomplete record (the run was killed before "
                        "its first complete line was written)", line=new[0].line))
        detail = f" (first problem: {first.field + ': ' if first and first.field else ''}{first.message})" if first else ""
        which = f" in run {builder.run} of the {builder.runs} runs in this file (--run N reads another)" if builder.runs > 1 else ""
        if first is not None and first.field == "schema":  # a header of another version and nothing else
            raise DiagInputError(Problem(str(path), first.message.split("; header skipped")[0] + which,
                                         line=first.line, field="schema"), hint=TRACE_EXAMPLE)
        raise DiagInputError(
            Problem(str(path), f"no valid trace records{which}{detail}", line=first.line if first else None),
            hint=TRACE_EXAMPLE,
        )


def _choose_run(path: Path, builder: TraceBuilder, run: int | None) -> tuple[int, int | None]:
    """The lines (first, last or None) of the run to read, with a warning when the file holds several."""
    starts = find_runs(path)
    builder.runs = len(starts)
    if run == ALL_RUNS or len(starts) == 1:
        builder.run = len(starts) if run is None else (run or 1)
        if run not in (None, ALL_RUNS, 1):
            raise DiagInputError(Problem(str(path), f"--run {run}: the file holds one run"), hint="leave out --run")
        return 1, None
    chosen = len(starts) if run is None else run
    if not 1 <= chosen <= len(starts):
        raise DiagInputError(Problem(str(path), f"--run {run}: the file holds {len(starts)} runs"),
                             hint=f"pick a run from 1 to {len(starts)}")
    builder.run = chosen
    first = starts[chosen - 1]
    last = starts[chosen] - 1 if chosen < len(starts) else None
    builder.problems.append(runs_warning(path, starts, chosen))
    return first, last


def _as_document(path: Path, head: bytes, handle, size: int):
    """The parsed value when the whole file is one JSON document of records, else None."""
    stripped = head.lstrip()
    if stripped[:1] == b"[":
        pass
    elif stripped[:1] == b"{":
        # A JSONL file also starts with '{': only a {"records": [...]} document is read whole.
        if b'"records"' not in stripped[:4096]:
            return None
    else:
        return None
    if size > _DOCUMENT_LIMIT:
        return None
    try:
        value = loads(handle.read())
    except ValueError:
        return None
    if isinstance(value, list) or (isinstance(value, dict) and "records" in value):
        return value
    return None


def _read_document(path: Path, document, builder: TraceBuilder) -> None:
    records = document if isinstance(document, list) else document.get("records")
    if not isinstance(records, list):
        raise DiagInputError(Problem(str(path), "'records' must be a list of record objects", field="records"))
    for index, raw in enumerate(records):
        if header_problem(path, builder, raw, index + 1):
            continue
        builder.feed(raw, index + 1, where=f"records[{index}]")


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


# ---------------------------------------------------------------------- record lists


@dataclass
class ReadResult:
    """Valid records in file order with the line each came from, and what was wrong (small traces)."""

    path: str
    records: list = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


class _RecordList(TraceBuilder):
    """A builder that also keeps every validated record as a model (tests, importers, tools)."""

    def __init__(self, path: str):
        super().__init__(path)
        self.kept: list = []
        self.kept_lines: list[int] = []

    def _fast_step(self, raw: dict, may_hold_null: bool = True) -> bool:
        return False  # always validate into a model

    def add_record(self, record, number: int | None = None) -> None:
        super().add_record(record, number)
        self.kept.append(record)
        self.kept_lines.append(number or 0)


def read_records(path: str | os.PathLike, run: int | None = ALL_RUNS) -> ReadResult:
    """Every valid record of a trace as pydantic models, with problems (for small traces).

    All runs of a file that holds several, unless ``run`` picks one (None: the last).
    """
    builder = read_into(path, _RecordList(str(path)), run=run)
    return ReadResult(path=str(path), records=builder.kept, lines=builder.kept_lines,
                      problems=builder.problems)


__all__ = ["ALL_RUNS", "ReadResult", "count_lines", "estimate_lines", "find_runs", "schema_version", "feed_line", "load_trace", "loads", "read_into", "read_records"]
