"""Update a Static only when its content changes, without a re-layout when its size is fixed."""

from __future__ import annotations

from textual.css.scalar import Unit
from textual.widgets import Static


def set_text(widget: Static, content) -> None:
    """``widget.update(content)`` unless it already shows exactly that.

    A live run redraws several times a second, mostly with the same text in most places, and an
    update normally re-lays out the whole screen (about half the cost of a frame). Widgets whose
    height the stylesheet fixes in cells cannot change size, so they skip the layout pass.
    """
    if getattr(widget, "_diag_shown", None) == content:
        return
    widget._diag_shown = content
    height = widget.styles.height
    fixed = height is not None and height.unit == Unit.CELLS
    widget.update(content, layout=not fixed)
