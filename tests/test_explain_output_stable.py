"""``diag explain`` prints the same text, JSON and why-tree for every example and shared trace as
the snapshots taken before the diagnosis stopped being validated on its way to text output.

The JSON outputs are kept as SHA-256 digests (they are about 0.7 MB together); the text and why
outputs in full. The knowledge base's folder, the one absolute path in the JSON, is written as
``<repo>``. Regenerate after a deliberate change of the rules or the renderers with
``DIAG_UPDATE_SNAPSHOTS=1 pytest tests/test_explain_output_stable.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from diag.cli import main

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT = REPO / "tests" / "snapshots" / "explain_outputs.json"
TRACES = sorted(str(p.relative_to(REPO)) for p in (REPO / "examples").glob("*.jsonl")) + sorted(
    str(p.relative_to(REPO)) for p in (REPO / "tests" / "traces").glob("*.jsonl"))


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch):
    monkeypatch.chdir(REPO)
    monkeypatch.delenv("DIAG_RULES_PATH", raising=False)


def _explain(capsys, *args) -> str:
    assert main(["explain", *args]) == 0, args
    return capsys.readouterr().out


def _outputs(capsys, trace: str) -> dict:
    text = _explain(capsys, trace)
    json_text = _explain(capsys, trace, "--format", "json").replace(str(REPO), "<repo>")
    data = json.loads(json_text)
    # The why-tree of the top cause (or, for a run with none, the closest miss of the first cause
    # checked) prints every clause's observed value and threshold: the values validation converted.
    cause = data["causes"][0]["id"] if data["causes"] else data["checks_run"][0]
    return {
        "text": text,
        "json_sha256": hashlib.sha256(json_text.encode()).hexdigest(),
        "why": _explain(capsys, trace, "--why", cause),
        "why_json_sha256": hashlib.sha256(_explain(capsys, trace, "--why", cause, "--format", "json").encode()).hexdigest(),
    }


def test_snapshot_covers_every_example_and_shared_trace():
    assert len(TRACES) >= 14
    if not os.environ.get("DIAG_UPDATE_SNAPSHOTS"):
        assert sorted(json.loads(SNAPSHOT.read_text())) == TRACES


@pytest.mark.parametrize("trace", TRACES)
def test_explain_outputs_match_the_snapshot(capsys, trace):
    got = _outputs(capsys, trace)
    if os.environ.get("DIAG_UPDATE_SNAPSHOTS"):
        saved = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}
        saved[trace] = got
        SNAPSHOT.write_text(json.dumps(dict(sorted(saved.items())), indent=1, ensure_ascii=False) + "\n")
    want = json.loads(SNAPSHOT.read_text())[trace]
    assert got["text"] == want["text"]
    assert got["why"] == want["why"]
    assert got["json_sha256"] == want["json_sha256"], "the JSON output changed"
    assert got["why_json_sha256"] == want["why_json_sha256"], "the --why JSON output changed"
