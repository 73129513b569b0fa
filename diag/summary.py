"""What a trace holds, at a glance: the facts ``diag summary`` prints before any diagnosis."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from diag.trace.columnar import Trace

SUMMARY_SCHEMA = "diag.summary/1"


class NonFiniteFirstSeen(BaseModel):
    step: int
    series: str
    layer: str | None = None
    value: str = Field(description="'NaN', 'Infinity' or '-Infinity'.")
    source: str = Field(description="'event' when the adapter located it, 'series' when found in the metrics.")


class EvalSummary(BaseModel):
    split: str
    evaluations: int
    last_step: int
    loss: float | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict)


class EventSummary(BaseModel):
    event: str
    step: int | None = None
    text: str


class Summary(BaseModel):
    schema_: str = Field(default=SUMMARY_SCHEMA, alias="schema")
    trace: str
    run_id: str | None = None
    run: int = Field(default=1, description="Which run of the file this is (a file may hold several).")
    runs: int = Field(default=1, description="How many runs the file holds.")
    framework: str | None = None
    model: str | None = None
    layers: int = 0
    parameters: int | None = None
    optimizer: str | None = None
    task: str | None = None
    precision: str | None = None
    device: str | None = None
    steps_recorded: int = 0
    first_step: int | None = None
    last_step: int | None = None
    first_loss: float | None = None
    last_loss: float | None = None
    series: list[str] = Field(default_factory=list)
    first_nonfinite: NonFiniteFirstSeen | None = None
    evals: list[EvalSummary] = Field(default_factory=list)
    data_splits: list[str] = Field(default_factory=list)
    checks: dict[str, int] = Field(default_factory=dict, description="passed / failed counts")
    events: list[EventSummary] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)

    model_config = {"populate_by_name": True, "ser_json_inf_nan": "strings"}


def summarize(trace: Trace) -> Summary:
    header = trace.header
    summary = Summary(trace=trace.path, steps_recorded=trace.num_steps, run=trace.run, runs=trace.runs)
    if header is not None:
        summary.run_id = header.run_id
        summary.framework = _join(header.framework, header.framework_version)
        summary.model = header.model_name
        summary.layers = len(header.layers)
        summary.parameters = header.param_count
        if header.optimizer is not None:
            hp = ", ".join(f"{k}={v}" for k, v in header.optimizer.hyperparameters.items())
            summary.optimizer = f"{header.optimizer.name}({hp})" if hp else header.optimizer.name
        summary.task = _join(header.task, f"{header.num_classes} classes" if header.num_classes else None,
                             header.loss_kind, sep=", ")
        summary.precision = _join(f"params {header.param_dtype}" if header.param_dtype else None,
                                  f"compute {header.compute_dtype}" if header.compute_dtype else None, sep=", ")
        devices = f" x{header.device_count}" if header.device_count and header.device_count > 1 else ""
        summary.device = f"{header.device_platform}{devices}" if header.device_platform else None
        if header.world_size > 1:
            summary.device = _join(summary.device, f"{header.world_size} processes", sep=", ")
    if trace.num_steps:
        summary.first_step = int(trace.steps[0])
        summary.last_step = int(trace.steps[-1])
        if trace.has("loss"):
            loss = trace.series("loss")
            summary.first_loss = float(loss.values[0])
            summary.last_loss = float(loss.values[-1])
    summary.series = trace.series_names()
    summary.first_nonfinite = first_nonfinite(trace)
    for split in trace.eval_splits():
        records = sorted((e for e in trace.evals if e.split == split), key=lambda e: e.step)
        last = records[-1]
        summary.evals.append(EvalSummary(split=split, evaluations=len(records), last_step=last.step,
                                         loss=last.loss, metrics=dict(last.metrics)))
    summary.data_splits = [d.split for d in trace.data]
    for check in trace.checks:
        key = "passed" if check.passed else "failed"
        summary.checks[key] = summary.checks.get(key, 0) + 1
    summary.events = [_event_summary(e) for e in trace.events]
    summary.problems = [str(p) for p in trace.problems]
    return summary


def first_nonfinite(trace: Trace) -> NonFiniteFirstSeen | None:
    """The earliest non-finite value: the adapter's located event, else the earliest in any series."""
    located = trace.events_of("nonfinite")
    if located:
        event = min(located, key=lambda e: e.step if e.step is not None else math.inf)
        # the event's value may be a count of non-finite entries rather than the value itself
        value = _name(event.value) if event.value is not None and not math.isfinite(event.value) else "NaN/Inf"
        return NonFiniteFirstSeen(step=event.step or 0, series=event.tensor, layer=event.layer, value=value,
                                  source="event")
    best: tuple[int, int, str, str | None, float] | None = None
    # Order matters for ties within a step: inputs first, then forward quantities, then gradients.
    order = ["input.mean", "input.nonfinite", "activations.mean", "loss", "layers.grad_norm", "grad_norm",
             "layers.param_norm", "param_norm"]
    names = order + [n for n in list(trace.columns) + list(trace.layer_columns) if n not in order]
    for rank, name in enumerate(names):
        if name in trace.columns and trace.present[name].any():
            series = trace.series(name)
            values = series.values
            bad = ~np.isfinite(values)
            if name.endswith(".nonfinite"):
                bad = bad | (values > 0)
            if bad.any():
                i = int(np.argmax(bad))
                candidate = (int(series.steps[i]), rank, name, None, float(values[i]))
                best = candidate if best is None or candidate[:2] < best[:2] else best
        elif name in trace.layer_columns and trace.layer_present[name].any():
            matrix = trace.layer_matrix(name)
            bad = ~np.isfinite(matrix.values) & matrix.measured
            if name.endswith("nonfinite"):
                bad = bad | (np.nan_to_num(matrix.values) > 0)
            rows = bad.any(axis=1)
            if rows.any():
                i = int(np.argmax(rows))
                j = int(np.argmax(bad[i]))
                candidate = (int(matrix.steps[i]), rank, name, matrix.layer_names[j], float(matrix.values[i, j]))
                best = candidate if best is None or candidate[:2] < best[:2] else best
    if best is None:
        return None
    step, _, name, layer, value = best
    return NonFiniteFirstSeen(step=step, series=name, layer=layer, value=_name(value), source="series")


