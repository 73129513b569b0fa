"""CSV logs: Lightning's ``CSVLogger`` (``version_N/metrics.csv`` + ``hparams.yaml``), Keras's
``CSVLogger`` (one row per epoch), and any CSV with a step or epoch column.

Lightning writes one row per logging call with blanks for the metrics that call did not log (a
validation row has ``val_loss`` and no ``train_loss``); blanks are simply absent points. Keras
writes one row per epoch, so its steps are epochs (the header says ``step_unit: epoch``).
"""

from __future__ import annotations

import csv
from pathlib import Path

from diag.errors import DiagInputError, Problem

from diag.adapters.importers.discover import csv_flavor
from diag.adapters.importers.scalars import ScalarLog, hparam_value, to_number

_STEP_COLUMNS = ("step", "global_step", "_step", "Step")


def read_csv_log(path: str | Path, run: str, source: str | None = None) -> ScalarLog:
    """One CSV log as named series (every column but the step column).

    Raises:
      DiagInputError: unreadable, empty, or no step/epoch column (the message names the file).
    """
    p = Path(path)
    rows, columns = _read_rows(p)
    flavor = source or csv_flavor(p, ",".join(columns)) or "csv"
    step_column = next((c for c in _STEP_COLUMNS if c in columns), None)
    step_unit = "step"
    if step_column is None:
        if "epoch" not in columns:
            raise DiagInputError(Problem(str(p), f"no step or epoch column (columns: {', '.join(columns[:10])})",
                                         line=1),
                                 hint="a CSV log needs a 'step' or 'epoch' column; rename yours")
        step_column, step_unit = "epoch", "epoch"
    log = ScalarLog(source=flavor, path=str(p), run=run, step_unit=step_unit,
                    framework={"lightning": "lightning", "keras": "keras"}.get(flavor))
    index = columns.index(step_column)
    metric_columns = [(i, c) for i, c in enumerate(columns) if i != index and c.strip()]
    if step_unit == "epoch":
        metric_columns.append((index, "epoch"))  # the step is the epoch: keep it as the epoch field too
    bad_cells = 0
    first_bad = None
    last_row = len(rows) + 1
    for number, row in enumerate(rows, 2):
        if len(row) < len(columns):
            if number == last_row and row:
                log.problems.append(Problem(str(p), "the last row is cut short (a run killed mid-write); skipped",
                                            line=number, severity="warning"))
                continue
            row = row + [""] * (len(columns) - len(row))
        step = to_number(row[index])
        if step is None or step != step or step < 0 or not float(step).is_integer():
            if row[index].strip() or any(cell.strip() for cell in row):
                bad_cells += 1
                first_bad = first_bad or (number, step_column, row[index])
            continue
        step = int(step)
        for i, name in metric_columns:
            cell = row[i]
            if not cell:
                continue
            value = to_number(cell)
            if value is None:
                bad_cells += 1
                first_bad = first_bad or (number, name, cell)
                continue
            log.add(name, step, value)
    if bad_cells:
        line, name, cell = first_bad
        log.problems.append(Problem(str(p), f"{bad_cells} cell(s) that are not numbers were skipped, the first "
                                    f"{cell!r}", line=line, field=name, severity="warning"))
    if flavor == "lightning":
        log.hparams = _lightning_hparams(p.parent / "hparams.yaml", log)
    return log


def _read_rows(p: Path) -> tuple[list[list[str]], list[str]]:
    try:
        with open(p, newline="", encoding="utf-8", errors="replace") as f:
            dialect = csv.excel_tab if p.suffix.lower() == ".tsv" else csv.excel
            reader = csv.reader(f, dialect)
            columns = next(reader, None)
            if not columns:
                raise DiagInputError(Problem(str(p), "the CSV log is empty"),
                                     hint="a CSV log starts with a header row naming its columns")
            rows = list(reader)
    except OSError as e:
        raise DiagInputError(Problem(str(p), f"cannot read: {e.strerror or e}")) from None
    except csv.Error as e:
        raise DiagInputError(Problem(str(p), f"not a readable CSV: {e}")) from None
    if not rows:
        raise DiagInputError(Problem(str(p), "the CSV log has a header row and no data rows", line=1))
    return rows, [c.strip() for c in columns]


def _lightning_hparams(path: Path, log: ScalarLog) -> dict:
    """``hparams.yaml`` beside ``metrics.csv`` (save_hyperparameters); scalars only."""
    if not path.is_file():
        return {}
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        # Lightning dumps objects it cannot represent as python tags, which safe_load refuses.
        log.problems.append(Problem(str(path), f"hyper-parameters not read: {str(e).splitlines()[0]}",
                                    severity="warning"))
        return {}
    if not isinstance(document, dict):
        return {}
    return {str(k): hparam_value(v) for k, v in _flatten(document).items()}


def _flatten(mapping: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out
