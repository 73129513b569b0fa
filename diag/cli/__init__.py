"""The ``diag`` command line: one module per command, each registering itself with ``add_command``.

Adding a command ``diag NAME``:

1. Write ``diag/cli/NAME_cmd.py`` with a ``register(subparsers)`` function that calls
   ``add_command`` and adds the command's arguments, and a handler whose docstring is its help::

     def register(subparsers) -> None:
         parser = add_command(subparsers, "NAME", _run)
         parser.add_argument("trace", help="...")

     def _run(args) -> int:
         \"""One line for the list of commands in `diag --help`.

         What the command does, for `diag NAME --help` (indented lines are kept as written).

         Examples:
           diag NAME examples/healthy.jsonl
         \"""
         ...  # returns the exit code

2. Add ``"NAME"`` to ``COMMAND_MODULES`` below (its place there is its place in ``diag --help``).

A command with subcommands (``diag rules list``) calls ``add_command`` on the subparsers that
``parser.add_subparsers()`` returns, once per subcommand. Every command's and subcommand's help
ends with one or two examples that run as written from a checkout (they use the traces in
``examples/``); tests/test_cli_help.py checks every registered command and runs the examples.

A command module must not import jax, torch or textual at import time (``diag --help`` stays
fast and the core stays light); it imports what it needs inside its handler. A handler raises
``DiagInputError`` for bad input: ``main`` prints it without a traceback and exits 2.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from typing import Callable

from diag import __version__
from diag.errors import EXIT_BAD_INPUT, DiagInputError

# Order is the order of ``diag --help``. A module that does not exist yet is skipped.
COMMAND_MODULES = (
    "summary", "explain", "import", "sweep", "rules", "demo", "tui", "gradcheck", "preflight", "schema",
)

EXAMPLES_HEADING = "Examples:"


class _HelpFormatter(argparse.HelpFormatter):
    """Fills prose to the terminal's width but keeps indented lines (tables, examples) as written.

    The terminal is measured when help is first laid out, not when the formatter is made: argparse
    makes one for every ``add_argument`` (to check its metavar) and, left to itself, measures the
    terminal in each, importing shutil (with bz2, lzma and zlib) for it, ~0.5% of a ``diag explain``
    that prints no help. The width and help position are argparse's own formulas.
    """

    def __init__(self, prog, indent_increment=2, max_help_position=24, width=None, **later_options):
        # later_options: what a newer argparse passes (Python 3.14's color), handed on as it came.
        self._requested_layout = (indent_increment, max_help_position, width)
        super().__init__(prog, indent_increment, max_help_position, width=0, **later_options)  # 0: see _layout

    def _layout(self) -> tuple[int, int]:
        """(width, max help position), measured once."""
        layout = self.__dict__.get("_measured")
        if layout is None:
            indent_increment, max_help_position, width = self._requested_layout
            if width is None:
                import shutil

                width = shutil.get_terminal_size().columns - 2
            layout = self.__dict__["_measured"] = (width, min(max_help_position, max(width - 20, indent_increment * 2)))
        return layout

    # argparse's __init__ assigns both from the placeholder width; they are read from _layout.
    _width = property(lambda self: self._layout()[0], lambda self, value: None)
    _max_help_position = property(lambda self: self._layout()[1], lambda self, value: None)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        blocks: list[str] = []
        prose: list[str] = []

        def flush() -> None:
            if prose:
                blocks.append(super(_HelpFormatter, self)._fill_text(" ".join(prose), width, indent))
                prose.clear()

        for line in text.splitlines():
            if not line.strip():
                flush()
                blocks.append("")
            elif line.startswith(" "):
                flush()
                blocks.append(indent + line)
            else:
                prose.append(line.strip())
        flush()
        return "\n".join(blocks)


def add_command(subparsers, name: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
    """Register a command (or subcommand) whose help is its handler's docstring; return its parser.

    The docstring's first line (less its full stop) is the command's line in the parent's list;
    the whole text before ``Examples:`` is the description of ``diag NAME --help``, which then
    lists the arguments and ends with the examples. ``args.command_parser`` is the parser of the
    command that runs (a command with subcommands prints its help with it when none is given).

    Args:
      subparsers: what ``parser.add_subparsers()`` returned (``diag``'s, or a command's own).
      name: the command's name on the command line.
      handler: called with the parsed arguments; returns the exit code.

    Returns:
      The command's ``argparse.ArgumentParser``, to add its arguments to.
    """
    text = inspect.cleandoc(handler.__doc__ or "")
    description, _, examples = text.partition(EXAMPLES_HEADING)
    summary = description.split("\n\n", 1)[0].replace("\n", " ").rstrip(".")
    if summary[:1].isupper() and summary[1:2].islower():
        summary = summary[0].lower() + summary[1:]  # argparse's own lines start in lower case
    epilog = f"{EXAMPLES_HEADING}\n{examples.strip(chr(10))}" if examples.strip() else None
    parser = subparsers.add_parser(name, help=summary, description=description.strip(), epilog=epilog,
                                   formatter_class=_HelpFormatter)
    parser.set_defaults(handler=handler, command_parser=parser)
    return parser


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """``diag``'s parser with every command, or with command ``only`` alone (what ``main`` runs).

    Registering all ten commands builds ~60 arguments and imports every command module (~10 ms,
    a fortieth of ``diag explain``); a command line that names its command needs only that one's.
    """
    parser = argparse.ArgumentParser(
        prog="diag",
        description="Why is my training failing, and what do I change? "
        "Reads the trace a run wrote and names ranked root causes with evidence and fixes.",
        epilog="Exit codes: 0 ok, 1 findings at --fail-on severity or failed rule tests, 2 bad input.\n\n"
        f"{EXAMPLES_HEADING}\n  diag explain examples/lr_too_high.jsonl\n  diag rules list",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"diag {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in ((only,) if only in COMMAND_MODULES else COMMAND_MODULES):
        try:
            # __import__, not importlib.import_module: -X importtime (tests/test_import_budget.py) sees it
            module = __import__(f"diag.cli.{name}_cmd", fromlist=["register"])
        except ModuleNotFoundError as e:
            if e.name == f"diag.cli.{name}_cmd":
                continue
            raise
        module.register(subparsers)
    if only and not subparsers.choices:  # its module is not there: argparse lists the commands that are
        return build_parser()
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only a command named first is built alone: ``diag --help``, an option before the command or
    # a misspelt command (argparse lists the valid ones) get the whole parser.
    parser = build_parser(only=argv[0] if argv else None)
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
    """The ``diag`` program: the command named on the command line, its exit code the process's."""
    from diag.cli.start_up import end_process, process_ends_after_command

    process_ends_after_command()
    end_process(main())
