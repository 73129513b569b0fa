"""Behaviour of the terminal UI, driven headlessly with ``App.run_test()`` and Pilot.

Traces come from real (numpy) training runs: ``tests/tui_traces.py``. Assertions read the screen
as text, the way a user reads it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from diag.trace import TraceWriter
from diag.tui import make_app
from tests.tui_screen import screen_text, settle
from tests.tui_traces import train, write_run

SIZE = (80, 24)


def run(scenario):
    return asyncio.run(scenario())


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tui")
    return {
        "diverging": write_run(folder / "diverging.jsonl", lr=3.0, steps=120, run_id="diverging"),
        "healthy": write_run(folder / "healthy.jsonl", lr=0.1, steps=120, run_id="healthy"),
        "dead": write_run(folder / "dead.jsonl", lr=1.0, steps=120, run_id="dead"),
    }


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# --------------------------------------------------------------------------- overview


def test_overview_shows_the_run_its_progress_and_last_loss(traces):
    async def scenario():
        app = make_app(traces["healthy"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            text = screen_text(app)
            assert "MLP 8-32-32-32-4" in text
            assert "sgd lr=0.1" in text
            assert "step 119/120" in text
            assert "100.0 steps/s" in text  # recorded 10 ms apart
            assert "val loss" in text
            assert "run completed" in text

    run(scenario)


def test_diverged_run_shows_where_the_loss_went_non_finite(traces):
    async def scenario():
        app = make_app(traces["diverging"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            text = screen_text(app)
            assert "loss nan" in text
            assert "non-finite from step 8" in text

    run(scenario)


def test_engine_failure_is_reported_and_the_trace_still_shows(traces):
    def broken(trace):
        from diag.tui.diagnosing import diagnose_safely

        def explode(_):
            raise RuntimeError("rule gradient/spike.yaml failed")

        import diag.engine

        original = diag.engine.diagnose
        diag.engine.diagnose = explode
        try:
            return diagnose_safely(trace)
        finally:
            diag.engine.diagnose = original

    async def scenario():
        app = make_app(traces["healthy"], diagnose=broken)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            text = screen_text(app)
            assert "diagnosis unavailable: RuntimeError: rule gradient/spike.yaml failed" in text
            assert "step 119/120" in text

    run(scenario)


# --------------------------------------------------------------------------- navigation


def test_number_keys_and_help_navigate_between_screens(traces):
    async def scenario():
        app = make_app(traces["diverging"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("2")
            assert "Zoom in" in screen_text(app)
            await pilot.press("3")
            assert "layers out of range" in screen_text(app)
            await pilot.press("4")
            assert "Rules fired" in screen_text(app)
            assert "first non-finite loss" in screen_text(app)
            await pilot.press("question_mark")
            await pilot.pause()
            assert "diag tui keys" in screen_text(app)
            await pilot.press("escape")
            await pilot.pause()
            assert "diag tui keys" not in screen_text(app)
            await pilot.press("1")
            assert "MLP 8-32-32-32-4" in screen_text(app)
            await pilot.press("shift+tab", "right")  # focus the tab bar, arrow to the next tab
            await pilot.pause()
            assert app.main.query_one("#tabs").active == "metrics"
            await pilot.press("q")
        assert app.return_code == 0

    run(scenario)


def test_clicking_a_tab_with_the_mouse_switches_to_it(traces):
    async def scenario():
        app = make_app(traces["diverging"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.click("#--content-tab-layers")
            await pilot.pause()
            assert "layers out of range" in screen_text(app)

    run(scenario)


def test_metrics_zoom_narrows_the_step_range_and_zero_resets_it(traces):
    async def scenario():
        app = make_app(traces["healthy"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("2")
            assert "steps 0–119" in screen_text(app)
            await pilot.press("plus")
            text = screen_text(app)
            assert "(zoomed; 0: all steps)" in text and "steps 0–119" not in text
            await pilot.press("0")
            assert "steps 0–119" in screen_text(app)
            await pilot.press("z")
            await pilot.press(*"20-40", "enter")
            await pilot.pause()
            assert "steps 20–40 (zoomed" in screen_text(app)

    run(scenario)


def test_slash_filters_the_series_list_and_escape_clears_it(traces):
    async def scenario():
        app = make_app(traces["healthy"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("2", "slash", *"input")
            await pilot.pause()
            text = screen_text(app)
            assert "input.mean" in text and "grad_norm" not in text
            await pilot.press("escape")
            await pilot.pause()
            assert "grad_norm" in screen_text(app)

    run(scenario)


def test_layers_table_flags_out_of_range_layers_and_sorts(traces):
    async def scenario():
        app = make_app(traces["dead"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("3")
            text = screen_text(app)
            assert "layers out of range" in text
            assert "dense_0" in text and "dense_3" in text
            await pilot.press("s")  # by grad norm, largest first
            assert "sort (grad norm ↓)" in screen_text(app)
            await pilot.press("left_square_bracket")
            assert "step 118" in screen_text(app)

    run(scenario)


def test_heat_view_shows_every_layer_over_the_steps(traces):
    async def scenario():
        app = make_app(traces["diverging"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("3", "v")
            await pilot.pause()
            text = screen_text(app)
            assert "layers.grad_norm · log10" in text
            row = next(line for line in text.splitlines() if line.startswith(" dense_0"))
            assert "!" in row  # the NaN gradients after the blow-up
            await pilot.press("c")
            assert "layers.update_ratio · log10" in screen_text(app)

    run(scenario)


# --------------------------------------------------------------------------- follow mode


def test_follow_mode_picks_up_appended_records(tmp_path):
    path = tmp_path / "live.jsonl"
    write_run(path, lr=0.1, steps=30, eval_every=0)
    lines = _lines(path)
    head, rest = lines[:11], lines[11:-1]  # header + 10 steps now, the rest later
    path.write_bytes(b"".join(head))

    async def scenario():
        app = make_app(path, follow=True, poll_interval=0.02, diagnose_interval=0.05)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert "step 9/30" in screen_text(app)
            assert "● following" in screen_text(app)
            with open(path, "ab") as f:
                f.write(b"".join(rest))
            await settle(pilot, condition=lambda a: a.trace.num_steps == 30)
            assert "step 29/30" in screen_text(app)

    run(scenario)


def test_torn_last_line_is_held_back_until_it_is_complete(tmp_path):
    path = tmp_path / "torn.jsonl"
    write_run(path, lr=0.1, steps=12, eval_every=0)
    lines = _lines(path)
    step11 = lines[12]
    path.write_bytes(b"".join(lines[:12]) + step11[:40])  # step 11 half written

    async def scenario():
        app = make_app(path, follow=True, poll_interval=0.02, diagnose_interval=0.05)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert "step 10/12" in screen_text(app)
            assert not [p for p in app.trace.problems if p.severity == "error"]
            with open(path, "ab") as f:
                f.write(step11[40:])
            await settle(pilot, condition=lambda a: a.trace.num_steps == 12)
            assert "step 11/12" in screen_text(app)
            assert not app.trace.problems

    run(scenario)


def test_a_killed_run_torn_last_line_is_reported_as_a_warning(tmp_path):
    path = tmp_path / "killed.jsonl"
    write_run(path, lr=0.1, steps=12, eval_every=0)
    lines = _lines(path)
    path.write_bytes(b"".join(lines[:12]) + lines[12][:40])

    async def scenario():
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("4")
            text = screen_text(app)
            row = next(line for line in text.splitlines() if "last line is incomplete" in line)
            assert "line 13" in row and "warning" in row

    run(scenario)


def test_empty_trace_waits_for_records_then_shows_them(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")

    async def scenario():
        app = make_app(path, follow=True, poll_interval=0.02, diagnose_interval=0.05)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            text = screen_text(app)
            assert "no records yet" in text
            assert "no steps yet" in text
            with TraceWriter(path, flush_every=1) as writer:
                train(writer, lr=0.1, steps=5, eval_every=0)
            await settle(pilot, condition=lambda a: a.trace.num_steps == 5)
            assert "step 4/5" in screen_text(app)

    run(scenario)


def test_a_trace_that_is_not_a_diag_trace_is_named_on_screen(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"kind": "header", "schema": "other.trace/1", "run_id": "x", "framework": "jax"}) + "\n")

    async def scenario():
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            assert "not a diag trace" in screen_text(app)

    run(scenario)


# --------------------------------------------------------------------------- CLI


def test_cli_refuses_a_missing_trace_without_follow(tmp_path, capsys):
    from diag.cli import main

    assert main(["tui", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- causes (real engine)


def test_enter_on_a_cause_shows_its_evidence_why_chain_and_fix(traces):
    async def scenario():
        app = make_app(traces["diverging"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            top = app.outcome.diagnosis.top
            assert top is not None, "a run whose loss went to 1e200 and NaN must have a cause"
            assert top.id in screen_text(app)
            await pilot.press("enter")
            await pilot.pause()
            text = screen_text(app)
            assert f"#1 {top.title}"[:60] in text
            assert "Evidence" in text and top.evidence[0][:50] in text.replace("\n ", " ")
            assert "Why" in text and top.justification[0].rule_id in text
            await pilot.press("pagedown")  # below the why-chain: the fix
            await pilot.pause()
            text = screen_text(app).replace("\n ", " ")
            assert "Fix" in text and top.fix[0].action[:40] in text
            await pilot.press("end")  # the documentation, from the knowledge base (a worker loads it)
            await settle(pilot, condition=lambda a: "False positives" in screen_text(a))
            text = screen_text(app)
            assert "False positives" in text and "Defined in" in text
            await pilot.press("escape")
            await pilot.pause()
            assert "Evidence" not in screen_text(app)

    run(scenario)


def test_m_on_a_cause_plots_the_metric_its_evidence_came_from(traces):
    from diag.tui.screens.cause_detail import cause_series

    async def scenario():
        app = make_app(traces["diverging"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            top = app.outcome.diagnosis.top
            series = cause_series(top, app.outcome.diagnosis)[0]
            await pilot.press("enter", "m")
            await pilot.pause()
            assert app.main.query_one("#tabs").active == "metrics"
            assert series in screen_text(app)  # the plot's title
            assert app.main.query_one("#series").highlighted_option.id == series

    run(scenario)


def test_l_on_a_cause_shows_its_layer_at_the_step_it_began(traces):
    async def scenario():
        app = make_app(traces["diverging"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            cause = next((c for c in app.outcome.causes if c.layers), None)
            assert cause is not None, "the diverging run's causes point at layers"
            await pilot.press(*["down"] * (cause.rank - 1), "enter", "l")
            await pilot.pause()
            assert app.main.query_one("#tabs").active == "layers"
            assert f"step {cause.first_step} (" in screen_text(app)
            table = app.main.query_one("#layer-table")
            assert table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value == cause.layers[0]

    run(scenario)


def test_a_cause_appearing_during_a_live_run_is_announced(tmp_path, traces):
    path = tmp_path / "live.jsonl"
    path.write_bytes(b"")

    async def scenario():
        app = make_app(path, follow=True, poll_interval=0.02, diagnose_interval=0.05)
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await settle(pilot)
            path.write_bytes(traces["diverging"].read_bytes())
            await settle(pilot, condition=lambda a: a.outcome is not None and a.outcome.causes)
            await settle(pilot, condition=lambda a: "new cause" in screen_text(a))  # the toast is drawn
            text = screen_text(app)
            assert "new cause" in text
            assert app.outcome.causes[0].id in text

    run(scenario)


def test_rules_tab_lists_fired_and_skipped_rules(traces):
    async def scenario():
        app = make_app(traces["diverging"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            diagnosis = app.outcome.diagnosis
            await pilot.press("4")
            text = screen_text(app)
            assert f"Rules fired ({len(diagnosis.rules_fired)})" in text
            # A long rule id is cut to its column at 80x24: the table holds it whole, the screen its start.
            from textual.widgets import DataTable
            fired = app.screen.query_one("#fired", DataTable)
            assert str(fired.get_row_at(0)[0]) == diagnosis.rules_fired[0]
            assert diagnosis.rules_fired[0][:20] in text
            assert f"Rules skipped for missing inputs ({len(diagnosis.rules_skipped)})" in text

    run(scenario)


# --------------------------------------------------------------------------- mouse


def test_clicking_a_column_header_sorts_the_layers_table(traces):
    async def scenario():
        app = make_app(traces["dead"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("3")
            await pilot.click("#layer-table", offset=(26, 0))  # the "grad norm" header
            await pilot.pause()
            assert "sort (grad norm ↓)" in screen_text(app)
            await pilot.click("#layer-table", offset=(26, 0))
            await pilot.pause()
            assert "sort (grad norm ↑)" in screen_text(app)

    run(scenario)


def test_clicking_the_highlighted_cause_opens_its_detail(traces):
    async def scenario():
        app = make_app(traces["diverging"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.click("#causes", offset=(8, 1))  # first row, below the header: highlights it
            await pilot.pause()
            assert "Evidence" not in screen_text(app)
            await pilot.click("#causes", offset=(8, 1))  # a click on the highlighted row opens it
            await pilot.pause()
            assert "Evidence" in screen_text(app)

    run(scenario)


def test_slash_filters_the_causes_by_id_or_title(traces):
    async def scenario():
        app = make_app(traces["dead"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            ids = [c.id for c in app.outcome.causes]
            assert len(ids) >= 2, "the dead-ReLU run after a blow-up has several causes"
            await pilot.press("slash", *ids[1])
            await pilot.pause()
            table = app.main.query_one("#causes")
            assert table.row_count == 1
            assert f"filter '{ids[1]}': 1 of {len(ids)} causes shown" in screen_text(app)

    run(scenario)


def test_layers_tab_shows_the_latest_step_that_recorded_layer_statistics(tmp_path, traces):
    # Adapters record the costly per-layer statistics every Nth step only: keep them on every 5th.
    path = tmp_path / "sparse.jsonl"
    lines = []
    for line in traces["dead"].read_text().splitlines():
        record = json.loads(line)
        if record["kind"] == "step" and record["step"] % 5:
            record.pop("layers", None)
            record.pop("activations", None)
        lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")

    async def scenario():
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await pilot.press("3")
            assert "step 115 (latest 0–115)" in screen_text(app)
            await pilot.press("left_square_bracket")
            assert "step 110 (of 0–115)" in screen_text(app)

    run(scenario)


def test_clicking_a_key_in_the_footer_presses_it(traces):
    async def scenario():
        app = make_app(traces["healthy"])
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            footer = screen_text(app).splitlines()[-1]
            await pilot.click("KeyBar", offset=(footer.index("? Help") + 1, 0))
            await pilot.pause()
            assert "diag tui keys" in screen_text(app)

    run(scenario)
