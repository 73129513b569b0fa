"""``diag schema``: print the JSON Schema of the trace format (or of another document)."""

from __future__ import annotations

from diag.cli import add_command
from diag.cli.common import add_output_argument, write_output


def register(subparsers) -> None:
    parser = add_command(subparsers, "schema", _run)
    add_output_argument(parser)


def _run(args) -> int:
    """Print the JSON Schema of the trace format.

    The schema of one trace record (diag.trace/1), generated from the record models.

    Examples:
      diag schema --output trace.schema.json
    """
    from diag.trace.schema import trace_json_schema_text

    write_output(trace_json_schema_text(), args.output)
    return 0
