"""``diag explain TRACE``: ranked root causes with evidence, the why-chain and the fix."""

from __future__ import annotations

import importlib
import os
import sys
import types
from contextlib import contextmanager

from diag.cli import add_command
from diag.cli.common import add_format_argument, add_output_argument, add_rules_argument, add_trace_argument
from diag.cli.import_cmd import (add_import_options, coverage_text, not_checked_text, refuse_unknown_folder,
                                 run_and_names, under_headline)
from diag.cli.start_up import allow_quick_exit, collector_paused

SEVERITIES = ("info", "low", "medium", "high", "critical")
FORMATS = ("text", "json", "markdown")
PLUGINS_ENV = "PYDANTIC_DISABLE_PLUGINS"
PLUGIN_LOADER = "pydantic.plugin._loader"  # the module that looks plugins up
# What OpenBLAS reads, in its order, for the size of its thread pool.
BLAS_THREADS_ENV = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def register(subparsers) -> None:
    parser = add_command(subparsers, "explain", _run)
    add_trace_argument(parser)
    add_format_argument(parser, FORMATS)
    parser.add_argument("--why", metavar="CAUSE", help="print the justification tree of CAUSE (or its closest miss)")
    add_rules_argument(parser)
    parser.add_argument("--fail-on", choices=SEVERITIES, metavar="SEVERITY",
                        help="exit 1 when a ranked cause has this severity or higher (info|low|medium|high|critical)")
    parser.add_argument("--keep-going", action="store_true",
                        help="skip broken rules (reported on stderr) instead of stopping")
    add_output_argument(parser)
    add_import_options(parser)


def _run(args) -> int:
    """Name the ranked root causes of a run's problems, with evidence and fixes.

    Read a trace and print ranked root causes with their certainty, evidence (real numbers, steps,
    layers) and fix. Exit codes: 0 ok; 1 a cause at or above --fail-on was found; 2 bad input.

    Examples:
      diag explain examples/lr_too_high.jsonl
      diag explain examples/lr_too_high.jsonl --why lr_too_high
    """
    allow_quick_exit()  # explain starts no thread and registers nothing to run at exit
    with _no_pydantic_plugins(), collector_paused() as started:
        _import_numpy_with_one_blas_thread()
        return _explain(args, started)


def _import_numpy_with_one_blas_thread() -> None:
    """Import numpy with a one-thread OpenBLAS pool (unless the user sized it, or numpy is loaded).

    OpenBLAS starts a pool of one thread per core when numpy loads it, and its idle threads spin
    before they sleep: ~0.1 s of CPU per explain on a two-core machine (benchmarks/cli_start.py --against,
    0.47 -> 0.36 s CPU at load 3.3). Explain does no matrix products worth a second thread. The variable is set
    only while numpy loads OpenBLAS (it is read once, then), so nothing this process starts inherits it.
    """
    if "numpy" in sys.modules or any(name in os.environ for name in BLAS_THREADS_ENV):
        return
    os.environ[BLAS_THREADS_ENV[0]] = "1"
    try:
        import numpy  # noqa: F401  (loads OpenBLAS, which reads the variable now)
    finally:
        os.environ.pop(BLAS_THREADS_ENV[0], None)


@contextmanager
def _no_pydantic_plugins():
    """Build diag's pydantic models without third-party pydantic plugins (unless the user chose).

    pydantic looks up plugins in every installed distribution's entry points when it builds the
    first model (~6.5 ms CPU with 150 distributions installed, growing with them). The models built
    here are diag's own and explain runs no user code, so no plugin has anything to observe; an
    explicit ``PYDANTIC_DISABLE_PLUGINS`` is left as it is, and the variable is restored on exit.

    With the variable set, pydantic's plugin loader returns no plugins, but importing it still
    imports ``importlib.metadata`` (with email, zipfile, csv: ~10 ms CPU, 3.5% of explain). While
    the block runs, a stand-in loader that returns no plugins, as the real one would now, takes its
    place, unless the real one is already loaded; it is removed on exit, so a model built later
    gets the real loader.
    """
    if PLUGINS_ENV in os.environ:
        yield
        return
    os.environ[PLUGINS_ENV] = "__all__"
    stand_in = None
    if PLUGIN_LOADER not in sys.modules:
        stand_in = sys.modules[PLUGIN_LOADER] = _stand_in_loader()
    try:
        yield
    finally:
        os.environ.pop(PLUGINS_ENV, None)
        if stand_in is not None and sys.modules.get(PLUGIN_LOADER) is stand_in:
            del sys.modules[PLUGIN_LOADER]


