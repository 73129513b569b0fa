"""The TUI freezes its long-lived heap while it runs (full garbage collections walked it on key
presses) and gives it back to the collector when it exits, so a program that ran it collects as before."""

from __future__ import annotations

import asyncio
import gc

from diag.tui import make_app
from tests.tui_screen import settle
from tests.tui_traces import write_run


def test_heap_is_frozen_while_the_tui_runs_and_released_when_it_exits(tmp_path):
    path = write_run(tmp_path / "healthy.jsonl", lr=0.1, steps=40, run_id="healthy")
    assert gc.get_freeze_count() == 0
    frozen_while_running = []

    async def scenario():
        app = make_app(path)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            frozen_while_running.append(gc.get_freeze_count())
            await pilot.press("q")

    asyncio.run(scenario())
    assert frozen_while_running[0] > 10_000  # the widgets, the knowledge base, the modules
    assert gc.get_freeze_count() == 0
