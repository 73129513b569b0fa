"""Read trace records from JSONL, one JSON document, or a folder of shards.

The reader never trusts the file. Each bad record is reported with its line, field and reason and
the valid records around it are kept; a torn last line (a run killed mid-write) is the normal end
of a crashed run and only warns. Only inputs that hold nothing usable raise ``DiagInputError``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from pydantic import TypeAdapter, ValidationError

from diag.errors import DiagInputError, Problem
from diag.trace.records import SCHEMA_NAME, SCHEMA_VERSION, Header, Record

_RECORD = TypeAdapter(Record)
SHARD_SUFFIXES = (".jsonl", ".json")


@dataclass
class ReadResult:
    """Valid records in file order, each with the line it came from, and what was wrong."""

    path: str
    records: list = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def read_records(path: str | os.PathLike) -> ReadResult:
    """Read every record of a trace file or a folder of shards (merged in shard order)."""
    p = Path(path)
    if not p.exists():
        raise DiagInputError(Problem(str(p), "no such file or folder"), hint="pass the path of a trace (.jsonl/.json)")
    if p.is_dir():
        return _read_folder(p)
    return _read_file(p)


def _read_folder(folder: Path) -> ReadResult:
    shards = sorted(f for f in folder.iterdir() if f.is_file() and f.name.endswith(SHARD_SUFFIXES))
    if not shards:
        raise DiagInputError(
            Problem(str(folder), "folder holds no trace shards"), hint="expected files like run.p0.jsonl, run.p1.jsonl"
        )
    merged = ReadResult(path=str(folder))
    for shard in shards:
        part = _read_file(shard, allow_empty=True)
        merged.records.extend(part.records)
        merged.lines.extend(part.lines)
        merged.problems.extend(part.problems)
    if not merged.records:
        raise DiagInputError(Problem(str(folder), "no valid records in any shard"))
    return merged


def _read_file(path: Path, *, allow_empty: bool = False) -> ReadResult:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DiagInputError(Problem(str(path), f"cannot read: {e.strerror or e}")) from None
    result = ReadResult(path=str(path))
    if not data.strip():
        if allow_empty:
            result.problems.append(Problem(str(path), "empty shard", severity="warning"))
            return result
        raise DiagInputError(
            Problem(str(path), "the trace is empty"), hint="a trace holds at least a header record"
        )
    document = _as_document(data)
    if document is not None:
        _read_document(path, document, result)
    else:
        _read_jsonl(path, data, result)
    _check_schema_version(path, result)
    if not result.records and not allow_empty:
        first = result.errors[0] if result.errors else Problem(str(path), "no records")
        raise DiagInputError(
            Problem(str(path), f"no valid trace records (first problem: {first.message})", line=first.line,
                    field=first.field),
            hint="each line must be a JSON object with a 'kind' of " + ", ".join(
                ("header", "step", "eval", "data", "check", "event")),
        )
    return result


def _as_document(data: bytes):
    """The parsed value when the whole file is one JSON document of records, else None."""
    head = data.lstrip()[:1]
    if head not in (b"[", b"{"):
        return None
    try:
        value = _loads(data)
    except ValueError:
        return None  # several JSON values: JSONL
    if isinstance(value, list) or (isinstance(value, dict) and "records" in value):
        return value
    return None


def _loads(text: bytes):
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # Python's json accepts the bare NaN/Infinity tokens that other writers emit.
        return json.loads(text)


def _read_document(path: Path, document, result: ReadResult) -> None:
    records = document if isinstance(document, list) else document.get("records")
    if not isinstance(records, list):
        raise DiagInputError(Problem(str(path), "'records' must be a list of record objects", field="records"))
    for index, raw in enumerate(records):
        _validate(path, raw, index + 1, result, where=f"records[{index}]")


def _read_jsonl(path: Path, data: bytes, result: ReadResult) -> None:
    lines = data.split(b"\n")
    torn_candidate = len(lines) - 1 if not data.endswith(b"\n") else -1
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        number = index + 1
        try:
            raw = _loads(line)
        except ValueError as e:
            if index == torn_candidate:
                result.problems.append(
                    Problem(str(path), "last line is incomplete (the run was probably killed mid-write); "
                            f"read the {len(result.records)} records before it", line=number, severity="warning")
                )
            else:
                result.problems.append(Problem(str(path), f"not valid JSON ({_short(e)}); line skipped", line=number))
            continue
        _validate(path, raw, number, result)


def _validate(path: Path, raw, number: int, result: ReadResult, where: str | None = None) -> None:
    if not isinstance(raw, dict):
        result.problems.append(
            Problem(str(path), f"expected a JSON object, got {type(raw).__name__}; skipped", line=number,
                    field=where)
        )
        return
    try:
        record = _RECORD.validate_python(raw)
    except ValidationError as e:
        for err in e.errors(include_url=False)[:5]:
            loc = [str(part) for part in err["loc"]]
            if loc and loc[0] == raw.get("kind"):
                loc = loc[1:]  # drop the union tag pydantic puts first
            if loc and loc[0] == raw.get("event"):
                loc = loc[1:]
            name = ".".join(loc) or "kind"
            if where:
                name = f"{where}.{name}"
            message = _explain_error(err, raw)
            result.problems.append(Problem(str(path), f"{message}; record skipped", line=number, field=name))
        return
    result.records.append(record)
    result.lines.append(number)


def _explain_error(err: dict, raw: dict) -> str:
    kind = err["type"]
    if kind == "union_tag_invalid" or kind == "union_tag_not_found":
        tag = "event" if raw.get("kind") == "event" else "kind"
        allowed = err.get("ctx", {}).get("expected_tags", "")
        got = raw.get(tag)
        if got is None:
            return f"missing '{tag}'; expected one of {allowed}"
        return f"unknown {tag} {got!r}; expected one of {allowed}"
    if kind == "extra_forbidden":
        return "unknown field (check its spelling against `diag schema`)"
    if kind == "missing":
        return "required field is missing"
    return f"{err['msg']} (got {_short(err.get('input'))})"


def _check_schema_version(path: Path, result: ReadResult) -> None:
    for record, line in zip(result.records, result.lines):
        if not isinstance(record, Header):
            continue
        version = record.schema_version
        if version == SCHEMA_VERSION:
            continue
        name, _, major = version.partition("/")
        if name != SCHEMA_NAME:
            raise DiagInputError(
                Problem(str(path), f"not a diag trace: schema is {version!r}", line=line, field="schema"),
                hint=f"expected {SCHEMA_VERSION!r}",
            )
        raise DiagInputError(
            Problem(str(path), f"trace format {version!r} is not supported by this diag (reads {SCHEMA_VERSION!r})",
                    line=line, field="schema"),
            hint="upgrade diag (pip install -U diag) or re-record the run",
        )


def _short(value, limit: int = 60) -> str:
    text = repr(value) if not isinstance(value, Exception) else str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
