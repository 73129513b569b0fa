"""Find every run under a folder: diag traces, folders of shards, and foreign logs when importable.

A run is what ``diag.diagnose_path`` reads in one call:

* a trace file, ``*.jsonl`` (always: a broken one is reported, not skipped) or ``*.json`` whose
  head holds trace records (a ``config.json`` beside a run is not a run);
* a folder whose trace files are all shards of one run (``run.p0.jsonl``, ``run.p1.jsonl``);
* a file or folder that the foreign-log importers recognise (``diag.adapters.importers``), once
  they are installed; a folder recognised as a whole is not searched further.

A folder that cannot be listed becomes a run that could not be read (with the reason), so a
permission problem deep in a tree shows up in the sweep instead of silently hiding runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

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
    """

    path: str
    files: tuple[str, ...] = ()
    kind: str = "trace"
    reason: str | None = field(default=None, compare=False)


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
    detect = _foreign_detector()
    if root_path.is_file():
        return [RunRef(str(root_path), (str(root_path),), "foreign" if _is_foreign(detect, root_path) else "trace")]
    try:
        os.scandir(root_path).close()
    except OSError as e:
        raise DiagInputError(Problem(str(root_path), f"cannot list the folder: {e.strerror or e}"),
                             hint="check the folder's permissions") from None
    runs: list[RunRef] = []
    _walk(root_path, runs, detect, is_root=True)
    return sorted(runs, key=lambda run: run.path)


def _walk(folder: Path, runs: list[RunRef], detect, *, is_root: bool = False) -> None:
    if not is_root and _is_foreign(detect, folder):
        runs.append(RunRef(str(folder), _files_below(folder), "foreign"))
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as e:
        runs.append(RunRef(str(folder), (), "unlistable", f"cannot list the folder: {e.strerror or e}"))
        return
    files = [e for e in entries if _is_file(e) and not e.name.startswith(".")]
    traces = [e for e in files if e.name.endswith(".jsonl") or (e.name.endswith(".json") and _holds_records(e.path))]
    stems = {m.group("stem") for m in (_SHARD_NAME.match(e.name) for e in traces) if m}
    if traces and len(stems) == 1 and all(_SHARD_NAME.match(e.name) for e in traces):
        runs.append(RunRef(str(folder), tuple(e.path for e in traces), "shards"))
    else:
        runs.extend(RunRef(e.path, (e.path,), "trace") for e in traces)
    claimed = {e.name for e in traces}
    for entry in files:
        if entry.name not in claimed and _is_foreign(detect, Path(entry.path)):
            runs.append(RunRef(entry.path, (entry.path,), "foreign"))
    for entry in entries:
        if _is_dir(entry) and not entry.name.startswith(".") and entry.name not in _SKIPPED_FOLDERS:
            _walk(Path(entry.path), runs, detect)


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


def _foreign_detector():
    """The importers' detection function, or None while they are not installed."""
    from diag.api import _importers_detect

    return _importers_detect()


def _is_foreign(detect, path: Path) -> bool:
    if detect is None:
        return False
    from diag.api import _looks_like_diag_trace

    if _looks_like_diag_trace(path):
        return False
    try:
        return detect(path) is not None
    except Exception:  # noqa: BLE001 - a detector's bug must not stop discovery of the other runs
        return False


__all__ = ["RunRef", "TRACE_SUFFIXES", "discover_runs"]
