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


def steps_per_second(trace: Trace, window: int = 100) -> float | None:
    """Recent training speed from the recorded wall-clock ``time`` of the last ``window`` steps.

    Recorded times rather than arrival times: a finished trace shows the speed it ran at.
    """
    if not trace.has("time"):
        if trace.has("step_time"):
            recent = trace.series("step_time").values[-window:]
            recent = recent[np.isfinite(recent) & (recent > 0)]
            return float(1.0 / recent.mean()) if len(recent) else None
        return None
    series = trace.series("time")
    steps, times = series.steps[-window:], series.values[-window:]
    if len(steps) < 2 or not times[-1] > times[0]:
        return None
    return float((steps[-1] - steps[0]) / (times[-1] - times[0]))


def run_facts(trace: Trace) -> RunFacts:
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
    loss = "loss " + (fmt.num(float(trace.series("loss").values[-1])) if trace.has("loss") else "-")
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
