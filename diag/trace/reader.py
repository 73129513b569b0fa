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
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path

import numpy as np
import orjson

from diag.errors import DiagInputError, Problem
from diag.trace.builder import TraceBuilder
from diag.trace.columnar import Trace
from diag.trace.limits import MAX_DEPTH, MAX_LINE_BYTES, excerpt, has_surrogates, replace_surrogates
from diag.trace.records import RECORD_KINDS, SCHEMA_MAJOR, SCHEMA_NAME, SCHEMA_VERSION
from diag.trace.shards import shard_problems

SHARD_SUFFIXES = (".jsonl", ".json")
_DOCUMENT_LIMIT = 256 << 20  # a single JSON document larger than this is read as JSONL
_READ_BYTES = 1 << 18  # lines are read, parsed and fed this many bytes at a time (see _feed_block)
ALL_RUNS = 0  # ``run=ALL_RUNS``: read every run of a file as one (what read_records does)
TRACE_EXAMPLE = ('a trace is one JSON object per line, a header first: '
                 '{"kind":"header","schema":"diag.trace/1","run_id":"r1","framework":"torch"} then step records '
                 'such as {"kind":"step","step":0,"loss":2.3} (diag schema prints the full format)')


def loads(text: bytes):
    """Parse one JSON value; also accepts the bare NaN/Infinity tokens other writers emit.

    Raises ValueError (never RecursionError or a huge-integer error) for anything unreadable; a
    lone surrogate in a string becomes U+FFFD.
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as e:
        if "depth limit" in str(e) or "recursion" in str(e):
            raise ValueError(f"the value nests too deeply (a record nests at most {MAX_DEPTH} levels)") from None
    try:
        value = json.loads(text, parse_int=_integer)
    except RecursionError:
        raise ValueError(f"the value nests too deeply (a record nests at most {MAX_DEPTH} levels)") from None
    return replace_surrogates(value) if has_surrogates(value) else value


def _integer(digits: str) -> int:
    if len(digits.lstrip("-")) > 19:  # past int64: refused before Python's digit-limit error
        raise ValueError(f"integer of {len(digits)} digits is out of range")
    return int(digits)


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


_SAMPLE_BYTES = 1 << 18


def estimate_lines(path: Path) -> int | None:
    """A little more than the lines of a large file of alike lines, from three samples; else None.

    The samples (256 KiB at the start after the first line, the middle and the end) cost a few
    reads where counting reads the whole file. When their mean line lengths differ by more than 5%
    or a sample holds fewer than 16 lines, the file is not one of alike lines and None says to
    count. The estimate takes the shortest mean (the most lines) and adds 2%: a builder sized
    by it holds the rows without regrowing, and a file that fooled the samples only makes it grow.
    """
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            first = len(f.readline(MAX_LINE_BYTES + 1))  # the header: longer than the records
            body = size - first
            if body < 8 * _SAMPLE_BYTES:
                return None  # counting a small file costs little
            lengths = []
            for at in (first, first + body // 2, size - _SAMPLE_BYTES):
                f.seek(at)
                sample = f.read(_SAMPLE_BYTES)
                start = 0 if at == first else sample.find(b"\n") + 1  # after a line cut by the sample
                end = sample.rfind(b"\n") + 1
                lines = sample.count(b"\n", start, end)
                if lines < 16:
                    return None
                lengths.append((end - start) / lines)
    except OSError:
        return None
    if max(lengths) > 1.05 * min(lengths):
        return None
    return 1 + int(body / min(lengths) * 1.02) + 64


def count_lines(path: Path) -> int:
    """Newlines in a file, read in large chunks (a cheap upper bound on its records)."""
    # numpy compares bytes about four times faster than bytes.count finds b"\n" in JSON text.
    total = 0
    buffer = bytearray(1 << 20)
    with open(path, "rb", buffering=0) as f:
        while size := f.readinto(buffer):
            total += int(np.count_nonzero(np.frombuffer(buffer, dtype=np.uint8, count=size) == 10))
    return total + 1


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
            watch = _RunWatch(stop=run == 1, restart=builder.reset if run is None else None)
            _read_file(p, builder, allow_empty=False, run=run, watch=watch)
            return builder
        except _SeveralRuns:
            builder = None
    builder = builder or TraceBuilder(str(p), capacity=count_lines(p))
    builder.start_shard(str(p), 0)
    _read_file(p, builder, allow_empty=False, run=run)
    return builder


class _SeveralRuns(Exception):
    """A one-pass reading met a second run (it reads the file again, runs first)."""


class _RunWatch:
    """``find_runs``' definition of a run's first line, applied line by line during a reading.

    A line starts a run when it is a header (at most ``MAX_LINE_BYTES``, holds the bytes
    ``"header"``, parses to an object whose kind is ``"header"``) and a record line (any other
    line that is not blank) came since the last header or the top.

    Args:
      stop: raise ``_SeveralRuns`` at the second run's first line.
      restart: called at each run's first line after the first, before the line is fed.
    """

    def __init__(self, stop: bool = False, restart=None):
        self.starts = [1]
        self.pending = False  # a record line since the last header (or the top)
        self.stop = stop
        self.restart = restart

    def header(self, number: int, line: bytes, raw) -> bool:
        """Note a parsed line; True when it is a header by find_runs' definition."""
        if type(raw) is dict and raw.get("kind") == "header" and b'"header"' in line:
            if self.pending:
                if self.stop:
                    raise _SeveralRuns
                self.starts.append(number)
                if self.restart is not None:
                    self.restart()
            self.pending = False
            return True
        self.pending = True
        return False


