"""A block of parsed step records, checked column by column: what ``TraceBuilder.feed_steps`` writes.

Each check runs over a whole column of the block (a set of types, a min and a max), not record by
record, and a block is taken only when ``TraceBuilder._fast_step`` would take every record of it.
Rows are packed by struct: the same doubles numpy writes, about twice as fast; packing is also the
check that each per-layer entry is a list of the layer width (``put_rows``).
"""

from __future__ import annotations

import struct
from operator import itemgetter

from diag.trace.columnar import ColumnBuffer, row_struct
from diag.trace.limits import MAX_INTEGER
from diag.trace.step_plan import BATCH_FLOAT_FIELDS, GROUP_FIELDS, step_plan

_STEP = itemgetter("step")
_NUMBER_TYPES = ({float}, {int}, {float, int})


def block_writes(raws: list, plans: dict, width: int | None) -> tuple | None:
    """What ``TraceBuilder.feed_steps`` writes for a block of step records; None: not every one is plain.

    Args:
      raws: dicts whose ``kind`` is ``"step"``, in file order (at least one).
      plans: the builder's plans by key order (a new key order's plan is added).
      width: the builder's per-layer width (None before the first per-layer array).

    Returns:
      ``(steps, planned, width)``: the step numbers, per key order ``(rows or None, layer writes,
      scalar writes)`` (None: every row of the block), and the per-layer width after the block.
    """
    try:
        steps = list(map(_STEP, raws))
    except KeyError:
        return None
    if set(map(type, steps)) != {int} or min(steps) < 0 or max(steps) > MAX_INTEGER:
        return None
    orders = list(map(tuple, raws))
    groups: dict[tuple, list] = {orders[0]: raws} if orders.count(orders[0]) == len(orders) else {}
    if not groups:  # several key orders: each is read on its own, at its rows
        for position, keys in enumerate(orders):
            groups.setdefault(keys, []).append(position)
    planned = []  # per key order: (rows or None, layer writes, scalar writes)
    for keys, members in groups.items():
        plan = plans.get(keys)
        if plan is None:
            plan = plans[keys] = step_plan(keys)
        if plan is False:
            return None
        positions = None if members is raws else members
        records = raws if positions is None else [raws[i] for i in positions]
        taken = _block_columns(records, plan, width)
        if taken is None:
            return None
        width, layer_writes, scalar_writes = taken
        planned.append((positions, layer_writes, scalar_writes))
    return steps, planned, width


def _block_columns(records: list, plan: tuple, width: int | None):
    """What ``_fast_step`` would write for records of one key order, column by column, or None.

    Returns ``(width, layer writes, scalar writes)``: the per-layer width (set by the first array
    when the builder had none), ``[(column, per-record lists)]`` in the order ``_fast_step``
    creates the columns, and ``[(column, values)]`` likewise. None when any record would leave
    the fast path or skip a value (a null, a string, a bool where a number goes, an empty group),
    so that columns are created in the order record-by-record reading creates them. Per-layer
    entries are not looked at here: ``put_rows`` refuses one that is not a list of the width.
    """
    scalar_keys, batch_groups, has_metrics, layer_groups = plan
    scalars = []
    for key in scalar_keys:
        values = list(map(itemgetter(key), records))
        kinds = set(map(type, values))
        if key == "epoch":
            if kinds != {int} or min(values) < 0 or max(values) > MAX_INTEGER:
                return None
        elif key == "skipped":
            if kinds != {bool}:
                return None
            values = list(map(float, values))
        elif kinds not in _NUMBER_TYPES:
            return None
        scalars.append((key, values))
    for group in (*batch_groups, *(("metrics",) if has_metrics else ())):
        parts = _same_keys(records, group)
        if parts is None:
            return None
        for name in parts[0]:
            if group != "metrics" and name not in BATCH_FLOAT_FIELDS and name != "distinct_labels":
                return None
            values = list(map(itemgetter(name), parts))
            kinds = set(map(type, values))
            if name == "distinct_labels" and group != "metrics":
                if kinds != {int} or min(values) < 0 or max(values) > MAX_INTEGER:
                    return None
            elif kinds not in _NUMBER_TYPES:
                return None
            scalars.append((f"{group}.{name}", values))
    arrays = []
    for group in layer_groups:
        parts = _same_keys(records, group)
        if parts is None or not parts[0] or not parts[0].keys() <= GROUP_FIELDS[group]:
            return None
        for name in parts[0]:
            lists = list(map(itemgetter(name), parts))
            if width is None:
                if type(lists[0]) is not list:
                    return None
                width = len(lists[0])
            # Each entry being a list of ``width`` numbers is checked as it is packed (put_rows).
            arrays.append((f"{group}.{name}", lists))
    return width, arrays, scalars


def _same_keys(records: list, group: str) -> list | None:
    """The ``group`` objects of the records when all are dicts with the same keys in the same order."""
    parts = list(map(itemgetter(group), records))
    if set(map(type, parts)) != {dict}:
        return None
    first = tuple(parts[0])
    if len(parts) > 1 and set(map(tuple, parts)) != {first}:
        return None
    return parts


class NotPlain(ValueError):
    """A per-layer entry that is not a list of the column's width: the block is read record by record."""


def put_rows(column: ColumnBuffer, start: int, positions: list | None, lists: list) -> None:
    """Rows ``start + i`` (``i`` over ``positions``, or all of them) of ``column`` from ``lists``.

    Raises NotPlain (a ValueError) for an entry that is not a list of the column's width: packing
    refuses it (struct packs exactly ``width`` numbers), and only then is it looked at, so a block
    of plain rows pays no check of its own. A list of the right width that struct refuses (a null,
    a "NaN" string) goes to numpy, as record by record.
    """
    width = column.values.shape[1]
    pack = row_struct(width).pack_into
    values, stride = column.values, column.values.strides[0]
    if positions is None:
        offsets = range(start * stride, (start + len(lists)) * stride, stride)
        column.present[start:start + len(lists)] = True
    else:
        offsets = [(start + i) * stride for i in positions]
        column.present[[start + i for i in positions]] = True
    for offset, entries in zip(offsets, lists):
        try:
            pack(values, offset, *entries)
        except (struct.error, TypeError, ValueError, OverflowError):
            if type(entries) is not list or len(entries) != width:
                raise NotPlain(f"not a list of {width} values") from None
            column.put_row(offset // stride, entries)  # a null or a string: numpy, as record by record
