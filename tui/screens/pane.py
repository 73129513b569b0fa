"""What every tab of the main screen has in common: redraw only when visible and out of date."""

from __future__ import annotations

from textual.containers import Vertical


class Pane(Vertical):
    """One tab's content. Subclasses implement ``redraw`` and say which focusable widget leads."""

    # Which kinds of news make this pane out of date ("trace", "diagnosis").
    DEPENDS_ON: frozenset[str] = frozenset({"trace", "diagnosis"})
    MAIN_WIDGET: str | None = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stale = True
        self.filter_text = ""

    def mark_stale(self, what: str) -> None:
        if what in self.DEPENDS_ON:
            self.stale = True

    def redraw_if_stale(self) -> None:
        if self.stale and self.is_mounted:
            self.stale = False
            self.redraw()

    def redraw(self) -> None:  # pragma: no cover - every pane overrides it
        raise NotImplementedError

    def apply_filter(self, text: str) -> None:
        """Show only the rows whose name contains ``text`` (case-insensitive)."""
        self.filter_text = text
        self.redraw()

    def focus_main(self) -> None:
        if self.MAIN_WIDGET:
            self.query_one(self.MAIN_WIDGET).focus()


def matches(text: str, *fields: str | None) -> bool:
    """Case-insensitive substring filter over several fields."""
    if not text:
        return True
    needle = text.lower()
    return any(field and needle in field.lower() for field in fields)
