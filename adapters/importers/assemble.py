"""A ``ScalarLog`` -> trace records (header, steps, evals, run end) -> a ``Trace`` or a JSONL file.

Records go through ``diag.trace.builder.TraceBuilder`` exactly as a recorded trace's lines do, so
an imported run is validated by the same schema and loads into the same columns. The header says
where the run came from and which fields the log had (``recording``), which is all the honesty the
engine needs: a rule whose inputs are absent is skipped, never guessed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from diag.errors import DiagInputError, Problem
from diag.trace.records import Header, LayerInfo, OptimizerInfo, RunEndEvent

from diag.adapters.importers.names import NameMap
from diag.adapters.importers.scalars import SOURCE_TITLES, ScalarLog

_HPARAM_TAGS = 40
_OPTIMIZER_KEYS = ("optimizer", "optim", "optimizer_name", "opt", "optimizer_type")
_LR_KEYS = ("learning_rate", "lr", "base_lr", "initial_lr")
_HYPER_KEYS = ("momentum", "weight_decay", "beta1", "max_grad_norm", "grad_clip", "clip_norm")
_BATCH_KEYS = ("batch_size", "per_device_train_batch_size", "train_batch_size")
_SEED_KEYS = ("seed",)
# A tag per parameter ('net.0.weight', 'net.0.bias') is a part of its layer ('net.0').
_PARAM_SUFFIXES = ("weight", "bias", "kernel", "gamma", "beta", "scale", "embedding", "weight_g", "weight_v")


@dataclass
class ImportedRun:
    """The trace records of one imported run, and what the import found on the way."""

    header: Header
    steps: list[dict]
    evals: list[dict]
    events: list
    fields: list[str]
    ignored: list[str]
    problems: list[Problem] = field(default_factory=list)
    source: str = ""
    path: str = ""



def _step_row(rows: dict[int, dict], step: int) -> dict:
    """The step record being assembled for ``step``, created on first use."""
    row = rows.get(step)
    if row is None:
        row = rows[step] = {"kind": "step", "step": step}
    return row

def assemble(log: ScalarLog, names: NameMap) -> ImportedRun:
    """Map a log's metric names to trace fields and build its records.

    Raises:
      DiagInputError: the log holds no scalar the trace can use (the message names the file).
    """
    problems = list(log.problems)
    claimed: dict[str, str] = {}  # field -> the log name that fills it
    routes: list[tuple[str, str]] = []  # (log name, field)
    ignored = []
    ordered = sorted(log.series, key=lambda name: (names.rank(name), name))
    for name in ordered:
        target = names.field_for(name)
        if target is None:
            ignored.append(name)
            continue
        if target in claimed:
            fallback = "metrics." + _clean(name)
            problems.append(Problem(log.path, f"{name!r} and {claimed[target]!r} both map to {target}; "
                                    f"{claimed[target]!r} is used, {name!r} is kept as {fallback}",
                                    severity="warning"))
            target = fallback
            if target in claimed:
                continue
        claimed[target] = name
        routes.append((name, target))
    if not routes:
        seen = ", ".join(sorted(log.series)[:8]) or "none"
        raise DiagInputError(Problem(log.path, f"the {SOURCE_TITLES[log.source]} holds no training scalars "
                                     f"(metrics seen: {seen})"),
                             hint="map a metric to a field with --map NAME=FIELD, e.g. --map 'Loss/train=loss'")

    rows: dict[int, dict] = {}
    evals: dict[tuple[str, int], dict] = {}
    bad_steps = 0
    layer_routes = [(name, target) for name, target in routes if target.startswith("layers.")]
    layers = _add_layer_stats(log, layer_routes, rows)
    for name, target in routes:
        if target.startswith("layers."):
            continue
        steps, values = log.series[name]
        points = [(step, value) for step, value in zip(steps, values) if step >= 0]
        bad_steps += len(steps) - len(points)
        if target.startswith("eval."):
            parts = target.split(".")
            split, key = parts[1], parts[2:]
            for step, value in points:
                record = evals.get((split, step))
                if record is None:
                    record = evals[(split, step)] = {"kind": "eval", "step": step, "split": split}
                if key == ["loss"]:
                    record["loss"] = value
                else:
                    record.setdefault("metrics", {})[key[1]] = value
        elif target.startswith("metrics."):
            metric = target[len("metrics."):]
            for step, value in points:
                row = _step_row(rows, step)
                metrics = row.get("metrics")
                if metrics is None:
                    metrics = row["metrics"] = {}
                metrics[metric] = value
        else:
            epoch = target == "epoch"
            for step, value in points:
                if epoch:
                    # Logs count fractional epochs (HF: 0.25); the trace holds the epoch number.
                    if not math.isfinite(value) or value < 0:
                        continue
                    value = int(value)
                _step_row(rows, step)[target] = value
    if bad_steps:
        problems.append(Problem(log.path, f"{bad_steps} points at a negative step were skipped", severity="warning"))

    fields = sorted(f for f in claimed if not f.startswith("layers."))
    for stat in sorted({t.split(".")[1] for _, t in layer_routes}):
        fields.append(f"layers.{stat} ({len(layers)} layers)")
    header = build_header(log, fields, ignored, layers)
    events = []
    if log.status is not None:
        last = max(rows) if rows else None
        events.append(RunEndEvent(status=log.status, step=last, steps=len(rows)))
    step_records = [rows[s] for s in sorted(rows)]
    eval_records = [evals[k] for k in sorted(evals, key=lambda k: (k[1], k[0]))]
    return ImportedRun(header=header, steps=step_records, evals=eval_records, events=events, fields=fields,
                       ignored=ignored, problems=problems, source=log.source, path=log.path)


def layer_of(param: str) -> str:
    """The layer a per-parameter tag belongs to: 'net.0.weight' -> 'net.0'; a layer's own name as is."""
    head, dot, last = param.rpartition(".")
    if not dot:
        head, dot, last = param.rpartition("/")
    return head if dot and head and last.lower() in _PARAM_SUFFIXES else param


