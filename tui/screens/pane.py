"""What every tab of the main screen has in common: redraw only when visible and out of date."""

from __future__ import annotations

import time

from textual.containers import Vertical
from diag.tui.widgets.static_text import set_text  # noqa: F401 - re-exported for the panes

ALL = frozenset({"trace", "diagnosis"})


class Pane(Vertical):
    """One tab's content. Subclasses implement ``redraw`` and say which focusable widget leads.

    News arrives as "trace" (new records) or "diagnosis" (a new diagnosis). A hidden pane only
    remembers which kinds it missed and draws them when it is shown, so a live run costs the
    drawing of one tab, and only of the parts the news touches.
    """

    DEPENDS_ON: frozenset[str] = ALL
    MAIN_WIDGET: str | None = None
    LIVE_INTERVAL = 0.0  # least seconds between two redraws for new records alone while following

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pending: set[str] = set(ALL)
        self.drawn_at = float("-inf")  # monotonic time of the last redraw_if_stale
        self.filter_text = ""

    def mark_stale(self, what: str) -> None:
        if what in self.DEPENDS_ON:
            self.pending.add(what)

    def redraw_if_stale(self) -> None:
        if self.pending and self.is_mounted:
            kinds, self.pending = frozenset(self.pending), set()
            self.drawn_at = time.monotonic()
            self.redraw(kinds)

    def live_wait(self) -> float:
        """Seconds until new records alone may redraw this pane again (0: now)."""
        return max(0.0, self.drawn_at + self.LIVE_INTERVAL - time.monotonic())

    def redraw(self, kinds: frozenset[str] = ALL) -> None:  # pragma: no cover - every pane overrides it
        raise NotImplementedError

    def apply_filter(self, text: str) -> None:
        """Show only the rows whose name contains ``text`` (case-insensitive)."""
        self.filter_text = text
        self.redraw(ALL)

    def focus_main(self) -> None:
        if self.MAIN_WIDGET:
            self.query_one(self.MAIN_WIDGET).focus()


def matches(text: str, *fields: str | None) -> bool:
    """Case-insensitive substring filter over several fields."""
    if not text:
        return True
    needle = text.lower()
    return any(field and needle in field.lower() for field in fields)
