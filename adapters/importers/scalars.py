"""What every importer reads out of a foreign log: named scalar series, run facts, problems.

A source module (tensorboard, csv_logs, hf_state, mlflow_store, wandb) fills one ``ScalarLog`` per
run with the log's own metric names; ``diag.adapters.importers.assemble`` then maps the names to
trace fields and builds the trace records. Keeping the two apart means a new source only reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from diag.errors import Problem

# How each source is called in messages, the README table and the trace header.
SOURCE_TITLES = {
    "tensorboard": "TensorBoard event files",
    "lightning": "Lightning CSVLogger",
    "keras": "Keras CSVLogger",
    "csv": "CSV log",
    "huggingface": "Hugging Face trainer_state.json",
    "mlflow": "MLflow file store",
    "wandb": "Weights & Biases history export",
}


@dataclass
class ScalarLog:
    """One run of a foreign log, as the log named things.

    Attributes:
      source: the format (a key of ``SOURCE_TITLES``).
      path: the file or folder that holds this run.
      run: the run's name (a TensorBoard run folder, a Lightning version, an MLflow run name, ...).
      series: metric name -> (steps, values), in the order the log holds them.
      step_unit: "step", or "epoch" when the log counts epochs only (Keras CSVLogger).
      framework: the framework that ran the loop when the format implies it ("lightning", "transformers",
        "keras"; not "torch": rules about hand-written PyTorch loops do not apply to those loops).
      hparams: the run's hyper-parameters as the log holds them (scalars only).
      status: "completed", "crashed", "killed" or None when the log does not say.
      problems: what was wrong with the log but did not stop the import (warnings, skipped rows).
    """

    source: str
    path: str
    run: str
    series: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    step_unit: str = "step"
    framework: str | None = None
    hparams: dict[str, bool | int | float | str] = field(default_factory=dict)
    status: str | None = None
    problems: list[Problem] = field(default_factory=list)

    def add(self, name: str, step: int, value: float) -> None:
        """One point of metric ``name``."""
        points = self.series.get(name)
        if points is None:
            points = self.series[name] = ([], [])
        points[0].append(step)
        points[1].append(value)

    @property
    def points(self) -> int:
        return sum(len(steps) for steps, _ in self.series.values())


def to_number(text) -> float | None:
    """A log cell as a float: numbers, 'nan'/'inf' spellings; None for blanks and non-numbers."""
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, (int, float)):
        return float(text)
    text = str(text).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        lowered = text.lower()
        if lowered in ("nan", "-nan"):
            return math.nan
        if lowered in ("inf", "infinity", "+inf"):
            return math.inf
        if lowered in ("-inf", "-infinity"):
            return -math.inf
        return None


def hparam_value(value) -> bool | int | float | str | None:
    """A hyper-parameter as a header tag scalar (long or nested values are shortened to text)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        number = to_number(value)
        if number is not None and value.strip().lower() not in ("nan", "inf", "-inf"):
            return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
        return value if len(value) <= 200 else value[:197] + "..."
    text = str(value)
    return text if len(text) <= 200 else text[:197] + "..."
