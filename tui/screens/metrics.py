"""Metrics tab: any recorded series over steps, with cause onsets marked; zoom and pan by steps."""

from __future__ import annotations

import re

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from diag.tui.run_facts import first_nonfinite_step
from diag.tui.screens.pane import ALL, Pane, matches, set_text
from diag.tui.widgets.series_list import SeriesList
from diag.tui.widgets.series_plot import SeriesPlot

# Most useful first; anything else recorded follows in the trace's order.
PREFERRED = ("loss", "lr", "grad_norm", "loss_scale", "update_norm", "param_norm", "layers.grad_norm",
             "layers.update_ratio", "activations.zero_fraction")
HIDDEN = {"time", "epoch"}
PLOT_INTERVAL = 0.3


class MetricsPane(Pane):
    """A series list on the left, the plot of the highlighted series on the right."""

    MAIN_WIDGET = "#series"
    BINDINGS = [
        Binding("plus,equals_sign", "zoom(0.5)", "Zoom in", key_display="+"),
        Binding("minus", "zoom(2.0)", "Zoom out", key_display="-"),
        Binding("left_square_bracket", "pan(-0.5)", "Pan", key_display="[ ]"),
        Binding("right_square_bracket", "pan(0.5)", "Pan", show=False),
        Binding("0", "reset_zoom", "All steps", show=False),
        Binding("z", "range", "Range"),
    ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.selected = "loss"
        self.window: tuple[int, int] | None = None  # zoomed step range, None for all steps
        self.highlight_layer: str | None = None
        self._names: list[str] = []
        self._plot_timer = None

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield SeriesList(id="series")
            with Vertical(id="plot-column"):
                yield SeriesPlot(id="plot")
                yield Static(id="plot-caption")

    # ------------------------------------------------------------------ drawing

    def redraw(self, kinds: frozenset[str] = ALL) -> None:
        self._fill_series_list()
        if kinds == {"trace"} and self.app.follow:
            self._draw_plot_soon()
        else:
            # After the next paint: a tab switch shows at once (with the last plot), the new plot
            # follows when its worker has built it instead of holding up the key press.
            self.call_after_refresh(self._draw_plot)

    @property
    def busy(self) -> bool:
        """True while a plot is being built for data already given to it."""
        return self.query_one("#plot", SeriesPlot).busy

    def _draw_plot_soon(self) -> None:
        """Replot at most a few times a second while steps stream in (a plot costs a full build)."""
        if self._plot_timer is None:
            self._plot_timer = self.set_timer(PLOT_INTERVAL, self._draw_plot_now)

    def _draw_plot_now(self) -> None:
        self._plot_timer = None
        if self.screen.active_pane() is self:
            self._draw_plot()
        else:
            self.pending.add("trace")  # switched away meanwhile: draw when shown again

    def _fill_series_list(self) -> None:
        trace = self.app.trace
        names = [n for n in trace.series_names() if n not in HIDDEN and not n.startswith("eval.")]
        evals = [n for n in trace.series_names() if n.startswith("eval.") and not n.endswith(".loss")]
        ordered = [n for n in PREFERRED if n in names] + [n for n in names if n not in PREFERRED] + evals
        ordered = [n for n in ordered if matches(self.filter_text, n)]
        if ordered == self._names:
            return
        self._names = ordered
        options = self.query_one("#series", OptionList)
        options.clear_options()
        options.add_options([Option(_label(n), id=n) for n in ordered])
        if self.selected in ordered:
            options.highlighted = ordered.index(self.selected)
        elif ordered and not self.filter_text:
            self.selected = ordered[0]
            options.highlighted = 0

    def _draw_plot(self) -> None:
        app = self.app
        trace = app.trace
        plot = self.query_one("#plot", SeriesPlot)
        caption = self.query_one("#plot-caption", Static)
        onsets = _onsets(app)
        bad = first_nonfinite_step(trace)
        full = (int(trace.steps[0]), int(trace.steps[-1])) if trace.num_steps else None
        if not trace.has(self.selected):
            plot.show_lines(self.selected, [], self.window or full, onsets, bad)
            set_text(caption, Text(f"{self.selected}: not recorded" if trace.num_steps else "no steps yet",
                                style="dim"))
            return
        lines = _lines_for(trace, self.selected, self.highlight_layer)
        plot.show_lines(self.selected, lines, self.window or full, onsets, bad)
        text = Text()
        first, last = int(trace.steps[0]), int(trace.steps[-1])
        lo, hi = self.window or (first, last)
        text.append(f"steps {lo}–{hi}" + (" (zoomed; 0: all steps)" if self.window else ""), style="bold")
        marks = [f"{cid}@{step}" for cid, step in onsets]
        if bad is not None:
            marks.append(f"non-finite@{bad}")
        if marks:
            text.append("\nonsets: " + ", ".join(marks), style="yellow")
        set_text(caption, text)

    # ------------------------------------------------------------------ events and actions

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_id and event.option_id != self.selected:
            self.selected = event.option_id
            self.highlight_layer = None
            self._draw_plot()

    def show_series(self, series: str, steps: tuple[int, int] | None, layer: str | None = None) -> None:
        """Select ``series`` (a cause's jump), zoomed to a margin around ``steps``."""
        self.filter_text = ""
        self._names = []
        self.selected = _base_series(series)
        self.highlight_layer = layer or _layer_in(series)
        self.window = _around(steps, self.app.trace) if steps else None
        self.redraw()
        self.focus_main()

    def action_zoom(self, factor: float) -> None:
        trace = self.app.trace
        if not trace.num_steps:
            return
        first, last = int(trace.steps[0]), int(trace.steps[-1])
        lo, hi = self.window or (first, last)
        centre, half = (lo + hi) / 2, max(2.0, (hi - lo) * factor / 2)
        lo, hi = int(round(centre - half)), int(round(centre + half))
        self.window = None if lo <= first and hi >= last else (max(first, lo), min(last, hi))
        self._draw_plot()

    def action_pan(self, fraction: float) -> None:
        trace = self.app.trace
        if not self.window or not trace.num_steps:
            return
        first, last = int(trace.steps[0]), int(trace.steps[-1])
        lo, hi = self.window
        shift = int((hi - lo) * fraction) or (1 if fraction > 0 else -1)
        shift = max(first - lo, min(last - hi, shift))
        self.window = (lo + shift, hi + shift)
        self._draw_plot()

    def action_reset_zoom(self) -> None:
        self.window = None
        self._draw_plot()

    def action_range(self) -> None:
        current = f"{self.window[0]}-{self.window[1]}" if self.window else ""
        self.screen.open_range_input(current)

    def set_range_text(self, text: str) -> None:
        """Apply a typed range like ``100-500`` (empty: all steps)."""
        numbers = [int(n) for n in re.findall(r"\d+", text)]
        if not numbers:
            self.window = None
        elif len(numbers) == 1:
            self.window = (numbers[0], int(self.app.trace.steps[-1]) if self.app.trace.num_steps else numbers[0])
        else:
            self.window = (min(numbers[:2]), max(numbers[:2]))
        self._draw_plot()


def _label(name: str) -> str:
    """The list shows ``act.zero_fraction`` for ``activations.zero_fraction`` to fit 80 columns."""
    label = name.replace("activations.", "act.").replace("eval.", "").replace(".metrics.", ".")
    return label if len(label) <= 18 else label[:17] + "…"


def _base_series(series: str) -> str:
    """``layers.grad_norm[fc1]`` or ``layers.grad_norm{layer=fc1}`` -> ``layers.grad_norm``."""
    return re.split(r"[\[{]", series, maxsplit=1)[0]


def _layer_in(series: str) -> str | None:
    match = re.search(r"[\[{](?:layer=)?([^\]}]+)[\]}]", series)
    return match.group(1) if match else None


def _around(steps: tuple[int, int], trace) -> tuple[int, int] | None:
    if not trace.num_steps:
        return None
    first, last = int(trace.steps[0]), int(trace.steps[-1])
    lo, hi = steps[0], steps[-1]
    margin = max(10, (hi - lo) // 2, (last - first) // 20)
    lo, hi = max(first, lo - margin), min(last, hi + margin)
    return None if lo <= first and hi >= last else (lo, hi)


def _onsets(app) -> list[tuple[str, int]]:
    outcome = app.outcome
    if outcome is None or outcome.diagnosis is None:
        return []
    return [(c.id, c.first_step) for c in outcome.diagnosis.causes if c.first_step is not None]


def _lines_for(trace, name: str, highlight: str | None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, steps, values) for each line of the plot of ``name``."""
    if name in trace.layer_columns:
        matrix = trace.layer_matrix(name)
        names = list(matrix.layer_names)
        chosen = _pick_layers(names, highlight, limit=8)
        return [(names[i], matrix.steps, matrix.values[:, i]) for i in chosen]
    series = trace.series(name)
    lines = [("train" if name == "loss" else name, series.steps, series.values)]
    if name == "loss":
        for split in trace.eval_splits():
            if trace.has(f"eval.{split}.loss"):
                other = trace.series(f"eval.{split}.loss")
                lines.append((split, other.steps, other.values))
    return lines


def _pick_layers(names: list[str], highlight: str | None, limit: int) -> list[int]:
    if len(names) <= limit:
        return list(range(len(names)))
    chosen = set(np.linspace(0, len(names) - 1, limit - (1 if highlight in names else 0)).astype(int).tolist())
    if highlight in names:
        chosen.add(names.index(highlight))
    return sorted(chosen)
