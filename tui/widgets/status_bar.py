"""The one-line status at the top: run, progress, speed, last loss, live or finished."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from diag.trace.columnar import Trace

from diag.tui.run_facts import run_facts
from diag.tui.widgets.static_text import set_text


class StatusBar(Static):
    """`` diag  ● following  run-id · step 1234/2000 · 48.2 steps/s · loss 0.43``.

    The state comes first so that a long run id never pushes it off an 80-column screen.
    """

    def show(self, trace: Trace, fatal: str | None, follow: bool) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(" diag ", style="bold reverse")
        if fatal:
            text.append(" " + fatal.splitlines()[0], style="bold red")
            set_text(self, text)
            return
        facts = run_facts(trace)
        if follow and facts.status in ("running", "waiting for steps"):
            text.append(" ● following ", style="bold green")
        elif follow:
            text.append(f" ● {facts.status} ", style="bold yellow")
        else:
            text.append(f" ■ {facts.status} ", style="bold")
        text.append(f" {facts.run_id}", style="bold")
        text.append(f" · {facts.steps} · {facts.speed} · {facts.loss}")
        set_text(self, text)
