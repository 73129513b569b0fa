"""Build a columnar ``Trace`` from records as they are read, without keeping the records.

Step records are most of any trace (100,000 of them for a long run), so they take a fast path:
the parsed JSON object is checked against the step schema by hand and copied straight into numpy
columns. Anything the fast path is not sure about (a non-finite value written as a string, an
unknown field, a wrong type, a null inside a per-layer array, ...) is handed to the pydantic model,
which gives the same answer the schema would and the precise error message. The fast path only
ever accepts what the pydantic model accepts. Other record kinds are few and always go through
pydantic.

A reader that has parsed a block of lines hands its step records to ``feed_steps``, which checks
them column by column over the whole block and writes the columns at once; it takes a block only
when ``_fast_step`` would take every record of it, and writes what ``_fast_step`` would have.
Beside it: ``step_plan`` (which column each key of a step goes to), ``step_block`` (a block's
checks, column by column) and ``record_errors`` (pydantic's errors in a reader's words).

The builder is incremental: ``feed`` parsed records (or ``diag.trace.reader.feed_line`` raw JSONL
lines) any number of times, ``build()`` whenever a snapshot is wanted (the TUI follows a growing
file this way).
"""

from __future__ import annotations

import struct
from typing import get_args

import numpy as np
from pydantic import TypeAdapter, ValidationError

from diag.errors import Problem
from diag.trace.columnar import ColumnBuffer, Trace
from diag.trace.limits import MAX_INTEGER, MAX_RAW_INTEGER, check_value
from diag.trace.record_errors import short_repr, validation_problems
from diag.trace.records import Check, Data, Eval, Event, Header, Record, Step, _Event
from diag.trace.step_block import block_writes, put_rows
from diag.trace.step_plan import BATCH_FLOAT_FIELDS, FLOAT_FIELDS, GROUP_FIELDS, step_plan


def _by_tag(union, tag: str) -> dict:
    """The models of a discriminated union (``Annotated[Union[...], Field(...)]``) by their tag."""
    return {model.model_fields[tag].default: model for model in get_args(get_args(union)[0])
            if isinstance(model, type)}


# A record is validated by the model its tags name, built on first use (diag.trace.records): explain
# builds the four or five models a trace holds, not all twenty. Anything else (an unknown or
# missing tag, or a record its model refuses) goes through the discriminated union of every kind,
# whose errors (their locations start with the tag) are what a reader reports.
_KINDS = _by_tag(Record, "kind")  # the event models are a union of their own, under "event"
_EVENTS = _by_tag(Event, "event")
_RECORD: TypeAdapter | None = None  # TypeAdapter(Record), built the first time a record needs it


def validate_record(raw: dict):
    """The record model of a parsed JSON object; raises pydantic's ``ValidationError`` as
    ``TypeAdapter(Record).validate_python(raw)`` would, with the same errors."""
    global _RECORD
    kind = raw.get("kind")
    model = None
    if type(kind) is str:
        event = raw.get("event") if kind == "event" else None
        model = _EVENTS.get(event) if type(event) is str else _KINDS.get(kind)
    if model is not None:
        try:
            return model.model_validate(raw)
        except ValidationError:
            pass
    if _RECORD is None:
        _RECORD = TypeAdapter(Record)
    return _RECORD.validate_python(raw)


