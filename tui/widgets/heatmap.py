"""A layer-by-step heat view: one row per layer, one column per step range, coloured by magnitude.

Vanishing gradients show as early layers going dark while late ones stay bright, exploding ones
as a red front moving through the layers; cells outside the healthy range also carry a mark
(``▼`` below, ``▲`` above, ``!`` non-finite) so the pattern reads without colour too.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.widgets import Static

from diag.tui.downsample import bin_columns
from diag.tui.health import verdict

HEAT_STATS = ("layers.grad_norm", "layers.update_ratio", "activations.zero_fraction", "activations.std")
# Dark blue (small) to red (large), readable on dark and light terminals.
PALETTE = ("#08306b", "#2171b5", "#4eb3d3", "#41ab5d", "#a1d99b", "#fee391", "#fd8d3c", "#e31a1c")
NAME_WIDTH = 12


class LayerHeatmap(Static, can_focus=True):
    """Heat view of one per-layer statistic over all recorded steps."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._shown: tuple | None = None

    def show(self, trace, series: str, filter_text: str = "") -> None:
        self._shown = (trace, series, filter_text)
        # Before its first layout the widget has no size; on_resize draws it again at the real width.
        width = self.content_region.width or 78
        self.update(render_heat(trace, series, max(10, width - NAME_WIDTH - 1), filter_text))

    def on_resize(self) -> None:
        if self._shown is not None:
            self.show(*self._shown)


def render_heat(trace, series: str, width: int, filter_text: str = "") -> Text:
    """The heat view as Rich text (``width`` step columns).

    Example:
      >>> from diag.trace.builder import TraceBuilder
      >>> from diag.trace import Header, LayerInfo, Step, LayerStats
      >>> b = TraceBuilder("t")
      >>> b.add_record(Header(run_id="r", framework="jax", layers=[LayerInfo(name="a"), LayerInfo(name="b")]))
      >>> for s in range(4): b.add_record(Step(step=s, layers=LayerStats(grad_norm=[1e-9, 0.5])))
      >>> print(render_heat(b.build(), "layers.grad_norm", 4).plain.splitlines()[1])
      a            ▼▼▼▼
    """
    text = Text()
    text.append(f"{series} · log10 mean per step range · c: statistic", style="bold")
    if series not in trace.layer_columns or not trace.has(series):
        text.append("\nnot recorded in this trace", style="dim")
        return text
    matrix = trace.layer_matrix(series)
    starts, means, bad = bin_columns(matrix.steps, matrix.values, matrix.measured, width)
    finite = means[np.isfinite(means) & (means > -12)]
    low, high = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    span = max(high - low, 1e-9)
    for j, name in enumerate(matrix.layer_names):
        if filter_text and filter_text.lower() not in name.lower():
            continue
        text.append("\n" + name[:NAME_WIDTH].ljust(NAME_WIDTH + 1))
        for b in range(means.shape[0]):
            value = means[b, j]
            if bad[b, j]:
                text.append("!", style="bold white on #7a0177")
                continue
            if not np.isfinite(value):
                text.append("·", style="dim")
                continue
            level = int(np.clip((value - low) / span * (len(PALETTE) - 1), 0, len(PALETTE) - 1))
            reason = verdict(series, 0.0 if value <= -12 else float(10.0 ** value))
            mark = " "
            if reason:
                mark = "▼" if ("<" in reason or "small" in reason or "vanish" in reason) else "▲"
            text.append(mark, style=f"bold white on {PALETTE[level]}")
    text.append("\n" + " " * (NAME_WIDTH + 1))
    first, last = int(starts[0]), int(matrix.steps[-1])
    axis = f"step {first}"
    text.append(axis + f"{'step ' + str(last):>{max(1, means.shape[0] - len(axis))}}", style="dim")
    legend = Text("\nlow ")
    for color in PALETTE:
        legend.append(" ", style=f"on {color}")
    legend.append(f" high: 1e{low:.1f} … 1e{high:.1f}\n▼ below / ▲ above healthy · ! NaN/Inf · · not measured")
    text.append(legend)
    return text
