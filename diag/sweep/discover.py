"""Find every run under a folder: diag traces, folders of shards, and foreign logs when importable.

A run is what ``diag.diagnose_path`` reads in one call:

* a trace file, ``*.jsonl`` (always: a broken one is reported, not skipped) or ``*.json`` whose
  head holds trace records (a ``config.json`` beside a run is not a run);
* a folder whose trace files are all shards of one run (``run.p0.jsonl``, ``run.p1.jsonl``);
* each run of a foreign log (TensorBoard, Lightning/Keras CSV, ``trainer_state.json``, MLflow,
  W&B export) that the importers find (``diag.adapters.importers.detect``), once they are
  installed.

A folder that cannot be listed becomes a run that could not be read (with the reason), so a
permission problem deep in a tree shows up in the sweep instead of silently hiding runs.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from diag.sniff import jsonl_may_be_history
from diag.errors import DiagInputError, Problem

TRACE_SUFFIXES = (".jsonl", ".json")
_SHARD_NAME = re.compile(r"^(?P<stem>.+)\.p\d+\.jsonl?$")
_SKIPPED_FOLDERS = {"__pycache__", "node_modules"}
_SNIFF_BYTES = 1 << 12


@dataclass(frozen=True)
class RunRef:
    """One run found under the sweep's root.

    Attributes:
      path: the file or folder ``diagnose_path`` reads.
      files: the files whose bytes make up the run (the cache key), sorted.
      kind: ``"trace"``, ``"shards"``, ``"foreign"`` or ``"unlistable"`` (a folder that could not
        be read; ``reason`` says why).
      run: for a foreign log file that holds several runs (a W&B chart export), which one.
    """

    path: str
    files: tuple[str, ...] = ()
    kind: str = "trace"
    reason: str | None = field(default=None, compare=False)
    run: str | None = None

    @property
    def label(self) -> str:
        """The path, and the run's name when one foreign log file holds several runs."""
        return self.path if self.run is None else f"{self.path}#{self.run}"


def discover_runs(root: str | os.PathLike) -> list[RunRef]:
    """Every run under ``root``, sorted by path.

    Args:
      root: a folder to search (recursively; hidden folders are skipped) or one run's path.

    Returns:
      The runs found, sorted by path; empty when the folder holds none.

    Raises:
      DiagInputError: ``root`` does not exist or cannot be listed.
    """
    root_path = Path(root)
    if not root_path.exists():
        raise DiagInputError(Problem(str(root_path), "no such file or folder"),
                             hint="pass the folder that holds your runs (traces, shard folders or logs)")
    if root_path.is_file():
        return _foreign_runs(root_path) or [RunRef(str(root_path), (str(root_path),), "trace")]
    try:
        os.scandir(root_path).close()
    except OSError as e:
        raise DiagInputError(Problem(str(root_path), f"cannot list the folder: {e.strerror or e}"),
                             hint="check the folder's permissions") from None
    runs: list[RunRef] = []
    _walk(root_path, runs)
    known = {run.path for run in runs}
    runs += [run for run in _foreign_runs(root_path) if run.path not in known]
    return sorted(runs, key=lambda run: run.label)


def _walk(folder: Path, runs: list[RunRef]) -> None:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        runs.append(RunRef(str(folder), (), "unlistable", f"cannot list the folder: {e.strerror or e}"))
        return
    files = [e for e in entries if _is_file(e) and not e.name.startswith(".")]
    traces = [e for e in files if e.name.endswith(".jsonl") or (e.name.endswith(".json") and _holds_records(e.path))]
    traces = [e for e in traces if not (e.name.endswith(".jsonl") and jsonl_may_be_history(e.path))]  # W&B: importers
    stems = {m.group("stem") for m in (_SHARD_NAME.match(e.name) for e in traces) if m}
    if traces and len(stems) == 1 and all(_SHARD_NAME.match(e.name) for e in traces):
        runs.append(RunRef(str(folder), tuple(e.path for e in traces), "shards"))
    else:
        runs.extend(RunRef(e.path, (e.path,), "trace") for e in traces)
    for entry in entries:
        if _is_dir(entry) and not entry.name.startswith(".") and entry.name not in _SKIPPED_FOLDERS:
            _walk(Path(entry.path), runs)


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _holds_records(path: str) -> bool:
    """A ``.json`` file is a trace when its head holds records (``"kind"``), not a config file."""
    try:
        with open(path, "rb") as handle:
            return b'"kind"' in handle.read(_SNIFF_BYTES)
    except OSError:
        return True  # unreadable: let the sweep report why, rather than hide it


def _files_below(folder: Path) -> tuple[str, ...]:
    found = []
    for parent, _dirs, names in os.walk(folder):
        found += [os.path.join(parent, name) for name in names]
    return tuple(sorted(found))


def _foreign_runs(path: Path) -> list[RunRef]:
    """Every run of a foreign log at or under ``path`` (none while the importers are not installed)."""
    from diag.api import foreign_log

    try:
        found = foreign_log(path)
    except Exception as e:  # noqa: BLE001 - a detector's failure is reported as a row, not a crash
        return [RunRef(str(path), (), "unlistable", f"could not look for foreign logs: {type(e).__name__}: {e}")]
    if found is None:
        return []
    sharing = Counter(ref.path for ref in found.runs)
    runs = []
    for ref in found.runs:
        target = Path(ref.path)
        files = _files_below(target) if target.is_dir() else (str(target),)
        # open_run(ref.path) opens exactly this run, unless one file holds several (then name it)
        name = _name_in_file(target, ref) if sharing[ref.path] > 1 else None
        runs.append(RunRef(str(target), files, "foreign", run=name))
    return runs


def _name_in_file(path: Path, ref) -> str:
    """The name ``open_run(path, run=...)`` takes for ``ref`` (a folder's listing prefixes it)."""
    from diag.api import foreign_log

    names = [r.name for r in foreign_log(path).runs]
    return next((n for n in names if ref.name == n or ref.name.endswith("/" + n)), ref.name)


__all__ = ["RunRef", "TRACE_SUFFIXES", "discover_runs"]
