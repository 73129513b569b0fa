"""Weights & Biases history exports (no network): CSV or JSON.

Two shapes exist:

* a run's history (``run.history()`` / ``run.scan_history()`` saved as CSV, JSON or JSON lines,
  or a run folder's ``wandb-history.jsonl``): one row per ``wandb.log`` call with ``_step``,
  ``_runtime``, ``_timestamp`` and the logged keys;
* a chart's "Export CSV" from the web UI: a ``Step`` column and one ``<run name> - <metric>``
  column per run (plus ``__MIN``/``__MAX`` band columns, dropped), so one file may hold several runs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from diag.errors import DiagInputError, Problem

from diag.adapters.importers.scalars import ScalarLog, to_number

_BANDS = ("__MIN", "__MAX")


def chart_runs(path: Path) -> list[str]:
    """Run names of a chart export (``run - metric`` columns); empty for a history export."""
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            columns = next(csv.reader(f), [])
    except (OSError, csv.Error):
        return []
    names = []
    for column in columns:
        if " - " in column and not column.endswith(_BANDS):
            run = column.split(" - ", 1)[0].strip()
            if run not in names:
                names.append(run)
    return names


def read_wandb(path: str | Path, run: str, chart_run: str | None = None) -> ScalarLog:
    """A W&B export as named series (``chart_run`` picks a run of a chart export).

    Raises:
      DiagInputError: unreadable, or neither shape of export (the message names the file).
    """
    p = Path(path)
    log = ScalarLog(source="wandb", path=str(p), run=chart_run or run)
    if p.suffix.lower() == ".csv":
        _read_csv(p, log, chart_run)
    else:
        _read_json(p, log)
    if not log.series:
        raise DiagInputError(Problem(str(p), "the W&B export holds no logged numbers"))
    return log


def _read_csv(p: Path, log: ScalarLog, chart_run: str | None) -> None:
    from diag.adapters.importers.csv_logs import _read_rows

    rows, columns = _read_rows(p)
    step_column = "_step" if "_step" in columns else "Step" if "Step" in columns else None
    if step_column is None:
        raise DiagInputError(Problem(str(p), "no '_step' or 'Step' column", line=1),
                             hint="export the run's history with its _step column")
    runs = chart_runs(p)
    if len(runs) > 1 and chart_run is None:
        raise DiagInputError(Problem(str(p), f"holds {len(runs)} runs; pick one with --run NAME: {', '.join(runs)}"))
    wanted = []
    for i, column in enumerate(columns):
        if i == columns.index(step_column) or not column or column.endswith(_BANDS):
            continue
        if " - " in column:
            owner, metric = (part.strip() for part in column.split(" - ", 1))
            if chart_run is not None and owner != chart_run:
                continue
            wanted.append((i, metric))
        else:
            wanted.append((i, column))
    step_index = columns.index(step_column)
    bad = 0
    for row in rows:
        if len(row) <= step_index:
            continue
        step = to_number(row[step_index])
        if step is None or step != step or step < 0 or not step.is_integer():
            bad += 1
            continue
        for i, metric in wanted:
            if i < len(row):
                value = to_number(row[i])
                if value is not None:
                    log.add(metric, int(step), value)
    if bad:
        log.problems.append(Problem(str(p), f"{bad} rows without a step were skipped", field=step_column,
                                    severity="warning"))


def _read_json(p: Path, log: ScalarLog) -> None:
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise DiagInputError(Problem(str(p), f"cannot read: {e.strerror or e}")) from None
    rows = []
    try:
        document = json.loads(text)
        rows = document if isinstance(document, list) else [document]
        numbered = list(enumerate(rows, 1))
    except json.JSONDecodeError:
        numbered = []
        lines = text.splitlines()
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                numbered.append((number, json.loads(line)))
            except json.JSONDecodeError as e:
                last = number == len(lines)
                log.problems.append(Problem(str(p), f"not JSON ({e.msg}); line skipped", line=number,
                                            severity="warning" if last else "error"))
    if not numbered:
        raise DiagInputError(Problem(str(p), "not a W&B history: no JSON rows"))
    for number, row in numbered:
        if not isinstance(row, dict) or not isinstance(row.get("_step"), int) or row["_step"] < 0:
            log.problems.append(Problem(str(p), "a history row without an integer '_step'; skipped", line=number))
            continue
        step = row["_step"]
        for key, value in row.items():
            if key == "_step" or isinstance(value, (dict, list)):
                continue  # histograms, images and tables are W&B objects, not scalars
            number_value = to_number(value)
            if number_value is not None:
                log.add(key, step, number_value)
