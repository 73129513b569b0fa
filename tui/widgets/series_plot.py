"""A plotext line plot of one or more series over steps, with vertical marks at cause onsets.

The plot is built off the event loop: plotext draws every pixel of every line in Python, 20-30 ms
for a long spiky series on a shared core (more when the machine is busy), and a key press that
waited for it missed the 100 ms a key should take. A worker thread builds the text with its own
plotext figure; the widget shows the last finished build meanwhile (a tab switch repaints at once)
and swaps the new one in when it arrives. At most one build runs; requests made meanwhile
collapse into one more build of the latest data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.text import Text
from textual import work
from textual.message import Message
from textual_plotext import PlotextPlot
from textual_plotext.plot import Plot

from diag.tui import fmt
from diag.tui.downsample import envelope

ONSET_COLORS = ("orange", "magenta", "cyan", "yellow", "red")


@dataclass(frozen=True)
class PlotRequest:
    """Everything one build needs, read on the UI thread (the worker touches no widget)."""

    title: str
    lines: list  # (label, steps, values)
    window: tuple[int, int] | None
    onsets: list[tuple[str, int]]
    nonfinite: int | None
    width: int
    height: int
    theme: str  # plotext theme name


class SeriesPlot(PlotextPlot):
    """Draws ``(label, steps, values)`` lines; a log y axis when the values span many decades.

    Points are reduced to each column's minimum and maximum before plotting, so a 100,000-step
    series draws as fast as a short one and a one-step spike still shows.
    """

    class Built(Message):
        def __init__(self, key: tuple, text: Text):
            super().__init__()
            self.key, self.text = key, text

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._data: tuple = ("", [], None, [], None)  # title, lines, window, onsets, non-finite step
        self._version = 0
        self._shown: tuple[tuple, Text] | None = None  # (key, text) of the build on screen
        self._building: tuple | None = None  # key of the build in flight
        self._figure = Plot()  # used by one worker at a time

    @property
    def busy(self) -> bool:
        """True while the plot on screen is older than the data or size it was last given."""
        key = self._key()
        return self._building is not None or (key is not None and (self._shown is None or self._shown[0] != key))

    def show_lines(self, title: str, lines: list, window: tuple[int, int] | None,
                   onsets: list[tuple[str, int]], nonfinite_step: int | None) -> None:
        self._data = (title, lines, window, onsets, nonfinite_step)
        self._version += 1
        self._build_if_needed()

    def on_resize(self) -> None:
        self._build_if_needed()

    def _register_theme(self, app_theme_name: str) -> None:
        super()._register_theme(app_theme_name)  # a new app theme: the plot's colours follow
        self._build_if_needed()

    def render(self):
        return self._shown[1] if self._shown is not None else Text()

    def _key(self) -> tuple | None:
        """What the current build must match: the data, the size and the theme (None: nothing to draw)."""
        if not self.is_mounted or not self.size.width or not self.size.height:
            return None
        return (self._version, self.size, self.app.theme)

    def _build_if_needed(self) -> None:
        key = self._key()
        if key is None or self._building is not None or (self._shown is not None and self._shown[0] == key):
            return
        self._building = key
        title, lines, window, onsets, nonfinite = self._data
        self._build(key, PlotRequest(title, lines, window, onsets, nonfinite, self.size.width, self.size.height,
                                     self._get_plotext_theme_name(self.app.theme)))

    @work(thread=True, group="plot", exit_on_error=False)
    def _build(self, key: tuple, request: PlotRequest) -> None:
        self.post_message(self.Built(key, Text.from_ansi(build_plot(self._figure, request), no_wrap=True,
                                                         overflow="crop")))

    def on_series_plot_built(self, message: Built) -> None:
        message.stop()
        self._building = None
        self._shown = (message.key, message.text)
        self.refresh()
        self._build_if_needed()  # data or size changed while it was building


def build_plot(plt: Plot, request: PlotRequest) -> str:
    """The plot as plotext's ANSI text, drawn on ``plt`` (which is cleared first)."""
    plt.clear_figure()
    plt.title(request.title)
    plt.xlabel("step")
    bins = max(8, request.width - 12)
    window = request.window
    drawn = []
    for label, steps, values in request.lines:
        if window is not None:
            keep = (steps >= window[0]) & (steps <= window[1])
            steps, values = steps[keep], values[keep]
        x, y = envelope(np.asarray(steps), np.asarray(values, dtype=np.float64), bins)
        if len(x):
            drawn.append((label, x, y))
    if not drawn:
        return _finish(plt, request)
    every = np.concatenate([y for _, _, y in drawn])
    positive = every[every > 0]
    # plotext's own log axis breaks on huge ranges (a diverged loss reaches 1e200): plot log10
    # values on a linear axis and label the ticks as powers of ten instead. Exact zeros (a dead
    # layer's update) sit a decade below the smallest positive value.
    log = (len(positive) and not (every < 0).any() and positive.max() / positive.min() > 1e3)
    if log:
        floor = positive.min() / 10
        drawn = [(label, x, np.log10(np.maximum(y, floor))) for label, x, y in drawn]
        every = np.log10(np.maximum(every, floor))
    for label, x, y in drawn:
        plt.plot(x.tolist(), y.tolist(), label=label if len(drawn) > 1 else None, marker="braille")
    low, high = float(every.min()), float(every.max())
    if high > low:
        ticks = np.linspace(low, high, 5)
        plt.yticks(ticks.tolist(), [f"1e{t:.0f}" if log else fmt.num(float(t), 3) for t in ticks])
    lo = min(int(x[0]) for _, x, _ in drawn)
    hi = max(int(x[-1]) for _, x, _ in drawn)
    if window is not None:
        lo, hi = window
    if hi > lo:
        plt.xlim(lo, hi)
        xticks = sorted({int(round(t)) for t in np.linspace(lo, hi, 5)})
        plt.xticks(xticks, [str(t) for t in xticks])
    for i, (_, step) in enumerate(request.onsets):
        if lo <= step <= hi:
            plt.vertical_line(step, color=ONSET_COLORS[i % len(ONSET_COLORS)])
    if request.nonfinite is not None and lo <= request.nonfinite <= hi:
        plt.vertical_line(request.nonfinite, color="red")
    return _finish(plt, request)


def _finish(plt: Plot, request: PlotRequest) -> str:
    """Size, theme and build, in PlotextPlot.render's order: the theme, set after the lines, colours
    them from its own sequence."""
    plt.plotsize(request.width, request.height)
    plt._set_size(request.width, request.height)  # as PlotextPlot.render does (textual-plotext issue 5)
    plt.theme(request.theme)
    return plt.build()
