"""The ``diag tui`` application: follow a run's trace, browse its diagnosis, dig into the evidence.

Two background workers keep the interface responsive: a follower thread reads new trace lines and
posts snapshots (``TraceUpdated``), and a diagnosis thread runs the rules on the latest snapshot
(``DiagnosisReady``), at most once per ``diagnose_interval`` seconds and never two at a time. The
UI thread only swaps in snapshots and redraws the visible tab.
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import Callable

from textual import events, work
from textual.app import App
from textual.binding import Binding
from textual.worker import get_current_worker

from diag.trace.columnar import Trace
from diag.trace.builder import TraceBuilder

from diag.tui.diagnosing import DiagnosisOutcome, diagnose_safely
from diag.tui.follower import TraceFollower
from diag.tui.idle_gc import IdleCollector
from diag.tui.messages import DiagnosisReady, TraceUpdated
from diag.tui.screens.help import HelpScreen
from diag.tui.screens.main import MainScreen


DIAGNOSIS_DUTY = 5.0  # diagnoses start at least this many times their duration apart
COLLECT_EVERY = 0.2  # seconds between chances for the garbage collector (see IdleCollector)


class DiagApp(App):
    """Terminal UI over one trace. Build it with ``make_app``."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "diag"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
    ]

    def __init__(self, trace_path: str | os.PathLike, *, follow: bool = False, poll_interval: float = 0.1,
                 diagnose_interval: float = 1.0,
                 diagnose: Callable[[Trace], DiagnosisOutcome] = diagnose_safely):
        super().__init__()
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            # The tab underline slides over ~0.3 s, a repaint each frame: about a third of the
            # interface's CPU while keys and records arrive (18 ms per tab switch, measured with
            # benchmarks/tui_latency.py's run). A person who sets the variable gets what they set.
            self.animation_level = "none"
        self.trace_path = Path(trace_path)
        self.follow = follow
        self.poll_interval = poll_interval
        self.diagnose_interval = diagnose_interval
        self._diagnose = diagnose
        self.trace: Trace = TraceBuilder(str(self.trace_path)).build()
        self.loaded = False
        self.fatal: str | None = None
        self.outcome: DiagnosisOutcome | None = None
        self.seen_causes: set[str] = set()
        self._diagnosing = False
        self._diagnosis_wanted = False
        self._last_diagnosis_start = float("-inf")
        self._last_diagnosis_seconds = 0.0
        self._diagnosis_timer = None
        self.last_written_at: float | None = None  # monotonic time of the newest snapshot shown
        self._heap_frozen = False
        self._collector = IdleCollector()

    # ------------------------------------------------------------------ lifecycle

    def on_mount(self) -> None:
        self._collector.start()
        self.set_interval(COLLECT_EVERY, self._collector.tick)
        self.push_screen(MainScreen())
        self._follow_trace()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.MouseDown)):
            self._collector.input_seen()
        await super().on_event(event)

    @property
    def main(self) -> MainScreen:
        return next(s for s in self.screen_stack if isinstance(s, MainScreen))

    @property
    def settled(self) -> bool:
        """True when the trace is loaded, the diagnosis of the latest snapshot is on screen and no plot
        is still being built (plots are built in a worker thread)."""
        return self.loaded and not self._diagnosing and not self._diagnosis_wanted and not self.main.busy

    # ------------------------------------------------------------------ following

    @work(thread=True, exclusive=True, group="follow", exit_on_error=False)
    def _follow_trace(self) -> None:
        worker = get_current_worker()
        follower = TraceFollower(self.trace_path)
        first = True
        while not worker.is_cancelled:
            new_steps = 0
            changed = False
            while True:
                result = follower.poll()
                new_steps += result.new_steps
                changed = changed or result.changed
                if follower.caught_up or follower.fatal or worker.is_cancelled:
                    break
            if changed or first or follower.fatal:
                fatal = _short_problem(follower.fatal) if follower.fatal else None
                self.post_message(TraceUpdated(follower.trace(), new_steps, time.monotonic(), fatal))
                first = False
            if not self.follow or follower.fatal:
                return
            time.sleep(self.poll_interval)

    def on_trace_updated(self, message: TraceUpdated) -> None:
        run_id = message.trace.header.run_id if message.trace.header else None
        if self.trace.header is not None and run_id != self.trace.header.run_id:
            self.seen_causes.clear()  # a new run wrote over the file: announce its causes afresh
        self.trace = message.trace
        self.fatal = message.fatal
        self.loaded = True
        self.last_written_at = message.written_at
        self.main.show_trace()
        if self.trace.num_steps or self.trace.events or self.trace.evals:
            self._request_diagnosis()

    # ------------------------------------------------------------------ diagnosis

    def _request_diagnosis(self) -> None:
        self._diagnosis_wanted = True
        if self._diagnosing or self._diagnosis_timer is not None:
            return
        # On a long trace a diagnosis takes a while and holds the GIL: keep it under about a fifth
        # of the time so the interface stays quick to answer keys.
        spacing = max(self.diagnose_interval, DIAGNOSIS_DUTY * self._last_diagnosis_seconds)
        wait = self._last_diagnosis_start + spacing - time.monotonic()
        if wait > 0:
            self._diagnosis_timer = self.set_timer(wait, self._start_diagnosis)
        else:
            self._start_diagnosis()

    def _start_diagnosis(self) -> None:
        self._diagnosis_timer = None
        if self._diagnosing or not self._diagnosis_wanted:
            return
        self._diagnosis_wanted = False
        self._diagnosing = True
        self._last_diagnosis_start = time.monotonic()
        self.main.show_diagnosing()
        self._diagnose_snapshot(self.trace)

    @work(thread=True, exclusive=True, group="diagnose", exit_on_error=False)
    def _diagnose_snapshot(self, trace: Trace) -> None:
        self.post_message(DiagnosisReady(self._diagnose(trace)))

    def on_diagnosis_ready(self, message: DiagnosisReady) -> None:
        self._diagnosing = False
        self._last_diagnosis_seconds = time.monotonic() - self._last_diagnosis_start
        outcome = message.outcome
        if self.follow and outcome.diagnosis is not None:
            for cause in outcome.causes:
                if cause.id not in self.seen_causes:
                    since = f" since step {cause.first_step}" if cause.first_step is not None else ""
                    self.notify(f"{cause.title} ({cause.id}){since}", title="new cause",
                                severity="warning", timeout=8)
        self.seen_causes.update(c.id for c in outcome.causes)
        self.outcome = outcome
        self.main.show_diagnosis()
        if not self._heap_frozen:
            self._freeze_heap()
        if self._diagnosis_wanted:
            self._request_diagnosis()

    # ------------------------------------------------------------------ memory

    def _freeze_heap(self) -> None:
        """Take what is alive once the first diagnosis is shown out of the garbage collector's sight.

        By then the process holds its long-lived objects (widgets, the knowledge base and compiled
        rules, imported modules: about 140,000). Each full collection walked all of them, 100-190
        ms of holding the GIL on this machine, several times a minute while a run streams in: the
        slowest key presses were those. Frozen objects are still freed by reference counting; the
        collector keeps finding cycles among the objects made later. ``on_unmount`` hands them back.
        """
        self._heap_frozen = True
        gc.collect()  # once, while the first diagnosis is drawn: leave no garbage among the frozen
        gc.freeze()

    def on_unmount(self) -> None:
        # The program that ran the app (a notebook, a test run) collects as before.
        self._collector.stop()
        if self._heap_frozen:
            gc.unfreeze()
            self._heap_frozen = False

    # ------------------------------------------------------------------ actions

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.pop_screen()
        else:
            self.push_screen(HelpScreen())

    def jump_to_metric(self, series: str, steps: tuple[int, int] | None = None) -> None:
        """Show the metrics tab on ``series``, zoomed around ``steps`` (from a cause's evidence)."""
        self._back_to_main()
        self.main.jump_to_metric(series, steps)

    def jump_to_layer(self, layer: str, step: int | None = None) -> None:
        """Show the layers tab at ``step`` with ``layer``'s row selected."""
        self._back_to_main()
        self.main.jump_to_layer(layer, step)

    def _back_to_main(self) -> None:
        while not isinstance(self.screen, MainScreen):
            self.pop_screen()