def find_runs(path: Path) -> list[int]:
    """The first line of each run in a JSONL file: line 1, then each header that follows records.

    A header right after another header (or at the top) does not start a run: only records do.
    Only lines holding the bytes ``"header"`` are looked at (found with ``bytes.find``, so the
    rest of the file is never split into lines) and parsed; between two of them, any byte that is
    not whitespace is a record. This costs about one ``memchr`` pass over the file.
    """
    starts = [1]
    pending = False  # a record line since the last header (or the top)
    line_base = 0  # lines before ``buffer``
    rest = b""
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(1 << 20)
            buffer = rest + chunk
            end = buffer.rfind(b"\n") + 1 if chunk else len(buffer)  # complete lines (all of it at the end)
            rest = buffer[end:] if chunk else b""
            done = 0  # bytes of ``buffer`` accounted for
            counted = 0  # newlines counted in buffer[:done]
            at = buffer.find(b'"header"', 0, end)
            while at != -1:
                start = buffer.rfind(b"\n", 0, at) + 1
                stop = buffer.find(b"\n", at, end)
                stop = end if stop == -1 else stop
                if buffer[done:start].strip():
                    pending = True
                counted += buffer.count(b"\n", done, start)
                line = buffer[start:stop]
                if len(line) <= MAX_LINE_BYTES and _is_header(line):
                    if pending:
                        starts.append(line_base + counted + 1)
                        pending = False
                else:
                    pending = True
                done = min(stop + 1, end)
                counted += 1 if stop < end else 0
                at = buffer.find(b'"header"', done, end) if done < end else -1
            if buffer[done:end].strip():
                pending = True
            line_base += counted + buffer.count(b"\n", done, end)
            if not chunk:
                break
    return starts


def _is_header(line: bytes) -> bool:
    try:
        raw = loads(line)
    except ValueError:
        return False
    return isinstance(raw, dict) and raw.get("kind") == "header"


def _read_file(path: Path, builder: TraceBuilder, *, allow_empty: bool, run: int | None = None,
               watch: _RunWatch | None = None) -> None:
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
            _read_lines(path, handle, builder, watch=watch)
            builder.runs = len(watch.starts)
            builder.run = builder.runs if run is None else (run or 1)
            if run is None and builder.runs > 1:  # where the other reading puts it: first
                builder.problems.insert(problems_before, _runs_warning(path, watch.starts, builder.runs))
        else:
            handle.seek(0)
            lines = _choose_run(path, builder, run)
            _read_lines(path, handle, builder, lines)
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
    builder.problems.append(_runs_warning(path, starts, chosen))
    return first, last


