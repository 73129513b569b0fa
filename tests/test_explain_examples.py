"""``diag explain`` works on every trace a user is pointed at: examples/ and the shared test traces,
in all three formats."""

from __future__ import annotations

import json
from pathlib import Path

from diag.cli import main

REPO = Path(__file__).resolve().parent.parent


def _traces() -> list[Path]:
    found = sorted((REPO / "examples").glob("**/*.jsonl")) + sorted((REPO / "examples").glob("**/*.json"))
    return found + sorted((REPO / "tests" / "traces").glob("*.jsonl"))


def test_explain_reads_every_example_and_shared_trace_in_every_format(capsys, monkeypatch):
    monkeypatch.delenv("DIAG_RULES_PATH", raising=False)
    traces = _traces()
    assert len(traces) >= 7
    for path in traces:
        assert main(["explain", str(path), "--format", "json"]) == 0, path
        data = json.loads(capsys.readouterr().out)
        assert data["schema"] == "diag.diagnosis/1" and data["trace"]["steps"] > 0
        assert main(["explain", str(path), "--format", "markdown"]) == 0, path
        assert capsys.readouterr().out.startswith("# ")
        assert main(["explain", str(path)]) == 0, path
        assert capsys.readouterr().out.startswith("diag: ")
