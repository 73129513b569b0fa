"""Widgets of the TUI: status line, plot, heat view."""
