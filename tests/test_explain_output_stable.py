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


def _typed(value):
    """A model's values with their exact types, nested models included (1 == 1.0, int != float)."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return (type(value).__name__, {k: _typed(v) for k, v in value.__dict__.items()}, value.model_fields_set)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, [_typed(v) for v in value])
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    return (type(value).__name__, repr(value))


@pytest.mark.parametrize("trace", TRACES)
def test_diagnosis_holds_what_validation_would_have_made_of_it(trace):
    from diag.api import diagnose_path
    from diag.engine.diagnosis import Diagnosis

    diagnosis = diagnose_path(trace)
    validated = Diagnosis.model_validate(diagnosis.model_dump(by_alias=True, exclude_unset=True))
    assert _typed(diagnosis) == _typed(validated)
    assert diagnosis.to_json() == validated.to_json()


def test_values_validation_would_change_are_validated():
    import numpy as np
    from pydantic import ValidationError

    from diag.engine.diagnosis import ClauseResult, Justification, TraceInfo, built

    base = dict(kind="signal", text="max(loss) > 3", result=True, cf=1.0, observed=2.5, threshold=3.0)
    changed = [
        dict(observed=np.float64(2.5)), dict(observed=np.float32(0.1)), dict(observed=np.int64(7)),
        dict(observed=np.bool_(True)), dict(threshold=(1, 2.0)), dict(threshold=[np.float64(1.0), None]),
        dict(result=np.bool_(False)), dict(cf=1), dict(cf=np.float64(0.5)), dict(steps=[np.int64(3), 4]),
        dict(steps=(3, 4)), dict(steps=[3.0, 4.0]), dict(missing=("loss",)),
    ]
    for change in changed:
        values = {**base, **change}
        made = built(ClauseResult, **values)
        assert _typed(made) == _typed(ClauseResult(**values)), change
        assert made.model_dump_json() == ClauseResult(**values).model_dump_json()
    clause = built(ClauseResult, **base)
    assert type(clause) is ClauseResult and _typed(clause) == _typed(ClauseResult(**base))
    made = built(Justification, rule_id="r", fact="f", rule_cf=1.0, premise_cf=np.float64(0.5), contribution=0.5,
                 group="g", evidence="e", labels={"layer": "fc1"}, first_step=np.int64(4), clauses=[clause])
    assert type(made.premise_cf) is float and type(made.first_step) is int and made.clauses[0] is clause
    assert type(built(TraceInfo, path="p", steps=np.int64(3)).steps) is int
    for bad in (dict(kind="nonsense"), dict(cf="x"), dict(surplus=1), dict(steps=[1.5])):
        with pytest.raises(ValidationError):
            built(ClauseResult, **{**base, **bad})
