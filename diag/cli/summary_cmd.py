"""``diag summary TRACE``: what a trace holds, before any diagnosis."""

from __future__ import annotations

import sys

from diag.cli import add_command
from diag.cli.common import add_format_argument, add_trace_argument, report_problems
from diag.cli.import_cmd import add_import_options, coverage_text, load_input
from diag.errors import EXIT_BAD_INPUT, EXIT_OK


def register(subparsers) -> None:
    parser = add_command(subparsers, "summary", _run)
    add_trace_argument(parser)
    add_format_argument(parser, ("text", "json"))
    add_import_options(parser)


def _run(args) -> int:
    """What a trace holds: run, steps, metrics, first non-finite value, evals, events.

    Print the run header, steps recorded, metrics present, the first non-finite value (step,
    metric, layer), eval splits and their last values, and events such as the exception a crashed
    run left.

    Examples:
      diag summary examples/fp16_overflow.jsonl
      diag summary examples/healthy.jsonl --format json
    """
    from diag.summary import render_text, summarize

    trace = load_input(args)  # unusable input raises DiagInputError: exit 2
    summary = summarize(trace)
    if args.format == "json":
        sys.stdout.write(summary.model_dump_json(by_alias=True, indent=2) + "\n")
    else:
        sys.stdout.write(coverage_text(trace) + "\n" + render_text(summary) if coverage_text(trace)
                         else render_text(summary))
    return EXIT_BAD_INPUT if report_problems(trace) else EXIT_OK
