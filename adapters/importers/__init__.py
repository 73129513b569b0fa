"""Importers of foreign training logs: explain the runs people already have.

Sources (one module each): TensorBoard event files (``tensorboard``), Lightning and Keras
``CSVLogger`` files and plain CSV logs (``csv_logs``), Hugging Face ``trainer_state.json``
(``hf_state``), MLflow file stores (``mlflow_store``), W&B history exports (``wandb``). Each reads
a log into named scalar series; ``names.yaml`` maps the names to trace fields; ``assemble`` builds
the trace records through the same ``TraceBuilder`` a recorded trace's lines go through.

The contract other parts rely on (``diag explain/summary/tui/import``, ``diag.diagnose_path``):

* ``detect(path) -> Detected | None``: cheap (names and at most 64 KB of a file, a bounded folder
  walk); None means "not a foreign log", i.e. a diag trace or something no importer knows, which
  the caller hands to ``diag.trace.load_trace`` as before. ``Detected.runs`` lists every run the
  path holds (``RunRef``: ``name``, ``source``, ``path``), one entry per run.
* ``open_run(path, run=None, names=None) -> Trace``: import one run. ``run`` is a name from
  ``detect(path).runs`` (needed when there are several); ``names`` a ``NameMap`` (default: the
  built-in names). Bad input raises ``diag.errors.DiagInputError`` naming the file (the CLI exits
  2); problems that did not stop the import (a partly corrupt event file, skipped rows) are in
  ``Trace.problems`` as warnings, or errors for records that were lost.
* ``import_run(path, run=None, names=None) -> ImportedRun``: the same, as records (for writing a
  JSONL trace with ``write_jsonl``).
* ``detect_importer(path) -> Callable[[path], Trace] | None``: for ``diag.diagnose_path``: None
  when ``path`` is not a foreign log, else a loader of its run. A folder of several runs gets a
  loader that raises the "holds N runs; pick one with --run" error: a caller that wants them all
  iterates ``detect(path).runs`` and calls ``open_run(ref.path, run=ref.name)`` for each.

The imported header says where the run came from: ``header.recording`` holds ``imported_from``
(the format), ``source``, ``source_path``, ``fields`` (the trace fields the log had) and
``step_unit``; rules whose inputs are absent are skipped by the engine and reported as not checked.

This package imports no optional library at import time: ``tensorboard`` and ``mlflow`` are
imported when a log of theirs is read (extras ``diag[tensorboard]``, ``diag[mlflow]``).

Example:
  >>> from diag.adapters.importers import detect, open_run      # doctest: +SKIP
  >>> [r.name for r in detect("lightning_logs").runs]           # doctest: +SKIP
  ['version_0', 'version_1']
  >>> open_run("lightning_logs", run="version_1").series("loss")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from diag.errors import DiagInputError, Problem

from diag.adapters.importers.assemble import ImportedRun, assemble, to_trace, write_jsonl
from diag.adapters.importers.discover import Detected, RunRef, detect, pick_run
from diag.adapters.importers.names import NameMap
from diag.adapters.importers.scalars import SOURCE_TITLES, ScalarLog

__all__ = [
    "Detected", "ImportedRun", "NameMap", "RunRef", "SOURCE_TITLES", "ScalarLog", "detect", "detect_importer",
    "import_run",
    "open_run", "read_log", "write_jsonl",
]


def read_log(ref: RunRef) -> ScalarLog:
    """The named scalar series of one run, read by its format's module."""
    if ref.source == "tensorboard":
        from diag.adapters.importers.tensorboard import read_event_files

        return read_event_files(ref.path, ref.name)
    if ref.source in ("lightning", "keras", "csv"):
        from diag.adapters.importers.csv_logs import read_csv_log

        return read_csv_log(ref.path, ref.name, ref.source)
    if ref.source == "huggingface":
        from diag.adapters.importers.hf_state import read_trainer_state

        return read_trainer_state(ref.path, ref.name)
    if ref.source == "mlflow":
        from diag.adapters.importers.mlflow_store import read_mlflow_run

        return read_mlflow_run(ref.path, ref.name)
    if ref.source == "wandb":
        from diag.adapters.importers.wandb import chart_runs, read_wandb

        several = Path(ref.path).suffix.lower() == ".csv" and len(chart_runs(Path(ref.path))) > 1
        return read_wandb(ref.path, ref.name, chart_run=ref.name if several else None)
    raise DiagInputError(Problem(ref.path, f"unknown log format {ref.source!r}"))


def import_run(path: str | os.PathLike, run: str | None = None, names: NameMap | None = None) -> ImportedRun:
    """One run of the foreign log at ``path`` as trace records.

    Raises:
      DiagInputError: not a known log, several runs and no ``run``, or a log with nothing usable.
    """
    p = Path(path)
    if not p.exists():
        raise DiagInputError(Problem(str(p), "no such file or folder"))
    found = detect(p)
    if found is None:
        kind = "folder" if p.is_dir() else "file"
        raise DiagInputError(
            Problem(str(p), f"this {kind} is not a log diag knows"),
            hint="diag reads TensorBoard event files, Lightning/Keras CSV logs, trainer_state.json, "
            "MLflow runs (mlruns/), W&B history exports and its own traces")
    ref = pick_run(found, run)
    return assemble(read_log(ref), names or NameMap.load())


def open_run(path: str | os.PathLike, run: str | None = None, names: NameMap | None = None):
    """One run of the foreign log at ``path`` as a columnar ``Trace`` (see the module docstring)."""
    return to_trace(import_run(path, run, names))


def detect_importer(path: str | os.PathLike):
    """A loader ``f(path) -> Trace`` when ``path`` is a foreign log, else None (see the module docstring)."""
    p = Path(path)
    if not p.exists() or detect(p) is None:
        return None
    return open_run
