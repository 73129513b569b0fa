"""The committed JSON Schema is the one the code generates, and it describes real records."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources

from diag.trace.schema import SCHEMA_FILE, trace_json_schema_text


def test_committed_schema_is_fresh():
    committed = resources.files("diag").joinpath(SCHEMA_FILE).read_text()
    assert committed == trace_json_schema_text(), (
        "diag/schemas/trace.schema.json is stale: run `diag schema -o diag/schemas/trace.schema.json`"
    )


def test_diag_schema_prints_the_committed_schema():
    out = subprocess.run([sys.executable, "-m", "diag", "schema"], capture_output=True, text=True, check=True)
    schema = json.loads(out.stdout)
    assert schema["discriminator"]["propertyName"] == "kind"
    assert set(schema["discriminator"]["mapping"]) == {"header", "step", "eval", "data", "check", "event"}


def _cli(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "diag", *args], capture_output=True, text=True, check=True).stdout


def test_committed_diagnosis_and_rule_schemas_are_fresh():
    for args, name in ((("rules", "schema", "--diagnosis"), "diagnosis.schema.json"),
                       (("rules", "schema"), "rules.schema.json")):
        committed = resources.files("diag").joinpath("schemas", name).read_text()
        assert committed == _cli(*args), f"diag/schemas/{name} is stale: regenerate it with `diag {' '.join(args)}`"
