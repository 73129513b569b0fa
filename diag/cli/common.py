"""Pieces commands share: their common arguments, writing output, reporting what was wrong with a trace."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diag.trace.columnar import Trace


def add_trace_argument(parser) -> None:
    parser.add_argument("trace", help="trace file (.jsonl or .json) or folder of shards")


def add_format_argument(parser, choices: tuple[str, ...]) -> None:
    parser.add_argument("--format", "-f", choices=choices, default=choices[0],
                        help=f"output format (default {choices[0]})")


def add_rules_argument(parser) -> None:
    parser.add_argument("--rules", metavar="DIR", action="append", default=[],
                        help="extra rule folder (repeatable); DIAG_RULES_PATH adds more")


def add_output_argument(parser) -> None:
    parser.add_argument("--output", "-o", help="write to this file instead of standard output")


def write_output(text: str, path: str | None) -> None:
    """Write ``text`` to the file ``path``, or to standard output when there is none."""
    if path:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)


def report_problems(trace: Trace, stream=None) -> bool:
    """Print the trace's problems to stderr. True when any is an error (the command then exits 2).

    Errors are bad records that were skipped; the command still ran on every valid record, so
    nothing is lost, but the exit code tells scripts that the input was not clean.
    """
    stream = stream or sys.stderr
    errors = [p for p in trace.problems if p.severity == "error"]
    shown = trace.problems[:20]
    for problem in shown:
        print(problem, file=stream)
    if len(trace.problems) > len(shown):
        print(f"... and {len(trace.problems) - len(shown)} more problems", file=stream)
    if errors:
        print(f"{len(errors)} bad record(s) skipped; the rest of {trace.path} was read", file=stream)
    return bool(errors)
