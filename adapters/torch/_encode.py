"""Step records as JSON lines without building pydantic models in the training loop.

A step record is assembled as a plain dict in the field names of :class:`diag.trace.records.Step`
and encoded with orjson: validating a model per step costs more than the statistics themselves on a
small network. Non-finite floats become the schema's strings ("NaN", "Infinity", "-Infinity");
orjson would otherwise write them as null, which means "not measured".
The tests read every trace back through the validating reader, so the two cannot drift apart.
"""

from __future__ import annotations

import math

import orjson


def jfloat(value: float | None):
    """A float as the trace writes it: finite as is, non-finite as the schema's string."""
    if value is None or math.isfinite(value):
        return value
    if value != value:
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def jfloats(values, mask=None) -> list:
    """A per-layer array; entries where ``mask`` is False become null (not measured)."""
    if mask is None:
        return [jfloat(v) for v in values]
    return [jfloat(v) if keep else None for v, keep in zip(values, mask)]


def encode_line(record: dict) -> bytes:
    """One record dict as a JSON line (None values are dropped, as the pydantic writer does)."""
    return orjson.dumps({k: v for k, v in record.items() if v is not None}) + b"\n"
