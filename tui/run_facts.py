"""What the overview says about the run itself: model, optimizer, progress, speed, last losses."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from diag.trace.columnar import Trace

from diag.tui import fmt


@dataclass(frozen=True)
class RunFacts:
    """The run as the overview shows it (each field already a display string)."""

    run_id: str
    model: str
    optimizer: str
    steps: str
    speed: str
    loss: str
    val: str
    status: str


def recent(trace: Trace, name: str, window: int) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the recorded points of ``name`` among the last ``window`` steps.

    Looks only at the tail of the columns: the status line is redrawn several times a second and
    must not copy a 100,000-step column each time (``trace.series`` does).
    """
    if name not in trace.columns:
        return np.empty(0, dtype=np.int64), np.empty(0)
    mask = trace.present[name][-window:]
    return trace.steps[-window:][mask], trace.columns[name][-window:][mask]


def last_value(trace: Trace, name: str, window: int = 4096) -> float | None:
    """The most recent recorded value of a step series, or None."""
    _, values = recent(trace, name, window)
    if len(values):
        return float(values[-1])
    return float(trace.series(name).values[-1]) if trace.has(name) else None


def steps_per_second(trace: Trace, window: int = 100) -> float | None:
    """Recent training speed from the recorded wall-clock ``time`` of the last ``window`` steps.

    Recorded times rather than arrival times: a finished trace shows the speed it ran at.
    """
    steps, times = recent(trace, "time", window)
    if len(steps) < 2:
        _, durations = recent(trace, "step_time", window)
        durations = durations[np.isfinite(durations) & (durations > 0)]
        return float(1.0 / durations.mean()) if len(durations) else None
    if not times[-1] > times[0]:
        return None
    return float((steps[-1] - steps[0]) / (times[-1] - times[0]))


_LAST: list = [None, None]  # (trace, facts): the status line and the overview ask for the same snapshot


def run_facts(trace: Trace) -> RunFacts:
    """``compute_run_facts`` of this snapshot, computed once however many widgets show it."""
    if _LAST[0] is not trace:
        _LAST[:] = [trace, compute_run_facts(trace)]
    return _LAST[1]


def compute_run_facts(trace: Trace) -> RunFacts:
    """Summarise a trace for the overview and the status line.

    Example:
      >>> from diag.trace import Header, Step
      >>> from diag.trace.builder import TraceBuilder
      >>> builder = TraceBuilder("run.jsonl")
      >>> builder.add_record(Header(run_id="r1", framework="jax", model_name="MLP"))
      >>> builder.add_record(Step(step=0, loss=2.3))
      >>> run_facts(builder.build()).loss
      'loss 2.3'
    """
    header = trace.header
    run_id = header.run_id if header else "(no header)"
    model = "unknown model"
    optimizer = "optimizer ?"
    planned = None
    if header is not None:
        parts = [header.model_name or f"{len(header.layers)} layers", header.framework]
        if header.param_count:
            parts.append(f"{header.param_count:,} params")
        if header.compute_dtype:
            parts.append(header.compute_dtype)
        model = " · ".join(p for p in parts if p)
        if header.optimizer is not None:
            hyper = header.optimizer.hyperparameters
            lr = hyper.get("learning_rate", hyper.get("lr"))
            optimizer = header.optimizer.name + (f" lr={lr:g}" if isinstance(lr, (int, float)) else "")
        planned = header.steps_planned
    last = trace.last_step
    if last is None:
        steps = "no steps yet"
    else:
        steps = f"step {last}" + (f"/{planned}" if planned else "")
    speed = fmt.rate(steps_per_second(trace)) + " steps/s"
    loss = "loss " + fmt.num(last_value(trace, "loss"))
    val_parts = []
    for split in trace.eval_splits():
        name = f"eval.{split}.loss"
        if trace.has(name):
            val_parts.append(f"{split} loss {fmt.num(float(trace.series(name).values[-1]))}")
    val = " · ".join(val_parts)
    return RunFacts(run_id, model, optimizer, steps, speed, loss, val, run_status(trace))


def run_status(trace: Trace) -> str:
    """``completed``, ``crashed: <exception>``, ``interrupted`` ... or ``running`` when no end was recorded."""
    for event in reversed(trace.events):
        if event.event == "run_end":
            return event.status
        if event.event == "exception":
            return f"crashed: {event.type}"
    return "running" if trace.num_steps else "waiting for steps"


def first_nonfinite_step(trace: Trace) -> int | None:
    """The first step whose loss was recorded as NaN/Inf (for marking plots)."""
    if not trace.has("loss"):
        return None
    series = trace.series("loss")
    bad = np.flatnonzero(~np.isfinite(series.values))
    return int(series.steps[bad[0]]) if len(bad) else None


def finite(value: float) -> bool:
    return value is not None and math.isfinite(value)
