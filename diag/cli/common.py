"""Pieces every command shares: the format option and reporting what was wrong with a trace."""

from __future__ import annotations

import sys

from diag.trace.columnar import Trace


def add_format_argument(parser, choices: tuple[str, ...]) -> None:
    parser.add_argument("--format", "-f", choices=choices, default=choices[0],
                        help=f"output format (default {choices[0]})")


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
