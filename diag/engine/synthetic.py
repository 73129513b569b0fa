"""Build an in-memory ``Trace`` from a few series (rule tests, benchmarks, examples).

Series names are those of ``diag.trace.columnar`` plus a label selector for per-layer series:
``layers.grad_norm{layer="fc1"}``. Layers are taken from ``layers=`` or, failing that, from the
selectors in order of appearance.

Example:
  >>> trace = trace_from_series({"loss": [2.3, 2.1, float("nan")]})
  >>> trace.series("loss").values.tolist()[:2]
  [2.3, 2.1]
"""

from __future__ import annotations

import re

import numpy as np

from diag.trace.columnar import LAYER_GROUPS, Trace
from diag.trace.records import Check, Data, Eval, Header, LayerInfo, NonFiniteEvent, OptimizerInfo

_SELECTOR = re.compile(r'^(?P<name>[A-Za-z0-9_.]+)(?:\{layer\s*=\s*"(?P<layer>[^"]+)"\})?$')
_LAYER_NAMES = {f"{g}.{f}" for g, fields in LAYER_GROUPS.items() for f in fields}


class SeriesNameError(ValueError):
    """A series name the trace format does not have."""


class SpecTooLargeError(ValueError):
    """A synthetic trace spec that asks for more than a rule test needs (or memory holds)."""


# A rule test needs a few hundred points; these bounds keep a hostile spec from allocating
# gigabytes (points x layers) or overflowing step numbers (points x step_interval).
MAX_SYNTHETIC_CELLS = 5_000_000  # logged values in all columns together (40 MB of float64)
MAX_LAYERS = 1_000
MAX_STEP_INTERVAL = 1_000_000


def check_step_interval(value) -> int:
    """``value`` as a step interval (a whole number from 1 to ``MAX_STEP_INTERVAL``), or ValueError."""
    if type(value) is not int or not 1 <= value <= MAX_STEP_INTERVAL:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
        raise SpecTooLargeError(f"step_interval must be a whole number from 1 to {MAX_STEP_INTERVAL:,}, not {shown}")
    return value


def trace_from_series(series: dict, *, step_interval: int = 1, header: Header | None = None,
                      layers: list | None = None, records: list | None = None, path: str = "<test>") -> Trace:
    """A Trace whose point ``i`` of every series is at step ``i * step_interval``.

    Args:
      series: name -> list of floats (None: not logged at that point).
      step_interval: steps between logged points.
      header: the header record (a minimal one is made when omitted).
      layers: layer names or ``LayerInfo`` dicts in forward order.
      records: ``Data``/``Check``/``Eval``/event records to add.
    """
    step_interval = check_step_interval(step_interval)
    parsed = []
    layer_order: list[str] = []
    for name, values in series.items():
        if not isinstance(name, str):
            raise SeriesNameError(f"a series name is text like 'loss', not {type(name).__name__}")
        m = _SELECTOR.match(name.strip())
        if not m:
            raise SeriesNameError(f"cannot read series name {name!r}")
        base, layer = m.group("name"), m.group("layer")
        if base in _LAYER_NAMES and layer is None:
            raise SeriesNameError(f'{base} is per layer: write {base}{{layer="NAME"}}')
        if layer is not None and layer not in layer_order:
            layer_order.append(layer)
        parsed.append((base, layer, list(values)))
    infos = _layer_infos(layers, layer_order)
    n_points = max((len(v) for b, _, v in parsed if not b.startswith("eval.")), default=0)
    columns_needed = len({b for b, _, _ in parsed if b in _LAYER_NAMES}) * max(len(infos), 1) + len(parsed)
    if len(infos) > MAX_LAYERS or n_points * columns_needed > MAX_SYNTHETIC_CELLS:
        raise SpecTooLargeError(
            f"the spec asks for {n_points:,} points x {columns_needed:,} columns ({len(infos):,} layers); a synthetic "
            f"trace holds at most {MAX_SYNTHETIC_CELLS:,} values and {MAX_LAYERS:,} layers")
    if header is None:
        header = Header(run_id="test", framework="test", layers=infos)
    elif infos and not header.layers:
        header = header.model_copy(update={"layers": infos})
    names = [info.name for info in header.layers]
    for _, layer, _ in parsed:
        if layer is not None and layer not in names:
            raise SeriesNameError(f"layer {layer!r} is not in the trace's layers {names}")

    n = max((len(v) for b, _, v in parsed if not b.startswith("eval.")), default=0)
    steps = np.arange(n, dtype=np.int64) * step_interval
    columns, present, layer_columns, layer_present = {}, {}, {}, {}
    evals: dict[tuple[int, str], dict] = {}
    for base, layer, values in parsed:
        if base.startswith("eval."):
            _add_eval(evals, base, values, step_interval)
            continue
        arr = np.array([np.nan if v is None else float(v) for v in values] + [np.nan] * (n - len(values)))
        mask = np.array([v is not None for v in values] + [False] * (n - len(values)))
        if base in _LAYER_NAMES:
            matrix = layer_columns.setdefault(base, np.full((n, len(names)), np.nan))
            pmask = layer_present.setdefault(base, np.zeros(n, dtype=bool))
            matrix[:, names.index(layer)] = arr
            pmask |= mask
        else:
            columns[base] = arr
            present[base] = mask
    eval_records = [Eval(step=step, split=split, **fields) for (step, split), fields in sorted(evals.items())]
    records = list(records or [])
    return Trace(
        path=path, header=header, steps=steps, columns=columns, present=present, layer_columns=layer_columns,
        layer_present=layer_present,
        evals=eval_records + [r for r in records if isinstance(r, Eval)],
        data=[r for r in records if isinstance(r, Data)],
        checks=[r for r in records if isinstance(r, Check)],
        events=[r for r in records if getattr(r, "kind", None) == "event"],
        headers=[header],
    )