def _stand_in_loader() -> types.ModuleType:
    """A module in place of pydantic's plugin loader whose ``get_plugins`` returns no plugins.

    The loader is private to pydantic: should a version ask it for anything else, the stand-in
    steps aside and the real loader answers (imported then, as it would have been).
    """
    stand_in = types.ModuleType(PLUGIN_LOADER, "No pydantic plugins (diag explain).")
    stand_in.get_plugins = tuple

    def __getattr__(name: str):
        if name.startswith("__"):  # the import system's own questions (``__path__``: a package?)
            raise AttributeError(name)
        if sys.modules.get(PLUGIN_LOADER) is stand_in:
            del sys.modules[PLUGIN_LOADER]
        return getattr(importlib.import_module(PLUGIN_LOADER), name)

    stand_in.__getattr__ = __getattr__
    return stand_in


def _explain(args, started) -> int:
    import diag.trace  # noqa: F401  (its record models are built here, while the collector is paused)
    from diag.api import diagnose_path
    from diag.cli.common import report_problems, write_output
    from diag.engine.kb import load_knowledge_base
    from diag.engine.render import render_markdown, render_text, render_why
    from diag.engine.yamlloc import RuleFileError
    from diag.errors import EXIT_BAD_INPUT, EXIT_FINDINGS, EXIT_OK, DiagInputError, Problem

    try:
        kb = load_knowledge_base(args.rules, keep_going=args.keep_going)
    except RuleFileError as e:
        raise DiagInputError(Problem("", "the knowledge base has errors:\n" + str(e)),
                             hint="fix the rule files above, or pass --keep-going to skip the broken rules") from None
    started()  # imports and rules are in: the collector resumes for the trace and the diagnosis
    for problem in kb.problems:
        print(f"warning: {problem}", file=sys.stderr)
    refuse_unknown_folder(args.trace)
    run, names = run_and_names(args, args.trace)  # on a terminal, asks what the flags did not say
    loaded = []
    diagnosis = diagnose_path(args.trace, kb=kb, run=run, names=names, on_load=loaded.append)
    trace = loaded[0]
    bad_records = report_problems(trace)
    trace_arg = f"{args.trace} --run {args.run}" if args.run else args.trace
    if trace.header is None:
        unchecked = [r.id for r in diagnosis.rules_skipped if any(m.startswith("context.") for m in r.missing)]
        print(f"warning: {args.trace} has no header record, so the run's facts (optimizer, learning rate, "
              f"precision, task, layers) are unknown; {len(unchecked)} rule(s) could not be checked: "
              f"{', '.join(unchecked) or 'none'}", file=sys.stderr)
    if args.why:
        if args.why not in kb.causes:
            from diag.engine.yamlloc import did_you_mean

            raise DiagInputError(Problem("", f"unknown cause {args.why!r}{did_you_mean(args.why, kb.causes)}"),
                                 hint="diag rules list shows every cause")
        text = render_why(diagnosis, args.why) if args.format == "text" else None
        if args.format == "json":
            found = diagnosis.cause(args.why)
            text = (found.model_dump_json(indent=2) if found else
                    "[" + ",".join(m.model_dump_json() for m in diagnosis.near_misses if m.cause == args.why) + "]")
            text += "\n"
        elif args.format == "markdown":
            text = "```\n" + render_why(diagnosis, args.why) + "```\n"
    elif args.format == "json":
        text = diagnosis.to_json() + "\n"
    elif args.format == "markdown":
        text = render_markdown(diagnosis, trace_arg=trace_arg)
        coverage = (coverage_text(trace) + not_checked_text(trace, diagnosis)).rstrip()
        text = under_headline(text, f"```\n{coverage}\n```\n" if coverage else "")
    else:
        text = (under_headline(render_text(diagnosis, trace_arg=trace_arg), coverage_text(trace).rstrip("\n"))
                + not_checked_text(trace, diagnosis))
    write_output(text, args.output)
    if bad_records:
        return EXIT_BAD_INPUT
    if args.fail_on and diagnosis.at_or_above(args.fail_on):
        return EXIT_FINDINGS
    return EXIT_OK
