"""Which trace headers this diag reads: versions compare as versions, by major.

A header of another major version or of another format is reported and skipped; the records
after it are still read.
"""

from __future__ import annotations

from pathlib import Path

from diag.errors import Problem
from diag.trace.builder import TraceBuilder
from diag.trace.limits import excerpt
from diag.trace.records import SCHEMA_MAJOR, SCHEMA_NAME, SCHEMA_VERSION


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


def header_problem(path: Path, builder: TraceBuilder, raw, number: int) -> bool:
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