def _name(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return f"{value:g}"  # a count of non-finite entries


def _event_summary(event: Any) -> EventSummary:
    if event.event == "exception":
        text = f"{event.type}: {event.message or ''}".strip()
        if event.last_good_step is not None:
            text += f" (last good step {event.last_good_step})"
        where = _raise_site(event.traceback)
        if where:
            text += f" at {where}"
    elif event.event == "nonfinite":
        text = f"first non-finite {event.tensor}" + (f" in {event.layer}" if event.layer else "")
    elif event.event == "run_end":
        text = f"run {event.status}" + (f" after {event.steps} steps" if event.steps is not None else "")
    elif event.event == "signal":
        text = f"received {event.signal}"
    else:
        text = event.message or event.event
    return EventSummary(event=event.event, step=event.step, text=text)


def _raise_site(traceback_text: str | None) -> str | None:
    """'file.py:12 in fn' of the innermost frame of a formatted traceback."""
    if not traceback_text:
        return None
    site = None
    for line in traceback_text.splitlines():
        line = line.strip()
        if line.startswith('File "'):
            try:
                file_part, line_part, func_part = line.split(", ", 2)
                site = f"{file_part[6:-1].rsplit('/', 1)[-1]}:{line_part.split()[1]} {func_part}"
            except (ValueError, IndexError):
                continue
    return site


def _join(*parts: str | None, sep: str = " ") -> str | None:
    kept = [p for p in parts if p]
    return sep.join(kept) if kept else None


def render_text(summary: Summary) -> str:
    lines = [f"{'trace':<10} {summary.trace}"]

    def row(label: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            lines.append(f"{label:<10} {value}")

    run = summary.run_id
    if summary.runs > 1:
        run = _join(run, f"(run {summary.run} of {summary.runs} in this file; --run N for another)")
    row("run", run)
    row("library", summary.framework)
    model = _join(summary.model, f"{summary.layers} layers" if summary.layers else None,
                  f"{summary.parameters:,} parameters" if summary.parameters else None, sep=", ")
    row("model", model)
    row("optim", summary.optimizer)
    row("task", summary.task)
    row("dtypes", summary.precision)
    row("device", summary.device)
    if summary.steps_recorded:
        steps = f"{summary.steps_recorded} recorded, steps {summary.first_step}..{summary.last_step}"
    else:
        steps = "none recorded"
    row("steps", steps)
    if summary.first_loss is not None:
        row("loss", f"{_fmt(summary.first_loss)} at first step -> {_fmt(summary.last_loss)} at last")
    if summary.first_nonfinite is not None:
        nf = summary.first_nonfinite
        where = f" in layer {nf.layer}" if nf.layer else ""
        what = nf.value if nf.value in ("NaN", "Infinity", "-Infinity", "NaN/Inf") else "NaN/Inf"
        row("nonfinite", f"{what} first in {nf.series}{where} at step {nf.step}")
    else:
        row("nonfinite", "none")
    for ev in summary.evals:
        metrics = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(ev.metrics.items()))
        loss = f"loss {_fmt(ev.loss)}" if ev.loss is not None else None
        row("eval", f"{ev.split}: {_join(loss, metrics, sep=', ')} at step {ev.last_step} "
                    f"({ev.evaluations} evaluations)")
    row("data", ", ".join(summary.data_splits))
    if summary.checks:
        row("checks", ", ".join(f"{v} {k}" for k, v in sorted(summary.checks.items())))
    for ev in summary.events:
        row("event", f"step {ev.step}: {ev.text}" if ev.step is not None else ev.text)
    if summary.series:
        lines.append(f"{'series':<10} {len(summary.series)}: " + _wrap(summary.series, indent=11))
    return "\n".join(lines) + "\n"


def _wrap(names: list[str], indent: int, width: int = 100) -> str:
    out, line = [], ""
    for name in names:
        piece = name if not line else f", {name}"
        if len(line) + len(piece) + indent > width:
            out.append(line + ",")
            line = name
        else:
            line += piece
    out.append(line)
    return ("\n" + " " * indent).join(out)


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:.4g}"