def _runs_warning(path: Path, starts: list[int], chosen: int) -> Problem:
    first = starts[chosen - 1]
    last = starts[chosen] - 1 if chosen < len(starts) else None
    span = f"lines {first}-{last}" if last else f"from line {first}"
    which = "the last" if chosen == len(starts) else f"run {chosen}"
    return Problem(
        str(path), f"the file holds {len(starts)} runs (starting at lines {', '.join(map(str, starts))}): a run was "
        f"recorded again to the same path; read {which}, {span} (--run N reads another)", severity="warning")


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
        if _header_problem(path, builder, raw, index + 1):
            continue
        builder.feed(raw, index + 1, where=f"records[{index}]")


def _read_lines(path: Path, handle, builder: TraceBuilder, lines: tuple[int, int | None] = (1, None),
                watch: _RunWatch | None = None) -> None:
    # Large reads split on newlines: cheaper than iterating the file line by line, and only one
    # chunk is held at a time. The piece after the last newline is the (possibly torn) last line.
    first, last = lines
    number = 0
    rest = b""
    while chunk := handle.read(_READ_BYTES):
        pieces = chunk.split(b"\n")
        if rest:  # it holds no newline: only the chunk's first line grows
            pieces[0] = rest + pieces[0]
        rest = pieces.pop()
        if len(rest) > MAX_LINE_BYTES:  # no newline in sight: do not hold an endless line
            rest = rest[: MAX_LINE_BYTES + 1]
        if (pieces and first <= number + 1 and (last is None or number + len(pieces) <= last)
                and _feed_block(path, builder, number + 1, pieces, watch)):
            number += len(pieces)
            continue
        for line in pieces:
            number += 1
            if number < first or (last is not None and number > last):
                continue
            if line and not line.isspace():
                _feed_line(path, builder, number, line, watch=watch)
    if rest and not rest.isspace() and (last is None or number + 1 <= last):
        _feed_line(path, builder, number + 1, rest, torn=True, watch=watch)


_KIND = itemgetter("kind")


def _feed_block(path: Path, builder: TraceBuilder, number: int, lines: list[bytes], watch: _RunWatch | None) -> bool:
    """Feed lines ``number``, ``number + 1``, ... when every one of them is a JSON value; else False.

    Parsing a block first lets the builder take its step records together
    (``TraceBuilder.feed_steps``). A block with a line that is blank, too long or not JSON is
    refused whole (before anything is fed) and read line by line, which reports it.
    """
    if max(map(len, lines)) > MAX_LINE_BYTES:
        return False
    try:
        values = list(map(orjson.loads, lines))  # what ``loads`` returns when orjson reads a line
    except orjson.JSONDecodeError:
        return False
    try:
        kinds = list(map(_KIND, values))
    except (KeyError, TypeError):  # a record without a kind, or not an object
        kinds = [value.get("kind") if type(value) is dict else None for value in values]
    if kinds.count("step") == len(kinds):
        if watch is not None:
            watch.pending = True
        if not builder.feed_steps(values):
            for index, value in enumerate(values):
                builder.feed(value, number + index, may_hold_null=b"null" in lines[index])
        return True
    # Headers end one stretch of records and may start a run: each is read on its own, in order.
    start = 0
    for index, kind in enumerate(kinds):
        if kind == "header":
            _feed_segment(path, builder, number, lines, values, kinds, start, index)
            if watch is not None and start < index:
                watch.pending = True
            if watch is not None:
                watch.header(number + index, lines[index], values[index])
            _feed_parsed(path, builder, number + index, lines[index], values[index])
            start = index + 1
    if watch is not None and start < len(values):
        watch.pending = True
    _feed_segment(path, builder, number, lines, values, kinds, start, len(values))
    return True


