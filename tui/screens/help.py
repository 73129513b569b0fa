"""``?``: the keys of every screen on one page."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = (
    ("Everywhere", (("1 2 3 4", "overview, metrics, layers, rules"), ("tab / shift+tab", "next / previous widget"),
                    ("↑ ↓ ← →", "move in tables, lists and tabs"), ("/", "filter the rows of this tab"),
                    ("esc", "close the filter, go back"), ("?", "this help"), ("q", "quit"))),
    ("Overview", (("enter / click", "open the cause under the cursor"),)),
    ("Cause detail", (("m", "plot the metric the evidence points at"), ("l", "show the layer it points at"),
                      ("esc", "back"))),
    ("Metrics", (("↑ ↓", "choose a series"), ("+ -", "zoom in / out"), ("[ ]", "pan"), ("0", "all steps"),
                 ("z", "type a step range (100-500)"))),
    ("Layers", (("[ ]  { }", "previous / next step, ±10%"), ("end", "latest step"),
                ("s / click a header", "sort"), ("v", "heat view (layer by step)"), ("c", "heat statistic"))),
)


class HelpScreen(ModalScreen):
    """A modal list of keys; any of esc, ? or q closes it."""

    BINDINGS = [Binding("escape,question_mark,q", "close", "Close")]

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("diag tui keys\n", style="bold")
        for section, keys in KEYS:
            text.append(f"\n{section}\n", style="bold underline")
            for key, what in keys:
                text.append(f"  {key:<20}", style="bold cyan")
                text.append(f"{what}\n")
        text.append("\nThe mouse works too: click tabs, rows, headers and footer keys.", style="dim")
        with VerticalScroll(id="help-box"):
            yield Static(text)

    def action_close(self) -> None:
        self.app.pop_screen()
