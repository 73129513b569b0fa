"""``diag tui``: open the terminal UI on a trace (textual is imported only when it runs)."""

from __future__ import annotations

from pathlib import Path

from diag.cli import add_command
from diag.cli.common import add_trace_argument
from diag.errors import DiagInputError, Problem


def register(subparsers) -> None:
    parser = add_command(subparsers, "tui", _run)
    add_trace_argument(parser)
    parser.add_argument("--follow", "-f", action="store_true",
                        help="keep reading as the run appends records (the file may not exist yet)")
    parser.add_argument("--interval", type=float, default=0.1, metavar="SECONDS",
                        help="seconds between reads of the trace when following (default 0.1)")
    from diag.cli.import_cmd import add_import_options

    add_import_options(parser)


def _run(args) -> int:
    """Browse a trace and its diagnosis in the terminal; --follow watches a live run.

    Open the terminal UI on a trace: the run, its ranked causes with evidence and fixes, metric
    plots, per-layer statistics and the rules. With --follow it keeps reading the trace as the run
    writes it and re-diagnoses as steps arrive. Keys: ? help, q quit, 1-4 tabs, / filter.

    Examples:
      diag tui examples/dead_relu.jsonl
      diag tui examples/lr_too_high.jsonl --follow
    """
    path = Path(args.trace)
    if not args.follow:
        if not path.exists():
            raise DiagInputError(Problem(str(path), "no such file or folder"),
                                 hint="pass the path of a trace, or --follow to wait for a run to create it")
        if path.is_file() and path.stat().st_size == 0:
            raise DiagInputError(Problem(str(path), "the trace is empty"),
                                 hint="use --follow to watch a run that has not written anything yet")
    if args.interval <= 0:
        raise DiagInputError("--interval must be a positive number of seconds")
    from diag.cli.import_cmd import foreign_log

    if foreign_log(path) is not None:
        return _run_imported(args, path)
    from diag.tui import make_app

    make_app(path, follow=args.follow, poll_interval=args.interval).run()
    return 0


def _run_imported(args, path: Path) -> int:
    """A foreign log: import it into a temporary trace and browse that (a log is read once, not followed)."""
    import tempfile

    from diag.adapters.importers import NameMap, import_run, write_jsonl
    from diag.cli.import_cmd import run_and_names

    if args.follow:
        raise DiagInputError(Problem(str(path), "--follow watches diag traces; this is a foreign log"),
                             hint="drop --follow to browse it, or record the run with diag to watch it live")
    chosen, names = run_and_names(args, path)  # on a terminal, asks which run when several
    run = import_run(path, run=chosen, names=names or NameMap.load())
    from diag.tui import make_app

    with tempfile.TemporaryDirectory(prefix="diag-import-") as folder:
        trace = write_jsonl(run, Path(folder) / f"{run.header.run_id.replace('/', '_')}.jsonl")
        make_app(trace, follow=False, poll_interval=args.interval).run()
    return 0
