"""A one-line footer of the active key bindings, drawn as text.

It shows what Textual's ``Footer`` shows (one key per action, in the same order; a click on a key
presses it) but redraws by updating one line of text. ``Footer`` rebuilds a widget per key on
every focus change, which was about half of the cost of answering a tab switch.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual import events
from textual.screen import Screen
from textual.widgets import Static

from diag.tui.widgets.static_text import set_text


class KeyBar(Static):
    """`` q Quit  ? Help  / Filter`` for whatever has focus; clickable."""

    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        background: $footer-background;
        color: $footer-description-foreground;
    }
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._keys: list[tuple[int, int, str]] = []  # (first cell, end cell, key)

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self.call_after_refresh(self._bindings_changed, self.screen)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen) -> None:
        if screen is not self.screen or not self.is_attached:
            return
        key_color = self.app.theme_variables.get("footer-key-foreground") or self.app.theme_variables.get("accent")
        key_style = Style(bold=True, color=key_color) if key_color else Style(bold=True)
        text = Text(no_wrap=True, overflow="crop")
        keys = []
        seen_actions = set()
        for active in screen.active_bindings.values():
            binding = active.binding
            if not binding.show or binding.action in seen_actions:
                continue
            seen_actions.add(binding.action)
            start = len(text)
            text.append(f" {self.app.get_key_display(binding)} ", style=key_style if active.enabled else "dim")
            text.append(f"{binding.description} ", style="" if active.enabled else "dim")
            keys.append((start, len(text), binding.key.split(",")[0]))
        self._keys = keys
        set_text(self, text)

    def on_click(self, event: events.Click) -> None:
        for start, end, key in self._keys:
            if start <= event.x < end:
                self.app.simulate_key(key)
                return