def _feed_segment(path: Path, builder: TraceBuilder, number: int, lines: list[bytes], values: list, kinds: list,
                  start: int, stop: int) -> None:
    """Feed ``values[start:stop]`` (no header among them): the step records at once when the builder
    takes them, then the others in order; or all of them one by one, in order."""
    if start >= stop:
        return
    steps = [index for index in range(start, stop) if kinds[index] == "step"]
    if steps and builder.feed_steps(values[start:stop] if len(steps) == stop - start else [values[i] for i in steps]):
        # Taken steps leave no problem and no state the other records read: the order is kept.
        for index in range(start, stop):
            if kinds[index] != "step":
                _feed_parsed(path, builder, number + index, lines[index], values[index])
        return
    for index in range(start, stop):
        _feed_parsed(path, builder, number + index, lines[index], values[index])


def feed_line(path: Path, builder: TraceBuilder, number: int, line: bytes, *, torn: bool = False) -> None:
    """Parse one JSONL line (line ``number`` of ``path``) and feed it to ``builder``.

    A line that is not JSON is reported as an error, or, with ``torn=True`` (the unterminated last
    line of a killed run), as a warning. A header of another format or major version is reported
    and skipped (the records after it are still read).
    """
    _feed_line(path, builder, number, line, torn=torn)


def _feed_line(path: Path, builder: TraceBuilder, number: int, line: bytes, *, torn: bool = False,
               watch: _RunWatch | None = None) -> None:
    if len(line) > MAX_LINE_BYTES:
        if watch is not None:
            watch.pending = True
        builder.problems.append(Problem(str(path), f"line is {len(line):,} bytes long (at most {MAX_LINE_BYTES:,}); "
                                        "line skipped", line=number))
        return
    try:
        raw = loads(line)
    except ValueError as e:
        if watch is not None:
            watch.pending = True
        if torn:
            builder.problems.append(Problem(
                str(path), "last line is incomplete (the run was probably killed mid-write); "
                f"read the {builder.records} records before it", line=number, severity="warning"))
        else:
            builder.problems.append(Problem(str(path), f"not valid JSON ({_first_line(e)}); line skipped",
                                            line=number))
        return
    if watch is not None:
        watch.header(number, line, raw)
    _feed_parsed(path, builder, number, line, raw)


def _feed_parsed(path: Path, builder: TraceBuilder, number: int, line: bytes, raw) -> None:
    if (type(raw) is not dict or raw.get("kind") != "step") and _header_problem(path, builder, raw, number):
        return
    builder.feed(raw, number, may_hold_null=b"null" in line)


def schema_version(value) -> tuple[int, int] | None:
    """``(major, minor)`` of a ``diag.trace/MAJOR[.MINOR]`` schema string, or None for anything else."""
    if not isinstance(value, str):
        return None
    name, slash, number = value.partition("/")
    if name != SCHEMA_NAME or not slash:
        return None
    major, _, minor = number.partition(".")
    if not major.isdigit() or not (minor == "" or minor.isdigit()) or len(number) > 12:
        return None
    return int(major), int(minor or 0)


def _header_problem(path: Path, builder: TraceBuilder, raw, number: int) -> bool:
    """Report a header of another format or major version; True when the line is to be skipped.

    Versions compare as versions: any minor version of this major is read (a newer minor only adds
    optional fields). The records after a skipped header are still read, as the next run.
    """
    if not isinstance(raw, dict) or raw.get("kind") != "header" or "schema" not in raw:
        return False
    version = schema_version(raw["schema"])
    if version is not None and version[0] == SCHEMA_MAJOR:
        return False
    if version is None:
        message = f"not a diag trace header: schema is {excerpt(raw['schema'])} (this diag reads {SCHEMA_VERSION!r})"
    else:
        where_read = "pip install -U diag may read it" if version[0] > SCHEMA_MAJOR else "an older diag reads it"
        message = (f"trace format {excerpt(raw['schema'])} is not supported by this diag (it reads "
                   f"{SCHEMA_VERSION!r}; {where_read})")
    builder.problems.append(Problem(str(path), f"{message}; header skipped, the records after it are read as "
                                    "this version's", line=number, field="schema"))
    return True


def _first_line(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


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