def _add_layer_stats(log: ScalarLog, layer_routes: list[tuple[str, str]], rows: dict[int, dict]) -> list[str]:
    """Per-layer tags -> each step's ``layers`` arrays (aligned with the returned layer names).

    A layer's parameters are combined as the norm of their norms (the L2 norm over the layer's
    parameters, what a recorder measures); update ratios, which do not combine, keep the largest.
    A layer a step did not log is null (not measured) in that step's array.
    """
    if not layer_routes:
        return []
    values: dict[tuple[str, str], dict[int, float]] = {}  # (stat, layer) -> step -> value
    for name, target in layer_routes:
        _, stat, param = target.split(".", 2)
        slot = values.setdefault((stat, layer_of(param)), {})
        for step, value in zip(*log.series[name]):
            if step < 0:
                continue
            if step not in slot:
                slot[step] = value if stat == "update_ratio" else value * value
            elif stat == "update_ratio":
                slot[step] = max(slot[step], value)
            else:
                slot[step] += value * value
    layers = _forward_order(log, layer_routes)
    stats = sorted({stat for stat, _ in values})
    steps = sorted({step for slot in values.values() for step in slot})
    for step in steps:
        row = _step_row(rows, step)
        arrays = {}
        for stat in stats:
            array = []
            for layer in layers:
                value = values.get((stat, layer), {}).get(step)
                if value is not None and stat != "update_ratio":
                    value = math.sqrt(value) if value >= 0 else value
                array.append(value)
            if any(v is not None for v in array):
                arrays[stat] = array
        row["layers"] = arrays
    return layers


def _forward_order(log: ScalarLog, layer_routes: list[tuple[str, str]]) -> list[str]:
    """The layers in the order the log first names them: a script logs its parameters in forward
    order (``named_parameters()``). A log that sorted its names (a CSV's columns) gets natural order
    ('net.2' before 'net.10') instead, the closest it keeps to the model's."""
    from diag.adapters.importers.discover import _natural

    position = {name: i for i, name in enumerate(log.series)}
    first: dict[str, int] = {}
    for name, target in sorted(layer_routes, key=lambda route: position[route[0]]):
        first.setdefault(layer_of(target.split(".", 2)[2]), position[name])
    layers = sorted(first, key=first.get)
    return sorted(layers, key=_natural) if layers == sorted(layers) else layers


