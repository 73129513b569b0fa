"""Feed the lines of a JSONL trace into a builder: a block of lines at a time, or one by one.

Each block of lines (256 KiB) is parsed before it is fed, so the builder takes its step records
together (``TraceBuilder.feed_steps``). A block with a line that is blank, too long or not JSON is
read line by line, which reports the line. A ``RunWatch`` sees every line that is read.
"""

from __future__ import annotations

from io import BytesIO
from operator import itemgetter
from pathlib import Path

import orjson

from diag.errors import Problem
from diag.trace.builder import TraceBuilder
from diag.trace.limits import MAX_LINE_BYTES
from diag.trace.parse import loads
from diag.trace.runs import RunWatch
from diag.trace.versions import header_problem

READ_BYTES = 1 << 18  # lines are read, parsed and fed this many bytes at a time (see _feed_block)


def read_lines(path: Path, handle, builder: TraceBuilder, lines: tuple[int, int | None] = (1, None),
               watch: RunWatch | None = None) -> None:
    """Feed lines ``first`` to ``last`` (1-based, None: to the end) of the open file ``handle``."""
    # Large reads cut into lines: cheaper than iterating the file line by line, and only one chunk
    # is held at a time. The piece after the last newline is the (possibly torn) last line.
    # BytesIO.readlines finds newlines with memchr, three times faster than bytes.split's
    # byte-by-byte loop; its lines keep their newline, which JSON reads as whitespace.
    first, last = lines
    number = 0
    rest = b""
    while chunk := handle.read(READ_BYTES):
        pieces = BytesIO(chunk).readlines()
        if rest:  # it holds no newline: only the chunk's first line grows
            pieces[0] = rest + pieces[0]
        rest = b"" if pieces[-1][-1:] == b"\n" else pieces.pop()
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
            if not line.isspace():  # not blank (a blank line is its newline)
                _feed_line(path, builder, number, line[:-1], watch=watch)
    if rest and not rest.isspace() and (last is None or number + 1 <= last):
        _feed_line(path, builder, number + 1, rest, torn=True, watch=watch)


_KIND = itemgetter("kind")


def _feed_block(path: Path, builder: TraceBuilder, number: int, lines: list[bytes], watch: RunWatch | None) -> bool:
    """Feed lines ``number``, ``number + 1``, ... (each ending with its newline) when every one of them
    is a JSON value; else False.

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
               watch: RunWatch | None = None) -> None:
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
    if (type(raw) is not dict or raw.get("kind") != "step") and header_problem(path, builder, raw, number):
        return
    builder.feed(raw, number, may_hold_null=b"null" in line)


def _first_line(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."
