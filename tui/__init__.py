"""``diag tui``: the terminal UI (textual). Importing ``diag.tui`` pulls in textual; the core never does.

Example:
  >>> from diag.tui import make_app          # doctest: +SKIP
  >>> make_app("run.jsonl", follow=True).run()  # doctest: +SKIP
"""

from diag.tui.app import DiagApp, make_app

__all__ = ["DiagApp", "make_app"]
