"""The TUI freezes its long-lived heap while it runs (full garbage collections walked it on key
presses) and gives it back to the collector when it exits, so a program that ran it collects as before.
While it runs, the collector runs between key presses, not inside them."""

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


def test_garbage_is_collected_between_key_presses_while_the_tui_runs(tmp_path):
    path = write_run(tmp_path / "healthy.jsonl", lr=0.1, steps=40, run_id="healthy")
    assert gc.isenabled()
    seen = {}

    async def scenario():
        app = make_app(path)
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            seen["automatic collection while running"] = gc.isenabled()
            for key in "2341" * 3:  # allocations, and a reason to wait with collecting
                await pilot.press(key)
            before = sum(generation["collections"] for generation in gc.get_stats())
            for _ in range(100):  # patience on a loaded machine, not a timing check
                await pilot.pause(0.1)
                if sum(generation["collections"] for generation in gc.get_stats()) > before:
                    break
            seen["collected once the keys paused"] = sum(g["collections"] for g in gc.get_stats()) > before
            await pilot.press("q")

    asyncio.run(scenario())
    assert seen == {"automatic collection while running": False, "collected once the keys paused": True}
    assert gc.isenabled()
