"""``diag sweep ROOT``: diagnose every run under a folder, group them, and say what separates failures."""

from __future__ import annotations

import argparse
import sys

from diag.cli import add_command
from diag.cli.common import add_format_argument, add_output_argument, add_rules_argument

FORMATS = ("text", "json", "markdown", "csv")


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of processes, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 process, got {value}")
    return value


def register(subparsers) -> None:
    parser = add_command(subparsers, "sweep", _run)
    parser.add_argument("root", metavar="ROOT", help="folder of runs (searched recursively), or one run")
    add_format_argument(parser, FORMATS)
    parser.add_argument("--jobs", "-j", type=_positive, metavar="N",
                        help="local worker processes (default: the number of CPUs)")
    parser.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                        help="diagnose on this running Dask scheduler's workers (needs diag[dask]; "
                        "the workers must see the runs at the same paths)")
    parser.add_argument("--no-cache", action="store_true",
                        help="diagnose every run again, neither reading nor writing the cache")
    add_rules_argument(parser)
    add_output_argument(parser)


def _run(args) -> int:
    """Diagnose every run under a folder: which failed, why, and what separates them from healthy runs.

    Find every run under ROOT (trace files, folders of shards), diagnose them in parallel (here, or
    on a Dask cluster with --scheduler), and print one row per run (a run that cannot be read is a
    row with its reason), the runs grouped by top cause, and the header settings (learning rate,
    batch size, optimizer, precision, tags) whose values differ most between failed and healthy
    runs. Runs diagnosed before with the same rules come from a cache. Exit codes: 0 no run has a
    likely cause; 1 at least one does; 2 ROOT holds no run or cannot be read.

    Examples:
      diag sweep examples
      diag sweep examples --format markdown
    """
    from diag.errors import EXIT_FINDINGS, EXIT_OK
    from diag.sweep.report import render
    from diag.sweep.runner import SweepStats, sweep

    stats = SweepStats()
    show_progress = args.format != "json" and sys.stderr.isatty()
    with _Progress(show_progress) as progress:
        report = sweep(args.root, jobs=args.jobs, scheduler=args.scheduler, rule_dirs=args.rules,
                       use_cache=not args.no_cache, on_start=progress.start, on_progress=progress.advance,
                       stats=stats)
    for warning in stats.cache_warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if show_progress:
        print(f"{stats.runs} runs: {stats.diagnosed} diagnosed, {stats.cached} from the cache", file=sys.stderr)
    text = render(report, args.format)
    if args.output:
        with open(args.output, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return EXIT_FINDINGS if any(row.status == "likely" for row in report.runs) else EXIT_OK


class _Progress:
    """A rich progress bar on standard error, or nothing (JSON output, not a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar = None
        self._task = None

    def __enter__(self) -> _Progress:
        return self

    def start(self, total: int) -> None:
        if not self.enabled or total == 0:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(TextColumn("diagnosing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                             console=Console(stderr=True), transient=True)
        self._bar.start()
        self._task = self._bar.add_task("runs", total=total)

    def advance(self, count: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, count)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
