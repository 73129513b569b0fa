"""A tab switch: its first frame shows all of it, and the tables the TUI keeps rendered between
switches look exactly as freshly rendered ones, focused or not."""

from __future__ import annotations

import asyncio

from textual.geometry import Region
from textual.widgets import DataTable

from diag.tui import make_app
from tests.tui_screen import key_bar_text, settle
from tests.tui_traces import write_run

SIZE = (80, 24)
PANE_TABLE = {"overview": "#causes", "layers": "#layer-table", "rules": "#fired"}


def table_lines(table: DataTable) -> list:
    return table.render_lines(Region(0, 0, table.size.width, table.size.height))


def fresh_table_lines(table: DataTable) -> list:
    """What the table draws with nothing remembered from earlier renders."""
    table._clear_caches()
    return table_lines(table)


def test_tables_shown_again_look_as_freshly_rendered_focused_or_not(tmp_path):
    path = write_run(tmp_path / "diverging.jsonl", lr=3.0, steps=120, run_id="diverging")
    looks = {}

    async def scenario():
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            for key, pane in (("3", "layers"), ("4", "rules"), ("1", "overview")):
                for _ in range(2):  # shown, left, shown again: the second time from what it kept
                    await pilot.press(key)
                    await pilot.pause()
                    table = app.screen.query_one(PANE_TABLE[pane], DataTable)
                    kept = table_lines(table)
                    looks[f"{pane} focused"] = (table.has_focus, kept == fresh_table_lines(table))
                    await pilot.press("2")
                    await pilot.pause()
                await pilot.press(key, "slash")  # the filter line takes the focus; the table stays in view
                await pilot.pause()
                table_lines(table)
                blurred = table_lines(table)
                looks[f"{pane} blurred"] = (table.has_focus, blurred == fresh_table_lines(table))
                await pilot.press("escape")
                await pilot.pause()
                looks[f"{pane} focused again"] = (table.has_focus, table_lines(table) == fresh_table_lines(table))
                looks[f"{pane} cursor shows the focus"] = blurred != table_lines(table)

    asyncio.run(scenario())
    for pane in PANE_TABLE:
        assert looks[f"{pane} focused"] == (True, True), pane
        assert looks[f"{pane} blurred"] == (False, True), pane
        assert looks[f"{pane} focused again"] == (True, True), pane
        assert looks[f"{pane} cursor shows the focus"], pane


def test_the_first_frame_after_a_number_key_shows_the_whole_tab_switch(tmp_path):
    path = write_run(tmp_path / "healthy.jsonl", lr=0.1, steps=120, run_id="healthy")
    first_frames = []

    async def scenario():
        app = make_app(path)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            main = app.main
            tabs = main.query_one("ContentTabs")
            underline = tabs.query_one("Underline")
            key_bar = main.query_one("KeyBar")
            for key, tab in (("2", "metrics"), ("3", "layers"), ("4", "rules"), ("1", "overview")):
                seen = []

                def frame(tab=tab, seen=seen):
                    if not seen and main.is_current and main._tabs.active == tab:
                        active = tabs.active_tab
                        span = active.virtual_region.shrink(active.styles.gutter).column_span
                        pane = main._panes[tab]
                        seen.append({
                            "underline under the tab": (underline.highlight_start, underline.highlight_end) == span,
                            "its main widget focused": main.focused is pane.query_one(pane.MAIN_WIDGET)
                            and main.focused.has_focus,
                            "key bar for that focus": key_bar._diag_shown.plain == key_bar_text(app, main),
                        })

                app.post_display_hook = frame
                await pilot.press(key)
                await pilot.pause()
                first_frames.append((tab, seen[0] if seen else None))
            app.post_display_hook = lambda: None

    asyncio.run(scenario())
    everything = {"underline under the tab": True, "its main widget focused": True, "key bar for that focus": True}
    assert first_frames == [(tab, everything) for tab in ("metrics", "layers", "rules", "overview")]


def test_a_table_given_the_same_rows_keeps_them_and_given_a_new_look_redraws():
    from rich.text import Text
    from textual.app import App

    from diag.tui.widgets.table import Table

    class OneTable(App):
        def compose(self):
            table = Table()
            table.add_column("value", key="value", width=8)
            yield table

    replaced = []

    async def scenario():
        app = OneTable()
        async with app.run_test(size=(20, 5)) as pilot:
            table = app.query_one(Table)
            replaced.append(table.show_rows([((Text("1.5"),), "a"), ((Text("2.0"),), "b")]))
            table.move_cursor(row=1)
            await pilot.pause()
            replaced.append(table.show_rows([((Text("1.5"),), "a"), ((Text("2.0"),), "b")]))
            replaced.append(table.cursor_row)
            replaced.append(table.show_rows([((Text("1.5"),), "a"), ((Text("2.0", style="bold red"),), "b")]))
            replaced.append(str(table.get_cell("b", "value").style))

    asyncio.run(scenario())
    assert replaced == [True, False, 1, True, "bold red"]
