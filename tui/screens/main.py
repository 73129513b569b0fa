"""The main screen: a status line, four tabs (overview, metrics, layers, rules), a filter line."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import Reactive
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Input, TabbedContent, TabPane
from textual.widgets.tabbed_content import ContentTabs

from diag.tui.screens.layers import LayersPane
from diag.tui.screens.metrics import MetricsPane
from diag.tui.screens.overview import OverviewPane
from diag.tui.screens.pane import Pane
from diag.tui.screens.rules import RulesPane
from diag.tui.widgets.key_bar import KeyBar
from diag.tui.widgets.status_bar import StatusBar

TABS = ("overview", "metrics", "layers", "rules")


class MainScreen(Screen):
    """Tabs over the trace and its diagnosis; only the visible tab redraws as data arrives."""

    BINDINGS = [
        Binding("1", "tab('overview')", "Overview", show=False),
        Binding("2", "tab('metrics')", "Metrics", show=False),
        Binding("3", "tab('layers')", "Layers", show=False),
        Binding("4", "tab('rules')", "Rules", show=False),
        Binding("slash", "filter", "Filter", key_display="/"),
        Binding("escape", "close_input", "Close", show=False),
    ]

    # Textual repaints the whole screen when the focus moves (a second full frame per tab switch);
    # the widgets that gain and lose focus repaint themselves, and nothing else shows the focus.
    focused: Reactive[Widget | None] = Reactive(None, repaint=False)

    def __init__(self):
        super().__init__()
        self._input_purpose = "filter"
        self._panes: dict[str, Pane] = {}
        self._shown_pane: Pane | None = None  # the pane _show_tab last showed
        self._live_timer = None  # a redraw for new records, waiting for the pane's LIVE_INTERVAL

    def compose(self) -> ComposeResult:
        yield StatusBar(id="status")
        with TabbedContent(id="tabs", initial="overview"):
            with TabPane("1 Overview", id="overview"):
                yield OverviewPane(id="overview-pane")
            with TabPane("2 Metrics", id="metrics"):
                yield MetricsPane(id="metrics-pane")
            with TabPane("3 Layers", id="layers"):
                yield LayersPane(id="layers-pane")
            with TabPane("4 Rules", id="rules"):
                yield RulesPane(id="rules-pane")
        yield Input(id="line-input", classes="hidden")
        yield KeyBar()

    # ------------------------------------------------------------------ panes

    def on_mount(self) -> None:
        # Looked up once: a live run asks for them ten times a second.
        self._panes = {name: self.query_one(f"#{name}-pane", Pane) for name in TABS}
        self._tabs = self.query_one("#tabs", TabbedContent)

    @property
    def busy(self) -> bool:
        """True while the metrics plot is being built in its worker, or a redraw waits for its turn."""
        metrics = self._panes.get("metrics")
        return (metrics is not None and metrics.busy) or self._live_timer is not None

    def panes(self) -> list[Pane]:
        return list(self._panes.values())

    def active_pane(self) -> Pane:
        return self._panes[self._tabs.active or "overview"]

    def _redraw(self, what: str) -> None:
        active = self.active_pane()
        for pane in self.panes():
            pane.mark_stale(what)
        wait = active.live_wait() if what == "trace" and self.app.follow else 0.0
        if wait > 0:
            # New records arrive ten times a second; a pane that is slow to draw (the layer table)
            # shows them at its own pace instead of taking the interface's time from keys.
            if self._live_timer is None:
                self._live_timer = self.set_timer(wait, self._redraw_live)
        else:
            active.redraw_if_stale()

    def _redraw_live(self) -> None:
        self._live_timer = None
        self.active_pane().redraw_if_stale()

    def show_trace(self) -> None:
        self.query_one(StatusBar).show(self.app.trace, self.app.fatal, self.app.follow)
        self._redraw("trace")

    def show_diagnosing(self) -> None:
        self.query_one(OverviewPane).show_diagnosing()

    def show_diagnosis(self) -> None:
        self._redraw("diagnosis")

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = self._panes[event.pane.id]
        if pane is not self._shown_pane:  # a tab chosen on the tab bar (click, arrows), not a number key
            self._show_tab(pane)

    def action_tab(self, name: str) -> None:
        self._tabs.active = name
        self._show_tab(self._panes[name])

    def _show_tab(self, pane: Pane) -> None:
        """Everything a tab switch changes, before the next frame: the pane's content, its focus, the
        tab underline and the key bar.

        Textual would move the underline and the key bar after the next frame, in two more frames
        (one 60 Hz tick each, and a repaint of what they cover); drawn now, the switch shows in
        one frame. The underline goes under the tab where it is: the tab labels never move.
        """
        self._shown_pane = pane
        pane.redraw_if_stale()
        pane.focus_main()
        tabs = self._tabs.query_one(ContentTabs)
        tab = tabs.active_tab
        if tab is not None and tab.region:
            underline = tabs.query_one("Underline")  # the bar under the tab labels
            underline.highlight_start, underline.highlight_end = tab.virtual_region.shrink(
                tab.styles.gutter).column_span
        self.refresh_bindings()

    # ------------------------------------------------------------------ jumps from a cause

    def jump_to_metric(self, series: str, steps: tuple[int, int] | None) -> None:
        self.action_tab("metrics")
        self.query_one(MetricsPane).show_series(series, steps)

    def jump_to_layer(self, layer: str, step: int | None) -> None:
        self.action_tab("layers")
        self.query_one(LayersPane).show_layer(layer, step)

    # ------------------------------------------------------------------ filter and range input

    def action_filter(self) -> None:
        self._open_input("filter", self.active_pane().filter_text, "filter (Enter keeps it, Esc clears)")

    def open_range_input(self, current: str) -> None:
        self._open_input("range", current, "step range, e.g. 100-500 (Enter applies, Esc cancels)")

    def _open_input(self, purpose: str, value: str, placeholder: str) -> None:
        self._input_purpose = purpose
        line = self.query_one("#line-input", Input)
        line.placeholder = placeholder
        line.value = value
        line.remove_class("hidden")
        line.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if self._input_purpose == "filter" and not event.input.has_class("hidden"):
            self.active_pane().apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self._input_purpose == "range":
            self.query_one(MetricsPane).set_range_text(event.value)
        self._hide_input()

    def action_close_input(self) -> None:
        line = self.query_one("#line-input", Input)
        if line.has_class("hidden"):
            return
        if self._input_purpose == "filter":
            self.active_pane().apply_filter("")
        self._hide_input()

    def _hide_input(self) -> None:
        self.query_one("#line-input", Input).add_class("hidden")
        self.active_pane().focus_main()
