"""Layers tab: per-layer statistics at a chosen step (sortable, out-of-range values in red), and a
layer-by-step heat view in which vanishing or exploding gradients show as a pattern."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import ContentSwitcher
from textual.widgets import DataTable, Static

from diag.tui import fmt
from diag.tui.health import verdict
from diag.tui.screens.pane import ALL, Pane, matches, set_text
from diag.tui.widgets.table import Table
from diag.tui.widgets.heatmap import HEAT_STATS, LayerHeatmap

NONFINITE_SERIES = ("layers.grad_nonfinite", "layers.param_nonfinite", "activations.nonfinite")


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    series: str | None
    width: int


COLUMNS = (
    Column("layer", "layer", None, 14),
    Column("act", "act", None, 5),
    Column("grad", "grad norm", "layers.grad_norm", 9),
    Column("ratio", "upd/w", "layers.update_ratio", 9),
    Column("zeros", "zeros", "activations.zero_fraction", 6),
    Column("std", "act std", "activations.std", 8),
    Column("nonfinite", "non-fin", None, 7),
)
SORT_CYCLE = ("layer", "grad", "ratio", "zeros", "nonfinite")


class LayersPane(Pane):
    """Table of one step's per-layer statistics, or the heat view over all steps (``v``)."""

    MAIN_WIDGET = "#layer-table"
    # The table at the latest step changes with every record: 10 redraws a second cost ~150 ms of
    # the interface's CPU per second on a 100,000-step run; two a second still read as live.
    LIVE_INTERVAL = 0.5
    BINDINGS = [
        Binding("left_square_bracket", "step(-1)", "Step", key_display="[ ]"),
        Binding("right_square_bracket", "step(1)", "Step", show=False),
        Binding("left_curly_bracket", "step(-0.1)", "Step -10%", show=False),
        Binding("right_curly_bracket", "step(0.1)", "Step +10%", show=False),
        Binding("end", "latest", "Latest", show=False),
        Binding("s", "sort", "Sort"),
        Binding("v", "toggle_view", "Heat"),
        Binding("c", "cycle_stat", "Statistic", show=False),
    ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step: int | None = None  # None follows the latest step
        self.sort_key = "layer"
        self.sort_reverse = False
        self.selected_layer: str | None = None
        self.heat_stat = HEAT_STATS[0]

    def compose(self) -> ComposeResult:
        yield Static(id="layers-caption")
        with ContentSwitcher(initial="layer-table", id="layers-switcher"):
            table = Table(id="layer-table", cursor_type="row", zebra_stripes=True)
            for column in COLUMNS:
                table.add_column(column.label, key=column.key, width=column.width)
            yield table
            yield LayerHeatmap(id="heat")

    # ------------------------------------------------------------------ drawing

    def redraw(self, kinds: frozenset[str] = ALL) -> None:
        trace = self.app.trace
        if self.query_one(ContentSwitcher).current == "heat":
            self.query_one(LayerHeatmap).show(trace, self.heat_stat, self.filter_text)
        self._draw_table(trace)

    def _layer_rows(self, trace) -> np.ndarray:
        """Rows of the trace that recorded per-layer statistics (adapters may record every Nth step)."""
        key = (id(trace), trace.num_steps)
        if getattr(self, "_rows_key", None) != key:
            recorded = np.zeros(trace.num_steps, dtype=bool)
            for present in trace.layer_present.values():
                recorded |= present
            self._rows_key, self._rows = key, np.flatnonzero(recorded)
        return self._rows

    def _position(self, trace) -> int | None:
        """Index into ``_layer_rows`` of the step shown (the latest recorded one by default)."""
        rows = self._layer_rows(trace)
        if not len(rows):
            return None
        if self.step is None:
            return len(rows) - 1
        index = int(np.searchsorted(trace.steps[rows], self.step))
        return min(index, len(rows) - 1)

    def _row_index(self, trace) -> int | None:
        position = self._position(trace)
        return None if position is None else int(self._layer_rows(trace)[position])

    def _draw_table(self, trace) -> None:
        caption = self.query_one("#layers-caption", Static)
        table = self.query_one("#layer-table", Table)
        row = self._row_index(trace)
        names = list(trace.layer_names)
        if row is None or not names:
            table.clear()
            set_text(caption, Text("no per-layer statistics recorded yet", style="dim"))
            return
        step = int(trace.steps[row])
        rows = []
        header = trace.header
        for j, name in enumerate(names):
            if not matches(self.filter_text, name):
                continue
            act = header.layers[j].activation if header is not None and j < len(header.layers) else None
            values = {c.key: _value(trace, c.series, row, j) for c in COLUMNS if c.series}
            counts = [_value(trace, s, row, j) for s in NONFINITE_SERIES]
            counts = [c for c in counts if c is not None]
            values["nonfinite"] = sum(counts) if counts else None
            rows.append((j, name, act or "", values))
        rows = self._sorted(rows)
        key_at_cursor = self.selected_layer
        flagged = 0
        table_rows = []
        for j, name, act, values in rows:
            cells = [Text(name, style="bold"), Text(act, style="dim")]
            bad_row = False
            for column in COLUMNS[2:]:
                value = values.get(column.key)
                reason = verdict(column.series or "layers.grad_nonfinite", value)
                bad_row = bad_row or reason is not None
                cells.append(Text(fmt.num(value), style="bold red" if reason else ""))
            flagged += bad_row
            table_rows.append((tuple(cells), name))
        table.show_rows(table_rows)
        if key_at_cursor and key_at_cursor in {r[1] for r in rows}:
            table.move_cursor(row=table.get_row_index(key_at_cursor), animate=False)
        text = Text()
        text.append(f"step {step}", style="bold")
        recorded = self._layer_rows(trace)
        where = "latest" if row == recorded[-1] else "of"
        text.append(f" ({where} {int(trace.steps[recorded[0]])}–{int(trace.steps[recorded[-1]])}) · ")
        text.append(f"{flagged} of {len(rows)} layers out of range" if flagged else "all layers in range",
                    style="bold red" if flagged else "green")
        arrow = "↓" if self.sort_reverse else "↑"
        text.append(f"\n[ ] step · {{ }} ±10% · End latest · s sort ({self._sort_label()} {arrow}) · v heat view")
        set_text(caption, text)

    def _sorted(self, rows: list) -> list:
        if self.sort_key == "layer":
            return sorted(rows, key=lambda r: r[0], reverse=self.sort_reverse)
        if self.sort_key == "act":
            return sorted(rows, key=lambda r: r[2], reverse=self.sort_reverse)

        def key(r):
            value = r[3].get(self.sort_key)
            if value is None:
                return (1, 0.0)  # unknown values last, whatever the direction
            number = math.inf if math.isnan(value) else value  # a NaN is the worst value: first
            return (0, -number if self.sort_reverse else number)

        return sorted(rows, key=key)

    def _sort_label(self) -> str:
        return next(c.label for c in COLUMNS if c.key == self.sort_key)

    # ------------------------------------------------------------------ actions

    def action_step(self, amount: float) -> None:
        trace = self.app.trace
        position = self._position(trace)
        if position is None:
            return
        rows = self._layer_rows(trace)
        delta = int(amount) if abs(amount) >= 1 else int(round(amount * len(rows))) or (1 if amount > 0 else -1)
        position = max(0, min(len(rows) - 1, position + delta))
        # At the newest recorded step of a live run, keep following the newest one.
        self.step = None if position == len(rows) - 1 and self.app.follow else int(trace.steps[rows[position]])
        self.redraw()

    def action_latest(self) -> None:
        self.step = None
        self.redraw()

    def action_sort(self) -> None:
        index = SORT_CYCLE.index(self.sort_key) if self.sort_key in SORT_CYCLE else -1
        self.sort_key = SORT_CYCLE[(index + 1) % len(SORT_CYCLE)]
        # Statistics sort worst (largest) first; the layer order reads top to bottom.
        self.sort_reverse = self.sort_key != "layer"
        self.redraw()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = event.column_key.value
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, key not in ("layer", "act")
        self.redraw()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value:
            self.selected_layer = event.row_key.value

    def action_toggle_view(self) -> None:
        switcher = self.query_one(ContentSwitcher)
        switcher.current = "heat" if switcher.current == "layer-table" else "layer-table"
        self.redraw()
        (self.query_one(LayerHeatmap) if switcher.current == "heat" else self.query_one("#layer-table")).focus()

    def action_cycle_stat(self) -> None:
        self.heat_stat = HEAT_STATS[(HEAT_STATS.index(self.heat_stat) + 1) % len(HEAT_STATS)]
        self.redraw()

    def show_layer(self, layer: str, step: int | None) -> None:
        """Show the table at ``step`` (a cause's first step) with ``layer`` selected."""
        self.filter_text = ""
        self.step = step
        self.selected_layer = layer
        self.query_one(ContentSwitcher).current = "layer-table"
        self.redraw()
        self.focus_main()


def _value(trace, series: str | None, row: int, layer: int) -> float | None:
    if series is None or series not in trace.layer_columns or not trace.layer_present[series][row]:
        return None
    measured = trace.layer_measured.get(series)
    if measured is not None and not measured[row, layer]:
        return None
    return float(trace.layer_columns[series][row, layer])
