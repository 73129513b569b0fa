"""The TUI's tables: a ``DataTable`` that keeps its rendered rows when only its focus changed, and
keeps its rows when they are replaced by the same ones."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.widgets import DataTable


class Table(DataTable):
    """``DataTable`` without the re-render of every cell on a tab switch.

    A tab switch moves the focus to the new tab's table, and ``DataTable`` answers any change of
    its styles by dropping every rendered cell, row and line; showing the tab again also sends a
    Resize, which ``DataTable`` answers the same way (a new cache generation) even when the size is
    what it was. Re-rendering every visible cell was 3-9 ms of a tab switch for the same text.
    Its rendered cells, rows and lines are keyed by the pseudo-class state (focus, hover) already,
    so after a change of focus alone the ones drawn in that state are still right. Anything else
    that can change how a cell looks (the app's CSS or theme, the table's classes, a new size)
    still clears them as ``DataTable`` does.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._styled_for: tuple | None = None
        self._resized_to: tuple | None = None
        self._rows_shown: tuple | None = None  # (column widths, rows) of the last show_rows

    def show_rows(self, rows: list[tuple[tuple, str | None]]) -> bool:
        """Show ``rows``, each ``(cells, key)``, in place of the table's rows; False if it already did.

        A new diagnosis (about once a second while a run streams in) mostly finds the same causes
        and rules: the same rows are kept as they are, rendered, with their cursor.
        """
        shown = (tuple(column.width for column in self.columns.values()),
                 tuple((tuple(_look(cell) for cell in cells), key) for cells, key in rows))
        if shown == self._rows_shown:
            return False
        self.clear()
        for cells, key in rows:
            self.add_row(*cells, key=key)
        self._rows_shown = shown
        return True

    def clear(self, columns: bool = False):
        self._rows_shown = None
        return super().clear(columns)

    def notify_style_update(self) -> None:
        styled_for = (self.app._css_update_count, self.app.theme, frozenset(self.classes))
        if styled_for != self._styled_for:
            self._styled_for = styled_for
            super().notify_style_update()
            return
        super(DataTable, self).notify_style_update()  # the widget's own style caches, not the cells
        self._get_styles_to_render_cell.cache_clear()  # not keyed by focus: the cursor's colours
        self._styles_cache.clear()
        self.refresh()

    def _on_resize(self, event: events.Resize) -> None:
        sizes = (event.size, event.virtual_size, event.container_size)
        if sizes == self._resized_to:
            event.prevent_default()  # DataTable's own handler starts a new cache generation
        self._resized_to = sizes


def _look(cell):
    """What decides how a cell looks (rich's Text equality ignores the text's own style)."""
    if isinstance(cell, Text):
        return (cell.plain, str(cell.style), tuple(cell.spans), cell.justify, cell.overflow)
    return cell
