"""SVG snapshots of every TUI screen at 80x24 (pytest-textual-snapshot).

The traces in tests/tui_data/ are real runs (tests/tui_traces.py) and each comes with the engine's
diagnosis of it, frozen, so a change to a rule does not redraw these screens; a change of layout
does, visibly. After an intended change: ``pytest tests/test_tui_snapshots.py --snapshot-update``
(and ``python tests/tui_traces.py --snapshot-data`` when the diagnosis format changed). The cause
documentation the detail screen shows is frozen beside them the same way.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.text import Text

from diag.engine import Diagnosis
from diag.tui import make_app
from diag.tui.diagnosing import DiagnosisOutcome
from diag.tui.screens import cause_detail
from tests.tui_screen import settle

DATA = Path(__file__).with_name("tui_data")


@pytest.fixture(autouse=True)
def frozen_docs(monkeypatch):
    """Cause documentation as the knowledge base had it when the diagnoses were frozen."""
    docs = {}
    for path in DATA.glob("*.docs.json"):
        docs.update(json.loads(path.read_text()))
    monkeypatch.setattr(cause_detail, "cause_documentation", lambda cause_id: Text.from_markup(docs[cause_id]))


def frozen_app(name: str):
    diagnosis = Diagnosis.model_validate_json((DATA / f"{name}.diagnosis.json").read_text())

    def recorded(trace) -> DiagnosisOutcome:
        return DiagnosisOutcome(diagnosis=diagnosis, steps=trace.num_steps, last_step=trace.last_step)

    return make_app(DATA / f"{name}.jsonl", diagnose=recorded)


def docs_loaded(app) -> bool:
    return not any("loading the documentation" in str(w.content) for w in app.screen.query("#cause-docs"))


def keys(*pressed: str):
    async def run_before(pilot) -> None:
        await settle(pilot)
        # Let the diagnosis's table paint before a modal (help) freezes the screen behind it.
        await pilot.pause(0.2)
        for key in pressed:
            await pilot.press(key)
            await pilot.pause()
        await settle(pilot, condition=docs_loaded)

    return run_before


@pytest.mark.parametrize(
    ("trace", "pressed"),
    [
        pytest.param("diverging", (), id="overview"),
        pytest.param("diverging", ("enter",), id="cause-detail"),
        pytest.param("diverging", ("2",), id="metrics-loss"),
        pytest.param("dead", ("2", "down", "down", "down", "down", "down"), id="metrics-per-layer"),
        pytest.param("dead", ("3",) + ("left_curly_bracket",) * 9, id="layers-table"),
        pytest.param("dead", ("3", "v"), id="layers-heat"),
        pytest.param("diverging", ("4",), id="rules"),
        pytest.param("diverging", ("question_mark",), id="help"),
    ],
)
def test_screen_snapshot(snap_compare, trace, pressed):
    assert snap_compare(frozen_app(trace), terminal_size=(80, 24), run_before=keys(*pressed))
