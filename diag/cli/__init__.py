"""The ``diag`` command line: one module per command, each exposing ``register(subparsers)``.

A command module must not import jax, torch or textual at import time (``diag --help`` stays
fast and the core stays light); it imports what it needs inside its handler.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from diag import __version__
from diag.errors import EXIT_BAD_INPUT, DiagInputError

# Order is the order of ``diag --help``. A module that does not exist yet is skipped.
COMMAND_MODULES = (
    "summary", "explain", "sweep", "rules", "demo", "tui", "gradcheck", "preflight", "schema",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diag",
        description="Why is my training failing, and what do I change? "
        "Reads the trace a run wrote and names ranked root causes with evidence and fixes.",
        epilog="Exit codes: 0 ok, 1 findings at --fail-on severity or failed rule tests, 2 bad input. "
        "Example: diag explain run.jsonl",
    )
    parser.add_argument("--version", action="version", version=f"diag {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"diag.cli.{name}_cmd")
        except ModuleNotFoundError as e:
            if e.name == f"diag.cli.{name}_cmd":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args.handler(args) or 0)
    except DiagInputError as e:
        print(f"diag {args.command}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `diag explain run.jsonl | head`
        return 0
    except Exception as e:  # noqa: BLE001 - no input may end in a traceback (DIAG_TRACEBACK=1 shows it)
        if os.environ.get("DIAG_TRACEBACK"):
            raise
        from diag.trace.limits import excerpt

        print(f"diag {args.command}: error: could not process the input ({type(e).__name__}: "
              f"{excerpt(str(e), 200)[1:-1]})\n  hint: this is a bug in diag, not in your input; rerun with "
              "DIAG_TRACEBACK=1 and report the traceback", file=sys.stderr)
        return EXIT_BAD_INPUT


def run() -> None:
    sys.exit(main())
