"""The screens and tabs of the TUI."""