class TraceBuilder:
    """Accumulates records of one trace (one file, or several shards fed one after another).

    Args:
      path: what ``Trace.path`` and problem messages name.
      capacity: expected number of step records (an upper bound avoids regrowing the columns).
    """

    def __init__(self, path: str, capacity: int = 1024):
        self.path = str(path)
        self._initial_capacity = capacity
        self._capacity = max(16, capacity)
        self._rows = 0
        self._steps = np.zeros(self._capacity, dtype=np.int64)
        self._order_keys = np.zeros(self._capacity, dtype=np.int64)  # shard rank, for merging
        self._columns: dict[str, ColumnBuffer] = {}
        self._layer_columns: dict[str, ColumnBuffer] = {}
        self._plans: dict[tuple, tuple | bool] = {}
        self._width: int | None = None
        self._shard_rank = 0
        self._source = self.path
        self.headers: list[Header] = []
        self._header_sources: list = []
        self.evals: list[Eval] = []
        self.data: list[Data] = []
        self.checks: list[Check] = []
        self.events: list = []
        self.problems: list[Problem] = []
        self.records = 0
        self.run = 1  # which run of a file that holds several (set by the reader)
        self.runs = 1

    def reset(self) -> None:
        """Forget everything fed: the builder is as new (a reader that met the next run of a file)."""
        source, rank = self._source, self._shard_rank
        self.__init__(self.path, self._initial_capacity)
        self.start_shard(source, rank)

    @property
    def step_rows(self) -> int:
        """Step records fed so far (before repeated steps are resolved by ``build``)."""
        return self._rows

    # ------------------------------------------------------------------ feeding

    def start_shard(self, source: str, rank: int) -> None:
        """Records fed from now on come from another shard (lower rank wins on repeated steps)."""
        self._source = source
        self._shard_rank = rank

    def feed(self, raw, number: int, where: str | None = None, may_hold_null: bool = True) -> None:
        """One parsed JSON value (from line ``number`` of the current source).

        ``may_hold_null=False`` promises that the value holds no JSON null (a reader that saw no
        ``null`` in the line's bytes says so), which spares a scan of every per-layer array.
        """
        if isinstance(raw, dict) and raw.get("kind") == "step" and self._fast_step(raw, may_hold_null):
            self.records += 1
            return
        if not isinstance(raw, dict):
            self.problems.append(Problem(self._source, f"expected a JSON object, got {type(raw).__name__}; skipped",
                                         line=number, field=where))
            return
        # Bounds first: pydantic would recurse into any depth and accept any integer.
        reason = check_value(raw, MAX_RAW_INTEGER)
        if reason is None:
            try:
                record = validate_record(raw)
            except ValidationError as e:
                self.problems.extend(validation_problems(e, raw, self._source, number, where))
                return
            except (RecursionError, OverflowError, ValueError) as e:
                reason = f"cannot read the record ({type(e).__name__})"
            else:
                # Integers that arrived as large floats (1e20 for a count) are ints only now.
                reason = check_value(record.model_dump(exclude_defaults=True))
        if reason is not None:
            self.problems.append(Problem(self._source, f"{reason}; record skipped", line=number, field=where))
            return
        self.add_record(record, number)

    def add_record(self, record, number: int | None = None) -> None:
        self.records += 1
        if isinstance(record, Step):
            self._add_step_model(record)
        elif isinstance(record, Header):
            # A header that restates an earlier one of the same run and process (the Flax recorder
            # writes one when it opens and the complete one once the first step is traced) replaces it.
            # Only within one file: two shards with the same header are a conflict (shards.py).
            same = [i for i, h in enumerate(self.headers) if record.run_id and self._header_sources[i] == self._source
                    and h.run_id == record.run_id and h.process_index == record.process_index]
            if same:
                self.headers[same[-1]] = record
                self._width = None
            else:
                self.headers.append(record)
                self._header_sources.append(self._source)
            if self._width is None and record.layers:
                self._width = len(record.layers)
        elif isinstance(record, Eval):
            self.evals.append(record)
        elif isinstance(record, Data):
            self.data.append(record)
        elif isinstance(record, Check):
            self.checks.append(record)
        elif isinstance(record, _Event):
            self.events.append(record)

    # ------------------------------------------------------------------ fast path

    def _fast_step(self, raw: dict, may_hold_null: bool = True) -> bool:
        """Copy a plain step record into the columns; False (nothing written) when unsure."""
        step = raw.get("step")
        if type(step) is not int or step < 0 or step > MAX_INTEGER:
            return False
        # What each key is, decided once per distinct key order (a recorder writes one or two).
        keys = tuple(raw)
        plan = self._plans.get(keys)
        if plan is None:
            plan = self._plans[keys] = step_plan(keys)
        if plan is False:
            return False
        scalar_keys, batch_groups, has_metrics, layer_groups = plan
        scalars = []
        for key in scalar_keys:
            value = raw[key]
            if value is None:
                continue
            kind = type(value)
            if key == "epoch":
                if kind is not int or not 0 <= value <= MAX_INTEGER:
                    return False
            elif key == "skipped":
                if kind is not bool:
                    return False
                value = float(value)
            elif kind is not float and kind is not int:
                return False
            scalars.append((key, value))
        for group in batch_groups:
            part = raw[group]
            if part is None:
                continue
            if type(part) is not dict:
                return False
            for name, value in part.items():
                if value is None:
                    continue
                if name in BATCH_FLOAT_FIELDS:
                    if type(value) is not float and type(value) is not int:
                        return False
                elif name == "distinct_labels":
                    if type(value) is not int or not 0 <= value <= MAX_INTEGER:
                        return False
                else:
                    return False
                scalars.append((f"{group}.{name}", value))
        if has_metrics:
            metrics = raw["metrics"]
            if metrics is not None:
                if type(metrics) is not dict:
                    return False
                for name, value in metrics.items():
                    if value is None:
                        continue
                    if type(value) is not float and type(value) is not int:
                        return False
                    scalars.append((f"metrics.{name}", value))
        arrays = []
        for group in layer_groups:
            part = raw[group]
            if not part:
                if part is not None and type(part) is not dict:
                    return False
                continue
            if type(part) is not dict or not part.keys() <= GROUP_FIELDS[group]:
                return False
            for name, values in part.items():
                if values is None:
                    continue
                if type(values) is not list:
                    return False
                if self._width is None:
                    self._width = len(values)
                if len(values) != self._width:
                    return False
                arrays.append((f"{group}.{name}", values))
        row_index = self._new_row(step)
        written = []
        layer_columns = self._layer_columns
        try:
            # numpy converts each list straight into the column's row; a null or a non-numeric
            # entry raises, and the row is rolled back for the model path to decide.
            for name, values in arrays:
                column = layer_columns.get(name) or self._column(layer_columns, name, self._width)
                written.append(column)
                column.put_row(row_index, values, may_hold_null)
        except (TypeError, ValueError, OverflowError):
            for column in written:
                column.values[row_index] = np.nan
                column.present[row_index] = False
                if column.measured is not None:
                    column.measured[row_index] = True
            self._rows -= 1
            return False
        columns = self._columns
        for name, value in scalars:
            column = columns.get(name) or self._column(columns, name, None)
            column.values[row_index] = value
            column.present[row_index] = True
        return True

    # ------------------------------------------------------------------ many steps at once

    def feed_steps(self, raws: list) -> bool:
        """Copy a block of parsed step records (in file order) into the columns at once.

        The block path takes a block only when ``_fast_step`` would take every record of it, and
        writes what ``_fast_step`` would have written, record after record: the same rows, the
        same columns in the same order of creation. Each check runs over a whole column of the
        block (a set of types, a min and a max), not record by record. When any record is not
        plain (a null or missing value, a string, a width that differs, a builder subclass with
        its own ``_fast_step``), nothing is written and False says so: the caller feeds the
        records one by one, and each gets the record-by-record answer, problems included.

        Args:
          raws: dicts whose ``kind`` is ``"step"``.

        Returns:
          True when the whole block went in.
        """
        if type(self)._fast_step is not TraceBuilder._fast_step or not raws:
            return False
        writes = block_writes(raws, self._plans, self._width)
        return writes is not None and self._write_block(*writes)

    def _write_block(self, steps: list, planned: list, width: int | None) -> bool:
        start, count = self._rows, len(steps)
        while start + count > self._capacity:
            self._grow(self._capacity * 2)
        end = start + count
        struct.pack_into(f"{count}q", self._steps, start * 8, *steps)  # checked: ints in [0, 2**53]
        self._order_keys[start:end] = self._shard_rank
        self._rows = end
        old_width, self._width = self._width, width
        layer_columns, columns = self._layer_columns, self._columns
        created: list[tuple[dict, str]] = []
        touched: dict[str, tuple[ColumnBuffer, bool]] = {}  # name -> (column, had a measured mask)
        try:
            for positions, layer_writes, _ in planned:
                for name, lists in layer_writes:
                    column = layer_columns.get(name)
                    if column is None:
                        column = self._column(layer_columns, name, width)
                        created.append((layer_columns, name))
                    touched.setdefault(name, (column, column.measured is not None))
                    put_rows(column, start, positions, lists)
        except (TypeError, ValueError, OverflowError):
            # A value numpy refuses, or a row that is not a list of the width (NotPlain): undo the
            # block, the caller feeds it record by record.
            for column, had_measured in touched.values():
                column.values[start:end] = np.nan
                column.present[start:end] = False
                if not had_measured:
                    column.measured = None
                elif column.measured is not None:
                    column.measured[start:end] = True
            for store, name in created:
                del store[name]
            self._rows, self._width = start, old_width
            return False
        for positions, _, scalar_writes in planned:
            rows = slice(start, end) if positions is None else np.add(positions, start)
            for name, values in scalar_writes:
                column = columns.get(name) or self._column(columns, name, None)
                if positions is None:  # checked: floats and ints, as numpy converts them
                    struct.pack_into(f"{count}d", column.values, start * 8, *values)
                else:
                    column.values[rows] = values
                column.present[rows] = True
        self.records += count
        return True

    # ------------------------------------------------------------------ model path

    def _add_step_model(self, record: Step) -> None:
        row_index = self._new_row(record.step)

        def put(name: str, value) -> None:
            if value is None:
                return
            column = self._column(self._columns, name, None)
            column.values[row_index] = float(value)
            column.present[row_index] = True

        for name in ("epoch", "skipped", *FLOAT_FIELDS):
            put(name, getattr(record, name))
        for group in ("input", "labels"):
            part = getattr(record, group)
            if part is not None:
                for name in (*BATCH_FLOAT_FIELDS, "distinct_labels"):
                    put(f"{group}.{name}", getattr(part, name))
        for name, value in record.metrics.items():
            put(f"metrics.{name}", value)
        for i, value in enumerate(record.loss_per_replica or ()):
            put(f"loss_per_replica.{i}", value)
        for i, value in enumerate(record.lr_per_group or ()):
            put(f"lr_per_group.{i}", value)
        for group in GROUP_FIELDS:
            part = getattr(record, group)
            if part is None:
                continue
            for name in GROUP_FIELDS[group]:
                values = getattr(part, name)
                if values is None:
                    continue
                if self._width is None:
                    self._width = len(values)
                if len(values) != self._width:
                    self.problems.append(Problem(
                        self._source, f"{len(values)} values at step {record.step} but the header lists "
                        f"{self._width} layers; this statistic is ignored for this step", field=f"{group}.{name}"))
                    continue
                column = self._column(self._layer_columns, f"{group}.{name}", self._width)
                column.put_row(row_index, values)

    # ------------------------------------------------------------------ storage

    def _new_row(self, step: int) -> int:
        if self._rows == self._capacity:
            self._grow(self._capacity * 2)
        row = self._rows
        self._steps[row] = step
        self._order_keys[row] = self._shard_rank
        self._rows += 1
        return row

    def _grow(self, capacity: int) -> None:
        self._capacity = capacity
        for store in (self._columns, self._layer_columns):
            for column in store.values():
                column.grow(capacity)
        steps = np.zeros(capacity, dtype=np.int64)
        steps[: self._rows] = self._steps[: self._rows]
        self._steps = steps
        keys = np.zeros(capacity, dtype=np.int64)
        keys[: self._rows] = self._order_keys[: self._rows]
        self._order_keys = keys

    def _column(self, store: dict, name: str, width: int | None) -> ColumnBuffer:
        column = store.get(name)
        if column is None:
            column = store[name] = ColumnBuffer(self._capacity, width)
        return column

    # ------------------------------------------------------------------ result

    def build(self) -> Trace:
        """A ``Trace`` of everything fed so far (steps ascending, repeated steps resolved)."""
        n = self._rows
        steps = self._steps[:n]
        index = None
        if n > 1 and not bool(np.all(steps[1:] > steps[:-1])):
            # Repeated steps: across shards the lowest-ranked shard wins (process 0 records the
            # global statistics); within one shard the later record wins (a resumed run).
            rows = np.arange(n)
            order = np.lexsort((-rows, self._order_keys[:n], steps))
            sorted_steps = steps[order]
            first = np.ones(n, dtype=bool)
            first[1:] = sorted_steps[1:] != sorted_steps[:-1]
            index = order[first]
            steps = steps[index]

        def take(column: ColumnBuffer):
            values, present = column.values[:n], column.present[:n]
            if index is not None:
                values, present = values[index], present[index]
            return values, present

        columns, present, layer_columns, layer_present, layer_measured = {}, {}, {}, {}, {}
        for name, column in self._columns.items():
            columns[name], present[name] = take(column)
        for name, column in self._layer_columns.items():
            layer_columns[name], layer_present[name] = take(column)
            if column.measured is not None:
                measured = column.measured[:n]
                layer_measured[name] = measured if index is None else measured[index]
        headers = sorted(self.headers, key=lambda h: h.process_index)
        header = headers[0] if headers else None
        problems = list(self.problems)
        if header is None and self.records:
            problems.append(Problem(self.path, "no header record: layer names and run facts are unknown",
                                    severity="warning"))
        if header is not None and header.layers and self._width not in (None, len(header.layers)):
            problems.append(Problem(self.path, f"per-layer arrays have {self._width} values but the header "
                                    f"lists {len(header.layers)} layers", field="layers"))
        return Trace(
            path=self.path, header=header, steps=steps, columns=columns, present=present,
            layer_columns=layer_columns, layer_present=layer_present, layer_measured=layer_measured, evals=list(self.evals),
            data=list(self.data), checks=list(self.checks), events=list(self.events), headers=headers,
            problems=problems,
        )


__all__ = ["TraceBuilder", "short_repr"]
