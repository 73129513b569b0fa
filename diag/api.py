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


def load_run(path: str | os.PathLike):
    """Load the run at ``path`` into a ``Trace``: a diag trace, or a foreign log an importer reads.

    Args:
      path: a trace file (``.jsonl``/``.json``), a folder of trace shards, or (with the
        importers installed) a foreign log file or folder.

    Returns:
      A ``diag.trace.Trace``; bad records that were skipped are listed on ``Trace.problems``.

    Raises:
      diag.errors.DiagInputError: nothing usable could be read (missing file, no valid record,
        wrong schema version): the message names the file, line and field.
    """
    importer = foreign_importer(path)
    if importer is not None:
        return importer(path)
    from diag.trace.columnar import load_trace

    return load_trace(path)


def foreign_importer(path: str | os.PathLike) -> Callable | None:
    """The importers' loader for ``path`` when it is a foreign log, else None.

    The importers are an optional part (``diag.adapters.importers``); the core asks them lazily,
    only for paths that are not diag traces, so reading a diag trace never imports them.
    """
    detect = _importers_detect()
    if detect is None or _looks_like_diag_trace(path):
        return None
    return detect(path)


def _importers_detect() -> Callable | None:
    try:
        from diag.adapters import importers
    except ImportError:
        return None
    return getattr(importers, "detect_importer", None)


def _looks_like_diag_trace(path: str | os.PathLike) -> bool:
    """A trace file or a folder holding trace shards: what ``load_trace`` itself reads."""
    from diag.trace.reader import SHARD_SUFFIXES

    name = os.fspath(path)
    if os.path.isdir(name):
        try:
            return any(entry.name.endswith(SHARD_SUFFIXES) for entry in os.scandir(name) if entry.is_file())
        except OSError:
            return False
    return name.endswith(SHARD_SUFFIXES)


def diagnose_path(path: str | os.PathLike, extra_rule_dirs: Iterable[str] = (), *, kb=None,
                  use_env: bool = True, on_load: Callable | None = None) -> Diagnosis:
    """Read the run at ``path`` and diagnose it: ranked root causes with evidence and fixes.

    Args:
      path: a trace file (``.jsonl``/``.json``), a folder of trace shards, or a foreign log once
        the importers are installed.
      extra_rule_dirs: user rule folders, loaded after the built-in ones (``DIAG_RULES_PATH`` is
        read too unless ``use_env=False``).
      kb: an already loaded ``KnowledgeBase`` (skips loading; for many calls in one process).
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
    trace = load_run(path)
    if on_load is not None:
        on_load(trace)
    return diagnose(trace, extra_rule_dirs, kb=kb, use_env=use_env)


__all__ = ["diagnose_path", "foreign_importer", "load_run"]
