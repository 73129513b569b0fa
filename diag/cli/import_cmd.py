"""``diag import LOG -o trace.jsonl``; and the foreign-log hook of explain, summary and tui.

``load_input(args)`` is what those commands call instead of ``load_trace``: a diag trace loads as
before; a foreign log (TensorBoard, Lightning/Keras CSV, trainer_state.json, MLflow, W&B export) is
detected and imported on the fly. The importers are imported only then, so ``diag --help`` and
the reading of diag traces pay nothing for them.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from diag.errors import EXIT_BAD_INPUT, EXIT_OK


KNOWN_LOGS = ("diag reads its own traces, TensorBoard event files, Lightning/Keras CSV logs, "
              "trainer_state.json, MLflow runs (mlruns/) and W&B history exports")


def register(subparsers) -> None:
    from diag.cli import add_command

    parser = add_command(subparsers, "import", _run)
    parser.add_argument("log", help="the log file or folder")
    parser.add_argument("--output", "-o", help="the trace to write (.jsonl); without it, list the runs found")
    add_import_options(parser)


def add_import_options(parser) -> None:
    """The options every command that reads a run takes for foreign logs."""
    group = parser.add_argument_group("foreign logs (TensorBoard, CSV, Hugging Face, MLflow, W&B)")
    group.add_argument("--run", metavar="NAME", default=None,
                       help="which run: a foreign log's run name (a log of several lists them), or N for the N-th "
                       "run of a diag trace file that holds several (a run recorded again to the same path appends "
                       "a second header; default: the last)")
    group.add_argument("--map", metavar="NAME=FIELD", action="append", default=[], dest="name_map",
                       help="map a log's metric name (or a glob like 'acc/*') to a trace field, e.g. "
                       "--map 'Loss/train=loss' --map 'Acc/val=eval.val.metrics.accuracy' (repeatable)")
    group.add_argument("--names", metavar="FILE", action="append", default=[],
                       help="a YAML file of 'names:' NAME: FIELD entries, like the built-in names.yaml (repeatable)")
    group.add_argument("--no-input", action="store_true",
                       help="never ask (on a terminal diag asks which run, and which unknown metric is the loss, "
                       "when the flags do not say; it never asks when input is not a terminal or CI is set)")


def foreign_log(path: str | Path):
    """``diag.api.foreign_log`` for an existing path, else None (the importers load only here)."""
    if not Path(path).exists():
        return None
    from diag.api import foreign_log as detect

    return detect(path)


def name_map(args):
    """The ``--map``/``--names`` mapping, or None for the built-in names (nothing to load)."""
    extra, files = getattr(args, "name_map", None) or (), getattr(args, "names", None) or ()
    if not extra and not files:
        return None
    from diag.adapters.importers import NameMap

    return NameMap.load(extra=extra, files=files)


def interactive(args) -> bool:
    """Whether a command may ask: a person at a terminal (stdin and stderr are TTYs), not CI, no --no-input."""
    if getattr(args, "no_input", False) or os.environ.get("CI"):
        return False
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def run_and_names(args, path):
    """The run (``--run``) and name map (``--map``/``--names``) for reading ``path``.

    On a terminal (see ``interactive``) a foreign log gets what the flags did not say: which of its
    runs, when it holds several; which of its unknown metrics is the training (or validation) loss,
    when none has a known name. Elsewhere the flags stand as given (several runs: the usual error).
    """
    run, names = getattr(args, "run", None), name_map(args)
    if not interactive(args):
        return run, names
    found = foreign_log(path)
    if found is None:
        return run, names
    from diag.adapters.importers import NameMap, pick_run, read_log
    from diag.adapters.importers.prompt import ask_names, ask_run

    if run is None and len(found.runs) > 1:
        run = ask_run(found)
        if run is None:
            return None, names  # no answer: the several-runs error, as without a terminal
    args.run = run
    log = read_log(pick_run(found, run))
    return run, ask_names(log, names or NameMap.load())


def load_input(args, path: str | None = None):
    """The Trace a command reads: a diag trace, or a foreign log imported on the fly (``diag.api.load_run``)."""
    from diag.api import load_run

    path = path if path is not None else args.trace
    refuse_unknown_folder(path)
    run, names = run_and_names(args, path)
    return load_run(path, run, names=names)


def refuse_unknown_folder(path) -> None:
    """A folder that is neither a trace (no .jsonl/.json in it) nor a known log: one clear line, exit 2."""
    from diag.errors import DiagInputError, Problem

    p = Path(path)
    if not p.is_dir() or any(f.is_file() and f.name.endswith((".jsonl", ".json")) for f in p.iterdir()):
        return
    if foreign_log(p) is None:
        raise DiagInputError(Problem(str(p), "holds no diag trace and no log diag knows"), hint=KNOWN_LOGS)


def is_imported(trace) -> bool:
    return trace.header is not None and "imported_from" in trace.header.recording


def coverage_text(trace) -> str:
    """The lines an imported run prints above its report: source and fields ('' for a diag trace)."""
    if not is_imported(trace):
        return ""
    from diag.adapters.importers.coverage import coverage_lines

    return "\n".join(coverage_lines(trace)) + "\n"


def under_headline(report: str, lines: str) -> str:
    """``lines`` inserted after a report's first line (its headline stays first)."""
    if not lines:
        return report
    headline, _, rest = report.partition("\n")
    return f"{headline}\n{lines.rstrip(chr(10))}\n{rest}"


