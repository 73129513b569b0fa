"""Which foreign log a path is, and which runs it holds (without reading the logs themselves).

Detection looks at names and at most the first 64 KB of a file: a ``tfevents`` file, a CSV whose
header has a step or epoch column, a ``trainer_state.json`` (or any JSON with a ``log_history``),
an MLflow run folder (``meta.yaml`` beside ``metrics/``), a W&B history export. A folder is walked
(a few levels, hidden folders skipped) and each run it holds is listed once.
"""

from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass
from pathlib import Path

from diag.sniff import jsonl_may_be_history
from diag.errors import DiagInputError, Problem

_PEEK = 1 << 16
_MAX_DEPTH = 6
_MAX_DIRS = 20_000
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_STEP_COLUMNS = ("step", "_step", "Step", "global_step", "epoch")
_SKIP_DIRS = {"__pycache__", "node_modules", ".trash", "site-packages"}


@dataclass(frozen=True)
class RunRef:
    """One run a foreign log holds.

    Attributes:
      name: what ``--run`` takes (a run folder relative to the path given, an MLflow run name, ...).
      source: its format, a key of ``diag.adapters.importers.scalars.SOURCE_TITLES``.
      path: the file or folder that holds this run (``open_run(path)`` opens exactly this run, except
        for a W&B chart export holding several runs in one file: pass ``run=name`` then).
      aliases: other names ``--run`` accepts (an MLflow run id).
    """

    name: str
    source: str
    path: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Detected:
    """A foreign log: its format (``"mixed"`` when a folder holds several) and its runs."""

    source: str
    path: str
    runs: tuple[RunRef, ...]


def detect(path: str | os.PathLike) -> Detected | None:
    """The foreign log at ``path``, or None when it is not one (a diag trace, or nothing known)."""
    p = Path(path)
    if p.is_file():
        source = detect_file(p, explicit=True)
        if source is None:
            return None
        runs = _file_runs(p, source)
        return Detected(source, str(p), tuple(runs))
    if p.is_dir():
        runs = _folder_runs(p)
        if not runs:
            return None
        sources = {r.source for r in runs}
        return Detected(sources.pop() if len(sources) == 1 else "mixed", str(p), tuple(runs))
    return None


def detect_file(p: Path, explicit: bool = False) -> str | None:
    """The format of one file, from its name and first 64 KB (None: not a foreign log).

    ``explicit``: the user named this file, so any CSV counts as a CSV log (and one without a step
    column gets that reason); inside a folder only CSVs with a step or epoch column are logs.
    """
    name = p.name
    if "tfevents" in name:
        return "tensorboard"
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".json", ".jsonl", ".tsv"):
        return None
    try:
        with open(p, "rb") as f:
            head = f.read(_PEEK)
    except OSError:
        return None
    text = head.decode("utf-8", errors="replace")
    if suffix in (".csv", ".tsv"):
        return csv_flavor(p, text) or ("csv" if explicit else None)
    if name == "trainer_state.json" or re.search(r'"log_history"\s*:', text):
        return "huggingface"
    first = text.lstrip()[:1]
    if _looks_like_diag(text):
        return None
    if first in ("[", "{") and re.search(r'"_step"\s*:', text):
        return "wandb"
    return None


def _looks_like_diag(text: str) -> bool:
    return bool(re.search(r'"kind"\s*:\s*"(header|step|eval|data|check|event)"', text)
                or re.search(r'"schema"\s*:\s*"diag\.', text))


def csv_columns(text: str) -> list[str]:
    """The header row of a CSV's first bytes."""
    first = text.splitlines()[0] if text else ""
    try:
        return next(csv.reader(io.StringIO(first)), [])
    except csv.Error:
        return []


def csv_flavor(p: Path, text: str) -> str | None:
    """Which CSV log a file is: lightning, keras, wandb or plain csv (None: no step/epoch column)."""
    columns = csv_columns(text)
    if not columns:
        return None
    names = set(columns)
    if "_step" in names or "Step" in names or any(" - " in c for c in columns):
        return "wandb"
    if "step" in names and "epoch" in names and p.name == "metrics.csv":
        return "lightning"
    if "step" in names or "global_step" in names:
        return "csv"
    if columns[0] == "epoch":
        return "keras"
    if "epoch" in names:
        return "csv"
    return None


