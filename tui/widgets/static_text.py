"""Update a Static only when its content changes."""

from __future__ import annotations

from textual.widgets import Static


def set_text(widget: Static, content) -> None:
    """``widget.update(content)`` unless it already shows exactly that.

    An update re-lays out the screen; a live run redraws several times a second, mostly with
    the same text in most places.
    """
    if getattr(widget, "_diag_shown", None) == content:
        return
    widget._diag_shown = content
    widget.update(content)
