"""The trace: typed records on disk (JSONL) and their columnar in-memory form.

The modules form a line of layers, each importing only layers before it (tests/test_import_graph.py):

1. ``records``: the pydantic models of every record kind; ``limits`` and ``measured``: bounds and
   the derived step fields, depending on nothing;
2. ``columnar``: ``Trace``, the in-memory arrays that signals and rules compute on; beside it
   ``schema`` (the records' JSON Schema export), ``step_plan`` (which fields a plain step record
   holds), ``record_errors`` (a bad record's problem text) and ``parse`` (JSON text to Python values);
3. ``step_block``: a block of plain step records checked and packed into column rows;
4. ``builder``: ``TraceBuilder``, records in, ``Trace`` out, without keeping the records;
5. what files hold beyond records: ``versions`` (the schema version of a header), ``runs`` (where
   each run of a file starts), ``line_count`` (sizing the builder), ``shards`` (one file a process);
6. ``jsonl``: lines of a JSONL file fed to a builder, a block at a time;
7. ``reader`` / ``writer``: files. ``reader`` feeds a builder from JSONL, a JSON document or a folder of
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
