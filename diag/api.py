"""From a path on disk to a ranked ``Diagnosis``: the one entry point explain and the sweep share.

A run on disk is a diag trace (a ``.jsonl``/``.json`` file or a folder of shards) or, when the
foreign-log importers are installed (``diag.adapters.importers``), a log another tool wrote. Which
one is decided here, once, so ``diag explain`` and ``diag sweep`` can never disagree about how a
path is read.
"""

from __future__ import annotations

import os
from typing import Callable, Iterable

from diag.engine.api import diagnose
from diag.engine.diagnosis import Diagnosis
from diag.sniff import jsonl_may_be_history


def load_run(path: str | os.PathLike, run: str | None = None, *, foreign: bool | None = None, names=None):
    """Load the run at ``path`` into a ``Trace``: a diag trace, or a foreign log an importer reads.

    Args:
      path: a trace file (``.jsonl``/``.json``), a folder of trace shards, or (with the
        importers installed) a foreign log file or folder.
      run: for a foreign log that holds several runs, which one (a name its importer lists); for
        a diag trace file that holds several runs, the run's number (1-based; default the last).
      foreign: whether ``path`` is a foreign log, when the caller already knows (the sweep's
        discovery does); None asks the importers.
      names: for a foreign log, the importers' ``NameMap`` from its tag names to trace series
        (default: the built-in one).

    Returns:
      A ``diag.trace.Trace``; bad records that were skipped are listed on ``Trace.problems``.

    Raises:
      diag.errors.DiagInputError: nothing usable could be read (missing file, no valid record,
        wrong schema version): the message names the file, line and field.
    """
    if foreign is None:
        foreign = foreign_log(path) is not None
    if foreign:
        from diag.adapters.importers import open_run

        return open_run(path, run=run, names=names)
    if run is not None and not str(run).isdigit():
        from diag.errors import DiagInputError, Problem

        raise DiagInputError(Problem(os.fspath(path), "a run name applies to foreign logs; this is a diag trace "
                                     "(--run N picks the N-th run of a file that holds several)"))
    from diag.trace import load_trace

    return load_trace(path, run=None if run is None else int(run))


def foreign_log(path: str | os.PathLike):
    """What the importers detect at ``path`` (``Detected``: format and runs), or None.

    None when ``path`` is a diag trace, a log no importer knows, or the importers
    (``diag.adapters.importers``) are not installed: the core asks them lazily, so reading a
    ``.jsonl`` trace never imports them.
    """
    if os.fspath(path).endswith(".jsonl") and not jsonl_may_be_history(path):
        return None
    detect = _importers_detect()
    return None if detect is None else detect(path)


def _importers_detect() -> Callable | None:
    try:
        from diag.adapters.importers import detect
    except ImportError:
        return None
    return detect


def diagnose_path(path: str | os.PathLike, extra_rule_dirs: Iterable[str] = (), *, kb=None,
                  use_env: bool = True, run: str | None = None, foreign: bool | None = None, names=None,
                  on_load: Callable | None = None) -> Diagnosis:
    """Read the run at ``path`` and diagnose it: ranked root causes with evidence and fixes.

    Args:
      path: a trace file (``.jsonl``/``.json``), a folder of trace shards, or a foreign log once
        the importers are installed.
      extra_rule_dirs: user rule folders, loaded after the built-in ones (``DIAG_RULES_PATH`` is
        read too unless ``use_env=False``).
      kb: an already loaded ``KnowledgeBase`` (skips loading; for many calls in one process).
      run: for a foreign log that holds several runs, which one.
      foreign: whether ``path`` is a foreign log, when already known (None: ask the importers).
      names: for a foreign log, the importers' ``NameMap`` (default: the built-in names).
      on_load: called with the loaded ``Trace`` before it is diagnosed, for callers that also
        need what the trace holds beyond the diagnosis (its skipped records, header, last loss).

    Returns:
      A ``Diagnosis`` (``diag.diagnosis/1``).

    Raises:
      diag.errors.DiagInputError: the path holds nothing usable (the message says where and why).
      diag.engine.yamlloc.RuleFileError: a rule file is broken.

    Example:
      >>> from pathlib import Path
      >>> import diag
      >>> examples = Path(diag.__file__).parent.parent / "examples"
      >>> diag.diagnose_path(examples / "lr_too_high.jsonl").top.id  # doctest: +SKIP
      'lr_too_high'
    """
    trace = load_run(path, run, foreign=foreign, names=names)
    if on_load is not None:
        on_load(trace)
    return diagnose(trace, extra_rule_dirs, kb=kb, use_env=use_env)


__all__ = ["diagnose_path", "foreign_log", "jsonl_may_be_history", "load_run"]
