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

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diag.errors import Problem
from diag.trace.reader import ReadResult, read_records
from diag.trace.records import Check, Data, Eval, Header, Step, _Event

STEP_SCALARS = (
    "epoch", "time", "step_time", "data_wait_time", "loss", "lr", "grad_norm", "update_norm",
    "param_norm", "loss_scale", "skipped", "memory_bytes",
)
BATCH_FIELDS = ("mean", "std", "min", "max", "nonfinite", "label_entropy", "distinct_labels")
LAYER_GROUPS = {
    "layers": ("grad_norm", "param_norm", "update_norm", "update_ratio", "grad_nonfinite", "param_nonfinite"),
    "activations": ("mean", "std", "zero_fraction", "saturation_fraction", "nonfinite"),
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
    """A per-layer statistic: ``values[i, j]`` is layer j at ``steps[i]``."""

    steps: np.ndarray
    values: np.ndarray
    layer_names: tuple[str, ...]


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
    evals: list[Eval] = field(default_factory=list)
    data: list[Data] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    events: list = field(default_factory=list)
    headers: list[Header] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Step records of the rare case that adapters could not fold into columns (kept for tools).
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
        return LayerMatrix(self.steps[mask], self.layer_columns[name][mask], self.layer_names)

    def layer_series(self, name: str, layer: str | int) -> Series:
        index = layer if isinstance(layer, int) else self.layer_names.index(layer)
        matrix = self.layer_matrix(name)
        return Series(matrix.steps, matrix.values[:, index])

    def series_names(self) -> list[str]:
        names = [n for n in self.columns if self.present[n].any()]
        names += [n for n in self.layer_columns if self.layer_present[n].any()]
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


def load_trace(path: str | Path) -> Trace:
    """Load a trace file or folder of shards into a columnar ``Trace``.

    Bad records are skipped and listed in ``Trace.problems``; see ``diag.trace.reader``.
    """
    return from_read_result(read_records(path))


def from_read_result(result: ReadResult) -> Trace:
    headers = [r for r in result.records if isinstance(r, Header)]
    headers.sort(key=lambda h: h.process_index)
    header = headers[0] if headers else None
    step_records = [r for r in result.records if isinstance(r, Step)]
    problems = list(result.problems)
    if header is None and result.records:
        problems.append(Problem(result.path, "no header record: layer names and run facts are unknown",
                                severity="warning"))
    step_records = _ordered_unique_steps(step_records, len(headers) > 1)
    steps = np.fromiter((s.step for s in step_records), dtype=np.int64, count=len(step_records))
    columns, present = _scalar_columns(step_records)
    layer_columns, layer_present = _layer_columns(step_records, header, result.path, problems)
    return Trace(
        path=result.path,
        header=header,
        steps=steps,
        columns=columns,
        present=present,
        layer_columns=layer_columns,
        layer_present=layer_present,
        evals=[r for r in result.records if isinstance(r, Eval)],
        data=[r for r in result.records if isinstance(r, Data)],
        checks=[r for r in result.records if isinstance(r, Check)],
        events=[r for r in result.records if isinstance(r, _Event)],
        headers=headers,
        problems=problems,
    )


def _ordered_unique_steps(records: list[Step], several_shards: bool) -> list[Step]:
    """Steps ascending; when shards repeat a step, the first shard's (lowest process) record wins.

    Global statistics are written once (by process 0), so the first record is the complete one.
    """
    if all(records[i].step < records[i + 1].step for i in range(len(records) - 1)):
        return records
    by_step: dict[int, Step] = {}
    for record in records:
        # A later record of the same step from the same shard is a restart's re-recording: it wins.
        if record.step not in by_step or not several_shards:
            by_step[record.step] = record
    return [by_step[s] for s in sorted(by_step)]


def _scalar_columns(records: list[Step]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    n = len(records)
    columns: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}

    def add(name: str, values: list) -> None:
        mask = np.fromiter((v is not None for v in values), dtype=bool, count=n)
        if not mask.any():
            return
        column = np.fromiter((np.nan if v is None else float(v) for v in values), dtype=np.float64, count=n)
        columns[name] = column
        present[name] = mask

    for name in STEP_SCALARS:
        add(name, [getattr(r, name) for r in records])
    for group in ("input", "labels"):
        parts = [getattr(r, group) for r in records]
        if any(p is not None for p in parts):
            for name in BATCH_FIELDS:
                add(f"{group}.{name}", [None if p is None else getattr(p, name) for p in parts])
    metric_names = sorted({m for r in records for m in r.metrics})
    for name in metric_names:
        add(f"metrics.{name}", [r.metrics.get(name) for r in records])
    return columns, present


def _layer_columns(records: list[Step], header: Header | None, path: str, problems: list[Problem]):
    n = len(records)
    width = len(header.layers) if header is not None and header.layers else None
    columns: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    for group, names in LAYER_GROUPS.items():
        parts = [getattr(r, group) for r in records]
        if all(p is None for p in parts):
            continue
        for name in names:
            rows = [None if p is None else getattr(p, name) for p in parts]
            mask = np.fromiter((row is not None for row in rows), dtype=bool, count=n)
            if not mask.any():
                continue
            lengths = {len(row) for row in rows if row is not None}
            expected = width if width is not None else max(lengths)
            if lengths != {expected}:
                bad = next(i for i, row in enumerate(rows) if row is not None and len(row) != expected)
                problems.append(Problem(
                    path, f"{group}.{name} has {len(rows[bad])} values at step {records[bad].step} but the "
                    f"header lists {expected} layers; those rows are ignored", field=f"{group}.{name}",
                ))
                for i, row in enumerate(rows):
                    if row is not None and len(row) != expected:
                        rows[i] = None
                        mask[i] = False
            matrix = np.full((n, expected), np.nan, dtype=np.float64)
            filled = [row for row in rows if row is not None]
            if filled:
                block = np.array(filled, dtype=object)
                block[block == None] = np.nan  # noqa: E711 - elementwise comparison on an object array
                matrix[mask] = block.astype(np.float64)
            columns[f"{group}.{name}"] = matrix
            present[f"{group}.{name}"] = mask
    return columns, present
