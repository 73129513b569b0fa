"""Read trace records from JSONL, one JSON document, or a folder of shards.

The reader never trusts the file. Each bad record is reported with its line, field and reason and
the valid records around it are kept; a torn last line (a run killed mid-write) is the normal end
of a crashed run and only warns. Only inputs that hold nothing usable raise ``DiagInputError``.

Files are read line by line and each record goes straight into a ``TraceBuilder``, so loading a
large trace never holds the whole file or all of its records in memory.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from diag.errors import DiagInputError, Problem
from diag.trace.builder import TraceBuilder
from diag.trace.columnar import Trace
from diag.trace.records import RECORD_KINDS, SCHEMA_NAME, SCHEMA_VERSION

SHARD_SUFFIXES = (".jsonl", ".json")
_DOCUMENT_LIMIT = 256 << 20  # a single JSON document larger than this is read as JSONL


def loads(text: bytes):
    """Parse one JSON value; also accepts the bare NaN/Infinity tokens other writers emit."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def load_trace(path: str | os.PathLike) -> Trace:
    """Load a trace file or folder of shards into a columnar ``Trace``.

    Bad records are skipped and listed in ``Trace.problems``; a trace with nothing usable raises
    ``DiagInputError``.
    """
    return read_into(path).build()


def count_lines(path: Path) -> int:
    """Newlines in a file, read in large chunks (a cheap upper bound on its records)."""
    total = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            total += chunk.count(b"\n")
    return total + 1


def read_into(path: str | os.PathLike, builder: TraceBuilder | None = None) -> TraceBuilder:
    """Feed every record of a trace file or folder of shards into a builder (a new one by default)."""
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
        for rank, shard in enumerate(shards):
            builder.start_shard(str(shard), rank)
            _read_file(shard, builder, allow_empty=True)
        if builder.records == 0:
            raise DiagInputError(Problem(str(p), "no valid records in any shard"))
        return builder
    builder = builder or TraceBuilder(str(p), capacity=count_lines(p))
    builder.start_shard(str(p), 0)
    _read_file(p, builder, allow_empty=False)
    return builder


def _read_file(path: Path, builder: TraceBuilder, *, allow_empty: bool) -> None:
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
            _read_document(path, document, builder)
        else:
            handle.seek(0)
            _read_lines(path, handle, builder)
    if builder.records == before and not allow_empty:
        new = builder.problems[problems_before:]
        first = next((p for p in new if p.severity == "error"), None)
        if first is None and new:
            raise DiagInputError(
                Problem(str(path), "the trace holds only an incomplete record (the run was killed before "
                        "its first complete line was written)", line=new[0].line))
        detail = f" (first problem: {first.field + ': ' if first and first.field else ''}{first.message})" if first else ""
        raise DiagInputError(
            Problem(str(path), f"no valid trace records{detail}", line=first.line if first else None),
            hint="each line must be a JSON object whose 'kind' is one of " + ", ".join(RECORD_KINDS),
        )


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
        _check_header(path, raw, index + 1)
        builder.feed(raw, index + 1, where=f"records[{index}]")


def _read_lines(path: Path, handle, builder: TraceBuilder) -> None:
    # Large reads split on newlines: cheaper than iterating the file line by line, and only one
    # chunk is held at a time. The piece after the last newline is the (possibly torn) last line.
    number = 0
    rest = b""
    while chunk := handle.read(1 << 20):
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            number += 1
            if line and not line.isspace():
                feed_line(path, builder, number, line)
    if rest and not rest.isspace():
        feed_line(path, builder, number + 1, rest, torn=True)


def feed_line(path: Path, builder: TraceBuilder, number: int, line: bytes, *, torn: bool = False) -> None:
    """Parse one JSONL line (line ``number`` of ``path``) and feed it to ``builder``.

    A line that is not JSON is reported as an error, or, with ``torn=True`` (the unterminated last
    line of a killed run), as a warning. A header of another schema version raises DiagInputError.
    """
    try:
        raw = loads(line)
    except ValueError as e:
        if torn:
            builder.problems.append(Problem(
                str(path), "last line is incomplete (the run was probably killed mid-write); "
                f"read the {builder.records} records before it", line=number, severity="warning"))
        else:
            builder.problems.append(Problem(str(path), f"not valid JSON ({_first_line(e)}); line skipped",
                                            line=number))
        return
    _check_header(path, raw, number)
    builder.feed(raw, number, may_hold_null=b"null" in line)


def _check_header(path: Path, raw, number: int) -> None:
    """A header of another format or major version stops the read: nothing after it can be trusted."""
    if not isinstance(raw, dict) or raw.get("kind") != "header":
        return
    version = raw.get("schema", SCHEMA_VERSION)
    if version == SCHEMA_VERSION:
        return
    name, _, _major = str(version).partition("/")
    if name != SCHEMA_NAME:
        raise DiagInputError(Problem(str(path), f"not a diag trace: schema is {version!r}", line=number,
                                     field="schema"), hint=f"expected {SCHEMA_VERSION!r}")
    raise DiagInputError(
        Problem(str(path), f"trace format {version!r} is not supported by this diag (it reads {SCHEMA_VERSION!r})",
                line=number, field="schema"),
        hint="upgrade diag (pip install -U diag) or re-record the run with this version",
    )


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


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


def read_records(path: str | os.PathLike) -> ReadResult:
    """Every valid record of a trace as pydantic models, with problems (for small traces)."""
    builder = read_into(path, _RecordList(str(path)))
    return ReadResult(path=str(path), records=builder.kept, lines=builder.kept_lines,
                      problems=builder.problems)


__all__ = ["ReadResult", "count_lines", "feed_line", "load_trace", "loads", "read_into", "read_records"]