def _short_problem(error) -> str:
    """``line 1: schema: not a diag trace ...`` (the path is already in the title of the screen)."""
    problem = error.problem
    where = f"line {problem.line}: " if problem.line else ""
    field = f"{problem.field}: " if problem.field else ""
    hint = f" ({error.hint})" if error.hint else ""
    return f"{where}{field}{problem.message}{hint}"


def make_app(trace_path: str | os.PathLike, *, follow: bool = False, **options) -> DiagApp:
    """The TUI over ``trace_path``; the CLI and the tests both build it here.

    Args:
      trace_path: a ``.jsonl`` trace (followed line by line), a ``.json`` document or a shard folder.
      follow: keep reading as the run appends records (``diag tui --follow``).
      **options: ``poll_interval`` (seconds between reads when following), ``diagnose_interval``
        (least seconds between two diagnoses), ``diagnose`` (a function from Trace to
        ``DiagnosisOutcome``; the engine by default).

    Returns:
      A ``DiagApp``; ``app.run()`` shows it, ``app.run_test()`` drives it headlessly.

    Example:
      >>> app = make_app("run.jsonl", follow=True)   # doctest: +SKIP
      >>> app.run()                                   # doctest: +SKIP
    """
    return DiagApp(trace_path, follow=follow, **options)
