"""The trace: typed records on disk (JSONL) and their columnar in-memory form."""

from diag.trace.columnar import LayerMatrix, Series, Trace, load_trace
from diag.trace.reader import ReadResult, read_records
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
