"""The metrics tab's list of series: an ``OptionList`` that keeps its rendered options when its tab
is shown again."""

from __future__ import annotations

from textual import events
from textual.widgets import OptionList


class SeriesList(OptionList):
    """``OptionList`` without the re-render of every option when nothing changed size.

    A tab switch shows the metrics tab's widgets anew, and Textual sends each of them a Resize even
    when its size is what it was. ``OptionList`` answers any Resize by dropping every rendered
    option (and repainting): about 5 ms of a tab switch, for the same text at the same width.
    A real change of size (the terminal's, a scroll bar appearing) still clears them.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rendered_for: tuple | None = None

    def _on_resize(self, event: events.Resize) -> None:
        sizes = (event.size, event.virtual_size, event.container_size)
        if sizes == self._rendered_for:
            event.prevent_default()  # OptionList's own handler would clear its caches
        self._rendered_for = sizes