def _file_runs(p: Path, source: str) -> list[RunRef]:
    if source == "wandb" and p.suffix.lower() == ".csv":
        from diag.adapters.importers.wandb import chart_runs

        names = chart_runs(p)
        if len(names) > 1:
            return [RunRef(name, source, str(p)) for name in names]
    if source == "lightning":
        return [RunRef(p.parent.name, source, str(p))]
    if source == "huggingface":
        parent = p.parent
        run = parent.parent.name if _CHECKPOINT.match(parent.name) else parent.name
        return [RunRef(run or p.stem, source, str(p))]
    return [RunRef(p.stem if source != "tensorboard" else p.parent.name, source, str(p))]


def _folder_runs(root: Path) -> list[RunRef]:
    """Every run under ``root``, one entry each (a checkpointed HF run counts once: its last state)."""
    runs: list[RunRef] = []
    hf_states: dict[Path, tuple[int, Path]] = {}
    visited = 0
    for folder, dirs, files in os.walk(root):
        visited += 1
        here = Path(folder)
        depth = len(here.relative_to(root).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIP_DIRS)
        if depth >= _MAX_DEPTH or visited > _MAX_DIRS:
            dirs[:] = []
        if "meta.yaml" in files and "metrics" in dirs:
            runs.append(_mlflow_ref(root, here))
            dirs[:] = []  # metrics/, params/, tags/ of one run
            continue
        files = sorted(files)
        if any("tfevents" in f for f in files):
            runs.append(RunRef(_rel(root, here), "tensorboard", str(here)))
        for f in files:
            if f == "trainer_state.json":
                match = _CHECKPOINT.match(here.name)
                key = here.parent if match else here
                number = int(match.group(1)) if match else 1 << 62
                if key not in hf_states or hf_states[key][0] < number:
                    hf_states[key] = (number, here / f)
            elif f.lower().endswith((".csv", ".tsv")) or (f.endswith(".jsonl") and jsonl_may_be_history(here / f)):
                source = detect_file(here / f)
                if source is None:
                    continue
                if source == "lightning":
                    runs.append(RunRef(_rel(root, here), source, str(here / f)))
                    continue
                stem = _rel(root, here / Path(f).stem)
                for ref in _file_runs(here / f, source):
                    name = stem if ref.name in (Path(f).stem, here.name) else f"{stem}/{ref.name}"
                    runs.append(RunRef(name, ref.source, ref.path))
    for key, (_, state) in sorted(hf_states.items()):
        runs.append(RunRef(_rel(root, key), "huggingface", str(state)))
    return _unique(runs)


def _rel(root: Path, p: Path) -> str:
    rel = p.relative_to(root).as_posix()
    return root.resolve().name if rel == "." else rel


def _unique(runs: list[RunRef]) -> list[RunRef]:
    """One entry per run name: a Lightning folder with both event files and metrics.csv is one run."""
    preference = {"lightning": 0, "tensorboard": 1}
    chosen: dict[str, RunRef] = {}
    for ref in runs:
        old = chosen.get(ref.name)
        if old is None or preference.get(ref.source, 9) < preference.get(old.source, 9):
            chosen[ref.name] = ref
    return sorted(chosen.values(), key=lambda r: _natural(r.name))


def _natural(text: str):
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _mlflow_ref(root: Path, run_dir: Path) -> RunRef:
    from diag.adapters.importers.mlflow_store import read_meta

    meta = read_meta(run_dir / "meta.yaml")
    run_id = str(meta.get("run_id") or meta.get("run_uuid") or run_dir.name)
    name = str(meta.get("run_name") or run_id)
    return RunRef(name, "mlflow", str(run_dir), aliases=(run_id, _rel(root, run_dir)))


def pick_run(found: Detected, run: str | None) -> RunRef:
    """The run ``--run`` names, or the only one; several without ``--run`` is a clear error."""
    if run is None:
        if len(found.runs) == 1:
            return found.runs[0]
        listing = "\n".join(f"  {r.name}  ({r.source})" for r in found.runs[:50])
        more = f"\n  ... and {len(found.runs) - 50} more" if len(found.runs) > 50 else ""
        raise DiagInputError(
            Problem(found.path, f"holds {len(found.runs)} runs; pick one with --run NAME:\n{listing}{more}"),
            hint="diag sweep PATH diagnoses them all")
    matches = [r for r in found.runs if run == r.name or run in r.aliases]
    if not matches and len(found.runs) == 1 and run.rstrip("/").rsplit("/", 1)[-1] == found.runs[0].name:
        matches = list(found.runs)  # a run's own folder, named as the parent listing named it ('a/b')
    if not matches:
        matches = [r for r in found.runs if r.name.endswith("/" + run) or Path(r.name).name == run]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(r.name for r in (matches or found.runs)[:20])
    reason = "matches several runs" if matches else "is not a run of this log"
    raise DiagInputError(Problem(found.path, f"--run {run!r} {reason}; runs: {names}"))
