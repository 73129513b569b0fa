"""A plotext line plot of one or more series over steps, with vertical marks at cause onsets."""

from __future__ import annotations

import numpy as np
from textual_plotext import PlotextPlot

from diag.tui import fmt
from diag.tui.downsample import envelope

ONSET_COLORS = ("orange", "magenta", "cyan", "yellow", "red")


class SeriesPlot(PlotextPlot):
    """Draws ``(label, steps, values)`` lines; a log y axis when the values span many decades.

    Points are reduced to each column's minimum and maximum before plotting, so a 100,000-step
    series draws as fast as a short one and a one-step spike still shows.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._title = ""
        self._lines: list = []
        self._window: tuple[int, int] | None = None
        self._onsets: list[tuple[str, int]] = []
        self._nonfinite: int | None = None
        self._version = 0
        self._rendered: tuple | None = None  # (key, renderable) of the last build

    def show_lines(self, title: str, lines: list, window: tuple[int, int] | None,
                   onsets: list[tuple[str, int]], nonfinite_step: int | None) -> None:
        self._title, self._lines, self._window = title, lines, window
        self._onsets, self._nonfinite = onsets, nonfinite_step
        self._version += 1
        self.refresh()

    def render(self):
        # A plot build costs tens of milliseconds: repaints for other reasons (a tab switch, a
        # toast) reuse the last one while neither the data nor the size changed.
        key = (self._version, self.size, self.app.theme)
        if self._rendered is None or self._rendered[0] != key:
            self._draw()
            self._rendered = (key, super().render())
        return self._rendered[1]

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_figure()
        plt.title(self._title)
        plt.xlabel("step")
        bins = max(8, (self.size.width or 60) - 12)
        drawn = []
        for label, steps, values in self._lines:
            if self._window is not None:
                keep = (steps >= self._window[0]) & (steps <= self._window[1])
                steps, values = steps[keep], values[keep]
            x, y = envelope(np.asarray(steps), np.asarray(values, dtype=np.float64), bins)
            if len(x):
                drawn.append((label, x, y))
        if not drawn:
            return
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
        if self._window is not None:
            lo, hi = self._window
        if hi > lo:
            plt.xlim(lo, hi)
            xticks = sorted({int(round(t)) for t in np.linspace(lo, hi, 5)})
            plt.xticks(xticks, [str(t) for t in xticks])
        for i, (_, step) in enumerate(self._onsets):
            if lo <= step <= hi:
                plt.vertical_line(step, color=ONSET_COLORS[i % len(ONSET_COLORS)])
        if self._nonfinite is not None and lo <= self._nonfinite <= hi:
            plt.vertical_line(self._nonfinite, color="red")
