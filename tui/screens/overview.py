"""Overview tab: the run at a glance and its ranked causes; Enter on a cause opens its detail."""

from __future__ import annotations

import time

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import DataTable, Sparkline, Static

from diag.tui import fmt
from diag.tui.run_facts import run_facts
from diag.tui.screens.pane import ALL, Pane, matches, set_text
from diag.tui.widgets.table import Table

SEVERITY_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}
SPARKLINE_INTERVAL = 0.5
TITLE_MIN = 12
BUCKET_STYLE = {"likely": "bold", "possible": "", "weak": "dim"}


class OverviewPane(Pane):
    """Run facts, the diagnosis status, the causes table and a loss sparkline."""

    MAIN_WIDGET = "#causes"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._sparkline_at = float("-inf")

    def compose(self) -> ComposeResult:
        yield Static(id="facts")
        yield Static("diagnosis: waiting for the trace", id="diag-line")
        table = Table(id="causes", cursor_type="row", zebra_stripes=True)
        table.add_column("#", key="rank", width=2)
        table.add_column("cause", key="id", width=16)
        table.add_column("certainty", key="certainty", width=13)
        table.add_column("severity", key="severity", width=8)
        table.add_column("since", key="since", width=5)
        table.add_column("title", key="title", width=TITLE_MIN)
        yield table
        yield Static(id="cause-summary")
        yield Static(id="spark-label")
        yield Sparkline([], id="loss-spark")

    def redraw(self, kinds: frozenset[str] = ALL) -> None:
        trace = self.app.trace
        if self.app.fatal:
            set_text(self.query_one("#facts", Static), 
                Text(f"cannot read {self.app.trace_path}:\n{self.app.fatal}", style="bold red"))
            set_text(self.query_one("#diag-line", Static), "")
            return
        facts = run_facts(trace)
        lines = Text()
        lines.append(facts.model, style="bold")
        lines.append(f"\n{facts.optimizer} · {facts.steps} · {facts.speed}")
        lines.append(f"\n{facts.loss}" + (f" · {facts.val}" if facts.val else "") + f" · run {facts.status}")
        set_text(self.query_one("#facts", Static), lines)
        now = time.monotonic()
        # The sparkline summarises the whole run (a pass over every step): twice a second is
        # plenty while steps stream in.
        if kinds != {"trace"} or not self.app.follow or now - self._sparkline_at >= SPARKLINE_INTERVAL:
            self._sparkline_at = now
            self._draw_sparkline(trace)
        # The causes table changes with a diagnosis, not with every step (until the first one).
        if "diagnosis" in kinds or self.app.outcome is None:
            self._draw_causes()

    def show_diagnosing(self) -> None:
        if self.app.outcome is None:
            set_text(self.query_one("#diag-line", Static), Text("diagnosis: running the rules…", style="italic"))

    def _draw_causes(self) -> None:
        app = self.app
        line = self.query_one("#diag-line", Static)
        table = self.query_one("#causes", Table)
        outcome = app.outcome
        previous = _row_key_at_cursor(table)
        self._fit_title_column(table)
        if not app.trace.num_steps and not app.trace.events:
            message = Text("no records yet: waiting for the run to write its trace" if app.follow
                           else "the trace holds no steps", style="italic")
        elif outcome is None:
            message = Text("diagnosis: running the rules…", style="italic")
        elif outcome.error:
            message = Text(f"diagnosis unavailable: {outcome.error}", style="bold red")
        else:
            message = None
        if message is not None:
            table.clear()
            set_text(self.query_one("#cause-summary", Static), "")
            set_text(line, message)
            return
        diagnosis = outcome.diagnosis
        causes = [c for c in diagnosis.causes if matches(self.filter_text, c.id, c.title)]
        # Cause ids are the contract users search for: never cut them; the title gives way.
        id_column = table.columns[next(k for k in table.columns if k.value == "id")]
        id_column.width = max([16] + [len(c.id) for c in diagnosis.causes])
        self._fit_title_column(table)
        summary = Text(no_wrap=True, overflow="ellipsis")
        if self.filter_text:
            summary.append(f"filter '{self.filter_text}': {len(causes)} of {len(diagnosis.causes)} causes shown",
                           style="bold yellow")
        elif diagnosis.causes:
            summary.append(f"{len(diagnosis.causes)} cause{'s' if len(diagnosis.causes) != 1 else ''}", style="bold")
        else:
            summary.append("no cause found", style="bold green")
        if not self.filter_text:
            summary.append(f" · {len(diagnosis.rules_fired)} rules fired · {len(diagnosis.rules_skipped)} skipped"
                           f" · as of step {outcome.last_step}")
        set_text(line, summary)
        rows = []
        for cause in causes:
            certainty = Text(f"{cause.certainty:.2f} {cause.bucket or ''}".rstrip(),
                             style=BUCKET_STYLE.get(cause.bucket or "", ""))
            rows.append(((
                str(cause.rank), Text(cause.id, style="bold"), certainty,
                Text(cause.severity, style=SEVERITY_STYLE.get(cause.severity, "")),
                "-" if cause.first_step is None else str(cause.first_step), cause.title), cause.id))
        if table.show_rows(rows) and previous is not None and previous in {c.id for c in causes}:
            table.move_cursor(row=table.get_row_index(previous), animate=False)
        self._draw_summary()

    def _draw_summary(self) -> None:
        """Title and first evidence sentence of the highlighted cause (the table is narrow at 80 columns)."""
        summary = self.query_one("#cause-summary", Static)
        outcome = self.app.outcome
        key = _row_key_at_cursor(self.query_one("#causes", DataTable))
        cause = outcome.cause(key) if outcome is not None and key else None
        if cause is None:
            set_text(summary, "")
            return
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(cause.title, style="bold")
        if cause.evidence:
            text.append("\n" + cause.evidence[0])
        text.append("\nEnter: evidence, why and fix", style="dim")
        set_text(summary, text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._draw_summary()

    def _fit_title_column(self, table: DataTable) -> None:
        """The title takes what the other columns leave (a fixed width: an automatic one is
        measured lazily, so the first frames would differ from the later ones)."""
        fixed = sum(c.get_render_width(table) for key, c in table.columns.items() if key.value != "title")
        width = max(TITLE_MIN, (table.size.width or 80) - fixed - 2 * table.cell_padding - 1)
        column = table.columns[next(k for k in table.columns if k.value == "title")]
        if column.width != width:
            column.width = width
            table.refresh()

    def on_resize(self) -> None:
        self._fit_title_column(self.query_one("#causes", DataTable))

    def _draw_sparkline(self, trace) -> None:
        label = self.query_one("#spark-label", Static)
        spark = self.query_one("#loss-spark", Sparkline)
        if not trace.has("loss"):
            set_text(label, Text("loss: not recorded yet", style="dim"))
            spark.data = []
            return
        series = trace.series("loss")
        values = series.values
        finite = values[np.isfinite(values)]
        width = max(10, self.size.width or 80)
        data = _bucket_means(values, width)
        log = len(finite) and finite.min() > 0 and finite.max() / finite.min() > 1e3
        spark.data = (np.log10(data) if log else data).tolist()
        text = Text("loss" + (" (log scale) " if log else " "), style="bold")
        if len(finite):
            text.append(f"{fmt.num(float(finite.min()))} … {fmt.num(float(finite.max()))}, steps "
                        f"{int(series.steps[0])}–{int(series.steps[-1])}")
        bad = len(values) - len(finite)
        if bad:
            first = int(series.steps[np.flatnonzero(~np.isfinite(values))[0]])
            text.append(f" · non-finite from step {first}", style="bold red")
        set_text(label, text)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        from diag.tui.screens.cause_detail import CauseDetailScreen

        if event.row_key.value:
            self.app.push_screen(CauseDetailScreen(event.row_key.value))


def _row_key_at_cursor(table: DataTable) -> str | None:
    if not table.row_count:
        return None
    try:
        return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
    except Exception:  # noqa: BLE001 - a cursor past the end after a clear
        return None


def _bucket_means(values: np.ndarray, width: int) -> np.ndarray:
    """Mean of the finite values in each of ``width`` buckets (non-finite ones show as gaps of 0)."""
    finite = np.where(np.isfinite(values), values, np.nan)
    if len(finite) <= width:
        out = finite
    else:
        edges = np.linspace(0, len(finite), width + 1).astype(np.int64)
        ok = np.isfinite(finite)
        sums = np.add.reduceat(np.where(ok, finite, 0.0), edges[:-1])
        counts = np.add.reduceat(ok.astype(np.int64), edges[:-1])
        out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    if not np.isfinite(out).any():
        return np.zeros(len(out))
    low = np.nanmin(out)
    return np.where(np.isfinite(out), out, low)