def _layer_infos(layers, order) -> list[LayerInfo]:
    if layers:
        return [LayerInfo(name=x) if isinstance(x, str) else LayerInfo.model_validate(x) for x in layers]
    return [LayerInfo(name=x) for x in order]


def _add_eval(evals: dict, base: str, values: list, step_interval: int) -> None:
    parts = base.split(".")
    if len(parts) == 3 and parts[2] == "loss":
        field = ("loss", None)
    elif len(parts) == 4 and parts[2] == "metrics":
        field = ("metrics", parts[3])
    else:
        raise SeriesNameError(f"cannot read eval series {base!r} (eval.<split>.loss or eval.<split>.metrics.<name>)")
    split = parts[1]
    for i, v in enumerate(values):
        if v is None:
            continue
        entry = evals.setdefault((i * step_interval, split), {"metrics": {}})
        if field[0] == "loss":
            entry["loss"] = float(v)
        else:
            entry["metrics"][field[1]] = float(v)


def header_from_context(context: dict, layers=None) -> Header:
    """A header that yields the given context facts (precision, optimizer, lr, ...)."""
    fields: dict = {"run_id": "test", "framework": context.get("framework", "test")}
    if "precision" in context:
        fields["compute_dtype"] = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}.get(
            context["precision"], context["precision"])
    if "param_precision" in context:
        fields["param_dtype"] = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}.get(
            context["param_precision"], context["param_precision"])
    for key in ("compute_dtype", "param_dtype", "loss_kind", "task", "num_classes", "batch_size", "loss_scaling",
                "seed", "model_name", "device_platform", "steps_planned"):
        if key in context:
            fields[key] = context[key]
    hyper = {k: context[k] for k in ("lr", "momentum", "weight_decay", "grad_clip") if k in context}
    if "lr" in hyper:
        hyper["learning_rate"] = hyper.pop("lr")
    if "optimizer" in context or hyper:
        fields["optimizer"] = OptimizerInfo(name=context.get("optimizer", "unknown"), hyperparameters=hyper)
    if layers:
        fields["layers"] = _layer_infos(layers, [])
    return Header.model_validate(fields)


__all__ = ["NonFiniteEvent", "SeriesNameError", "SpecTooLargeError", "check_step_interval", "header_from_context", "trace_from_series"]