def _clean(name: str) -> str:
    from diag.adapters.importers.names import clean_name

    return clean_name(name)


def build_header(log: ScalarLog, fields: list[str], ignored: list[str], layers: list[str] = ()) -> Header:
    """The run's header: where it came from, which fields it has, what its hyper-parameters say."""
    hp = {k.lower(): v for k, v in log.hparams.items()}
    optimizer = None
    lr = _first(hp, _LR_KEYS, number=True)
    name = _first(hp, _OPTIMIZER_KEYS, number=False)
    if lr is not None or name is not None:
        hyper = {"learning_rate": lr} if lr is not None else {}
        for key in _HYPER_KEYS:
            value = _first(hp, (key,), number=True)
            if value is not None:
                hyper[key] = value
        optimizer = OptimizerInfo(name=_optimizer_name(name) if name else "unknown", hyperparameters=hyper)
    batch = _first(hp, _BATCH_KEYS, number=True)
    seed = _first(hp, _SEED_KEYS, number=True)
    tags = {}
    for key, value in list(log.hparams.items())[:_HPARAM_TAGS]:
        tags[f"hparam.{key}"] = value
    recording = {
        "imported_from": log.source,
        "source": SOURCE_TITLES[log.source],
        "source_path": log.path,
        "fields": ", ".join(fields),
        "step_unit": log.step_unit,
    }
    if ignored:
        recording["ignored"] = ", ".join(sorted(ignored))
    return Header(
        run_id=log.run, framework=log.framework or "unknown", optimizer=optimizer,
        layers=[LayerInfo(name=name) for name in layers],
        batch_size=int(batch) if batch is not None and batch >= 0 and float(batch).is_integer() else None,
        seed=int(seed) if seed is not None and float(seed).is_integer() else None,
        recording=recording, tags=tags,
    )


def _first(hp: dict, keys, *, number: bool):
    for key in keys:
        value = hp.get(key)
        if value is None:
            continue
        if number and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        if not number and isinstance(value, str) and value:
            return value
    return None


def _optimizer_name(text: str) -> str:
    """'torch.optim.Adam', 'AdamW', 'adamw_torch' (HF) -> 'adam', 'adamw'."""
    base = text.rsplit(".", 1)[-1].lower()
    for known in ("adamw", "adam", "sgd", "rmsprop", "adagrad", "lamb", "lion", "adafactor"):
        if base.startswith(known):
            return known
    return base


def to_trace(run: ImportedRun):
    """The run as a columnar ``Trace``, through the same builder a recorded trace's lines go through."""
    from diag.trace.builder import TraceBuilder

    builder = TraceBuilder(run.path, capacity=len(run.steps) + 1)
    builder.start_shard(run.path, 0)
    builder.add_record(run.header)
    for number, record in enumerate(run.steps, 1):
        builder.feed(record, number, may_hold_null="layers" in record)  # a layer's null: not logged
    for number, record in enumerate(run.evals, 1):
        builder.feed(record, number)
    for event in run.events:
        builder.add_record(event)
    builder.problems[:0] = run.problems
    return builder.build()


def write_jsonl(run: ImportedRun, path: str | Path) -> Path:
    """Write the run as a ``diag.trace/1`` JSONL file (what ``diag import -o`` does)."""
    from pydantic import TypeAdapter

    from diag.trace.records import Record
    from diag.trace.writer import TraceWriter

    adapter = TypeAdapter(Record)
    path = Path(path)
    if path.exists():
        path.unlink()  # TraceWriter appends; an import replaces
    with TraceWriter(path, flush_every=10_000) as writer:
        writer.write(run.header)
        # Steps and evals in step order, as a recorder would have written them.
        merged = sorted([(r["step"], 0, i) for i, r in enumerate(run.steps)]
                        + [(r["step"], 1, i) for i, r in enumerate(run.evals)])
        for _, kind, index in merged:
            raw = run.steps[index] if kind == 0 else run.evals[index]
            writer.write(adapter.validate_python(raw))
        for event in run.events:
            writer.write(event)
    return path
