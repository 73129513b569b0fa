"""The JSON Schema of the trace format, generated from the pydantic records."""

from __future__ import annotations

import json

from pydantic import TypeAdapter

from diag.trace.records import SCHEMA_VERSION, Record

SCHEMA_FILE = "schemas/trace.schema.json"  # committed copy, relative to the diag package


def trace_json_schema() -> dict:
    schema = TypeAdapter(Record).json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://diag.dev/schemas/{SCHEMA_VERSION.replace('/', '-')}.json"
    schema["title"] = f"{SCHEMA_VERSION} record"
    schema["description"] = (
        "One line of a diag trace (JSONL). Non-finite floats are the strings 'NaN', 'Infinity', '-Infinity'."
    )
    return schema


def trace_json_schema_text() -> str:
    return json.dumps(trace_json_schema(), indent=2, sort_keys=True) + "\n"
