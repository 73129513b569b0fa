"""The trace: typed records on disk (JSONL) and their columnar in-memory form.

The modules form a line, each importing only those before it (tests/test_import_graph.py):

* ``records`` (and ``schema``, its JSON Schema export): the pydantic models of every record kind;
* ``columnar``: ``Trace``, the in-memory arrays that signals and rules compute on;
* ``builder``: ``TraceBuilder``, records in, ``Trace`` out, without keeping the records;
* ``reader`` / ``writer``: files. ``reader`` feeds a builder from JSONL, a JSON document or a folder of
  shards (``load_trace``); ``writer`` appends records to JSONL.
"""

from diag.trace.columnar import LayerMatrix, Series, Trace
from diag.trace.reader import ReadResult, load_trace, read_records
from diag.trace.records import (
    SCHEMA_VERSION,
    ActivationStats,
    BatchStats,
    Check,
    Data,
    Eval,
    ExceptionEvent,
    FeatureScore,
    Header,
    LayerInfo,
    LayerStats,
    NonFiniteEvent,
    NoteEvent,
    OptimizerInfo,
    ParamInfo,
    Record,
    RunEndEvent,
    SignalEvent,
    Step,
)
from diag.trace.writer import TraceWriter, encode_record, write_trace

__all__ = [
    "SCHEMA_VERSION", "ActivationStats", "BatchStats", "Check", "Data", "Eval", "ExceptionEvent",
    "FeatureScore", "Header", "LayerInfo", "LayerMatrix", "LayerStats", "NonFiniteEvent", "NoteEvent",
    "OptimizerInfo", "ParamInfo", "ReadResult", "Record", "RunEndEvent", "Series", "SignalEvent", "Step",
    "Trace", "TraceWriter", "encode_record", "load_trace", "read_records", "write_trace",
]
