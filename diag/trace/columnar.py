"""The columnar, in-memory form of a trace that signals and rules compute on.

Every step-record field becomes one numpy column aligned with ``Trace.steps``; every per-layer
array becomes one ``(steps, layers)`` matrix aligned with ``Trace.layer_names``. Fields a step did
not record are masked, not NaN, so a recorded NaN (a real non-finite value) is never confused with
a missing one. ``Trace.series(name)`` returns only the points that were recorded.

Series names (also used by rules):

* step scalars: ``loss``, ``lr``, ``grad_norm``, ``update_norm``, ``param_norm``, ``loss_scale``,
  ``skipped``, ``epoch``, ``step_time``, ``data_wait_time``, ``time``, ``memory_bytes``,
  ``input.mean`` (``.std .min .max .nonfinite``), ``labels.label_entropy``, ``metrics.<name>``
* per layer: ``layers.grad_norm`` (``.param_norm .update_norm .update_ratio .grad_nonfinite
  .param_nonfinite``), ``activations.mean`` (``.std .zero_fraction .saturation_fraction .nonfinite``)
* evaluations: ``eval.<split>.loss``, ``eval.<split>.metrics.<name>``
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from diag.errors import Problem
from diag.trace.records import ActivationStats, Check, Data, Eval, Header, LayerStats

# The headline series, listed first by ``Trace.series_names`` in this order.
SERIES_ORDER = ("loss", "lr", "grad_norm", "update_norm", "param_norm", "loss_scale", "skipped", "epoch",
                "step_time", "data_wait_time", "time", "memory_bytes")
LAYER_GROUPS = {
    "layers": tuple(LayerStats.model_fields),
    "activations": tuple(ActivationStats.model_fields),
}


@dataclass(frozen=True)
class Series:
    """Recorded points of one metric: steps and values of equal length, steps ascending."""

    steps: np.ndarray
    values: np.ndarray

    def __len__(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class LayerMatrix:
    """A per-layer statistic: ``values[i, j]`` is layer j at ``steps[i]``.

    ``measured[i, j]`` is False where the adapter wrote null (the statistic does not apply to that
    layer, e.g. a zero fraction of the output layer); those entries hold NaN in ``values``.
    """

    steps: np.ndarray
    values: np.ndarray
    layer_names: tuple[str, ...]
    measured: np.ndarray


@dataclass
class Trace:
    """A loaded trace: header, step columns, evaluations, data facts, checks and events."""

    path: str
    header: Header | None
    steps: np.ndarray
    columns: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    layer_columns: dict[str, np.ndarray]
    layer_present: dict[str, np.ndarray]
    layer_measured: dict[str, np.ndarray] = field(default_factory=dict)
    evals: list[Eval] = field(default_factory=list)
    data: list[Data] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    events: list = field(default_factory=list)
    headers: list[Header] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    run: int = 1  # which run of a file that holds several (the reader's ``run=``), and how many
    runs: int = 1
    _eval_cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ accessors

    @property
    def layer_names(self) -> tuple[str, ...]:
        if self.header is not None and self.header.layers:
            return tuple(layer.name for layer in self.header.layers)
        width = max((m.shape[1] for m in self.layer_columns.values()), default=0)
        return tuple(f"layer{i}" for i in range(width))

    @property
    def num_steps(self) -> int:
        return int(self.steps.shape[0])

    @property
    def last_step(self) -> int | None:
        return int(self.steps[-1]) if self.num_steps else None

    def has(self, name: str) -> bool:
        """True when at least one point of the named series was recorded."""
        if name.startswith("eval."):
            series = self._eval_series(name)
            return series is not None and len(series) > 0
        if name in self.columns:
            return bool(self.present[name].any())
        if name in self.layer_columns:
            return bool(self.layer_present[name].any())
        return False

    def series(self, name: str) -> Series:
        """The recorded points of a scalar series (see the module docstring for names)."""
        if name.startswith("eval."):
            series = self._eval_series(name)
            if series is None:
                raise KeyError(name)
            return series
        mask = self.present[name]
        return Series(self.steps[mask], self.columns[name][mask])

    def layer_matrix(self, name: str) -> LayerMatrix:
        mask = self.layer_present[name]
        values = self.layer_columns[name][mask]
        measured = self.layer_measured.get(name)
        measured = np.ones(values.shape, dtype=bool) if measured is None else measured[mask]
        return LayerMatrix(self.steps[mask], values, self.layer_names, measured)

    def layer_series(self, name: str, layer: str | int) -> Series:
        index = layer if isinstance(layer, int) else self.layer_names.index(layer)
        matrix = self.layer_matrix(name)
        return Series(matrix.steps, matrix.values[:, index])

    def series_names(self) -> list[str]:
        # The headline series first (in SERIES_ORDER), then the rest alphabetically: the
        # order must not depend on which fields happened to appear first in the file.
        rank = {name: i for i, name in enumerate(SERIES_ORDER)}
        names = sorted((n for n in self.columns if self.present[n].any()), key=lambda n: (rank.get(n, len(rank)), n))
        names += sorted(n for n in self.layer_columns if self.layer_present[n].any())
        for split in self.eval_splits():
            names.append(f"eval.{split}.loss")
            metric_names = sorted({m for e in self.evals if e.split == split for m in e.metrics})
            names += [f"eval.{split}.metrics.{m}" for m in metric_names]
        return names

    def eval_splits(self) -> list[str]:
        return sorted({e.split for e in self.evals})

    def _eval_series(self, name: str) -> Series | None:
        if name in self._eval_cache:
            return self._eval_cache[name]
        parts = name.split(".")
        if len(parts) < 3:
            return None
        split, rest = parts[1], parts[2:]
        points = []
        for record in self.evals:
            if record.split != split:
                continue
            if rest == ["loss"]:
                value = record.loss
            elif len(rest) == 2 and rest[0] == "metrics":
                value = record.metrics.get(rest[1])
            else:
                return None
            if value is not None:
                points.append((record.step, value))
        points.sort(key=lambda p: p[0])
        series = Series(
            np.array([p[0] for p in points], dtype=np.int64), np.array([p[1] for p in points], dtype=np.float64)
        )
        self._eval_cache[name] = series
        return series

    def events_of(self, event: str) -> list:
        return [e for e in self.events if e.event == event]


class ColumnBuffer:
    """A growable float64 column with a presence mask (per row, and per entry once a null is seen):
    what the builder fills record by record before :class:`Trace` takes the arrays."""

    __slots__ = ("values", "present", "measured")

    def __init__(self, capacity: int, width: int | None = None):
        shape = (capacity,) if width is None else (capacity, width)
        self.values = np.full(shape, np.nan, dtype=np.float64)
        self.present = np.zeros(capacity, dtype=bool)
        # Allocated on the first null inside a per-layer array: True where a value was measured.
        self.measured: np.ndarray | None = None

    def grow(self, capacity: int) -> None:
        old = self.values
        self.values = np.full((capacity,) + old.shape[1:], np.nan, dtype=np.float64)
        self.values[: old.shape[0]] = old
        present = np.zeros(capacity, dtype=bool)
        present[: self.present.shape[0]] = self.present
        self.present = present
        if self.measured is not None:
            measured = np.ones(self.values.shape, dtype=bool)
            measured[: old.shape[0]] = self.measured
            self.measured = measured

    def put_row(self, row: int, values: list, may_hold_null: bool = True) -> None:
        """Copy one per-layer array into row ``row``; nulls become unmeasured entries."""
        # struct packs a list of plain numbers (float, int, bool) about twice as fast as numpy
        # converts it, to the same doubles; anything else (a null, a "NaN" string) is left to numpy.
        try:
            row_struct(self.values.shape[1]).pack_into(self.values, row * self.values.strides[0], *values)
        except (struct.error, TypeError, ValueError, OverflowError):
            pass
        else:
            self.present[row] = True
            return
        # numpy would silently turn None into NaN, which reads as a non-finite measurement.
        if may_hold_null and None in values:
            if self.measured is None:
                self.measured = np.ones(self.values.shape, dtype=bool)
            self.measured[row] = [v is not None for v in values]
        self.values[row] = values
        self.present[row] = True


@lru_cache(maxsize=64)
def row_struct(width: int) -> struct.Struct:
    """Packs ``width`` numbers as native doubles: one row of a ``(steps, width)`` float64 column."""
    return struct.Struct(f"{width}d")
