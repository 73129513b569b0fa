"""Helpers for driving the TUI headlessly: wait for it to settle, read the screen as text."""

from __future__ import annotations

import asyncio
import io

from rich.console import Console


def screen_text(app) -> str:
    """The current screen as plain text, exactly as the terminal would show it."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      color_system=None, legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


async def settle(pilot, timeout: float = 20.0, condition=None) -> None:
    """Wait until the trace is loaded and diagnosed (and ``condition(app)`` holds, if given)."""
    app = pilot.app
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if app.settled and (condition is None or condition(app)):
            await pilot.pause()
            return
        await pilot.pause(0.05)
    raise AssertionError(f"TUI did not settle in {timeout}s; screen:\n{screen_text(app)}")