def not_checked_text(trace, diagnosis) -> str:
    """The lines an imported run prints below its report: causes its log cannot show, and why."""
    if not is_imported(trace):
        return ""
    from diag.adapters.importers.coverage import not_checked_lines

    lines = not_checked_lines(diagnosis)
    return "\n".join(lines) + "\n" if lines else ""


def _run(args) -> int:
    """Convert a TensorBoard, Lightning/Keras CSV, Hugging Face, MLflow or W&B log into a diag trace.

    The format is detected from the path: TensorBoard event files or run folders, Lightning CSVLogger
    folders (metrics.csv), Keras CSVLogger files, Hugging Face trainer_state.json (or a checkpoint
    folder), MLflow file stores (mlruns/), W&B history exports (CSV/JSON). Metric names map to trace
    fields through the built-in names.yaml; add yours with --map or --names. Without -o, the runs
    the log holds are listed. Exit codes: 0 ok; 2 bad input.

    Examples:
      diag import examples/foreign/tensorboard --run diverging -o diverging.jsonl
      diag import examples/foreign/lightning_logs
    """
    from diag.adapters.importers import NameMap, detect, import_run, write_jsonl
    from diag.cli.common import report_problems
    from diag.errors import DiagInputError, Problem

    path = Path(args.log)
    if not path.exists():
        raise DiagInputError(Problem(str(path), "no such file or folder"))
    found = detect(path)
    if found is None:
        raise DiagInputError(Problem(str(path), "not a log diag can import"),
                             hint="diag reads TensorBoard event files, Lightning/Keras CSV logs, trainer_state.json, "
                             "MLflow runs (mlruns/) and W&B history exports")
    if args.output is not None:
        run, names = run_and_names(args, path)
    if args.output is None and args.run is None and len(found.runs) != 1:
        for ref in found.runs:
            print(f"{ref.name}\t{ref.source}\t{ref.path}")
        print(f"{len(found.runs)} runs; import one with: diag import {args.log} --run NAME -o trace.jsonl",
              file=sys.stderr)
        return EXIT_OK
    if args.output is None:
        raise DiagInputError(Problem(str(path), "no output file"), hint="add -o trace.jsonl")
    run = import_run(path, run=run, names=names or NameMap.load())
    out = write_jsonl(run, args.output)
    print(f"{run.source} run {run.header.run_id}: {len(run.steps)} steps, {len(run.evals)} evaluations; "
          f"fields {', '.join(run.fields)}; wrote {out}")
    from diag.adapters.importers import to_trace

    return EXIT_BAD_INPUT if report_problems(to_trace(run)) else EXIT_OK
