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


def key_bar_text(app, screen) -> str:
    """What the key bar should show for ``screen``'s focus as it is now: one key per action, in order."""
    text, seen_actions = [], set()
    for active in screen.active_bindings.values():
        binding = active.binding
        if binding.show and binding.action not in seen_actions:
            seen_actions.add(binding.action)
            text.append(f" {app.get_key_display(binding)} {binding.description} ")
    return "".join(text)
