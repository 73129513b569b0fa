"""``diag schema``: print the JSON Schema of the trace format (or of another document)."""

from __future__ import annotations

import sys


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of the trace format",
        description="Print the JSON Schema of one trace record (diag.trace/1). "
        "Example: diag schema > trace.schema.json",
    )
    parser.add_argument("--output", "-o", help="write to this file instead of standard output")
    parser.set_defaults(handler=_run)


def _run(args) -> int:
    from diag.trace.schema import trace_json_schema_text

    text = trace_json_schema_text()
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0
