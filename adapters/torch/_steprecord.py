"""A step record (as a dict in the field names of ``diag.trace.records.Step``) from the numbers
fetched to the host; sums of squares become norms, sums become means and standard deviations."""

from __future__ import annotations

import math

from diag.adapters.torch._encode import jfloat, jfloats
from diag.adapters.torch._layers import SATURATING, ZERO_ACTIVATIONS, LayerPlan
from diag.adapters.torch._stats import activation_fraction, batch_summary, moments, nonfinite_count
from diag.trace.measured import measured_fields


def step_record(step: int, now: float, got: dict[str, list[float]], *, epoch, lrs, stepped, activations,
                inputs, labels, label_kind) -> dict:
    """The step record of one optimizer step.

    Args:
      step: step index.
      now: wall-clock time.
      got: the fetched parts by name: loss, grad_sq, param_sq, update_sq (per layer), input,
        labels, scale.
      epoch: epoch, or None.
      lrs: learning rate per parameter group used by the step.
      stepped: whether the optimizer stepped (False: skipped).
      activations: the ``activations`` object (:func:`activation_columns`), or None.
      inputs, labels: the batch tensors, for exact non-finite counts on a bad step.
      label_kind: 'classes' (entropy, distinct) or 'values' (batch statistics).

    Returns:
      A dict ready for :func:`diag.adapters.torch._encode.encode_line`.
    """
    grad_sq = got.get("grad_sq")
    record: dict = {
        "kind": "step",
        "step": step,
        "epoch": epoch,
        "time": now,
        "loss": jfloat(got["loss"][0]),
        "lr": lrs[0],
        "lr_per_group": lrs if len(lrs) > 1 else None,
        "skipped": not stepped,
    }
    if "clip_norm" in got:  # the norm clip_grad_norm_ saw; grad_norm is what the optimizer used
        record["grad_norm_before_clip"] = jfloat(got["clip_norm"][0])
    measured = measured_fields(grad_sq=grad_sq, param_sq=got.get("param_sq"),
                               update_sq=got.get("update_sq") if "param_sq" in got else None)
    for name in ("grad_norm", "param_norm", "update_norm"):
        if name in measured:
            record[name] = jfloat(measured[name])
    record["layers"] = {k: jfloats(v) for k, v in measured["layers"].items()} if "layers" in measured else None
    record["activations"] = activations
    if "input" in got:
        record["input"] = {k: jfloat(v) for k, v in batch_summary(got["input"], inputs).items()}
    if "labels" in got:
        if label_kind == "classes":
            entropy, distinct = got["labels"]
            record["labels"] = {"label_entropy": jfloat(entropy), "distinct_labels": int(distinct)}
        else:
            record["labels"] = {k: jfloat(v) for k, v in batch_summary(got["labels"], labels).items()}
    if "scale" in got:
        record["loss_scale"] = jfloat(got["scale"][0])
    return record


def activation_columns(plan: LayerPlan, values: list[float], order: list[tuple[int, str]], output_rows: dict,
                       act_rows: dict, outputs: dict) -> dict:
    """The step record's ``activations`` object from the fetched activation statistics.

    Args:
      plan: layers in forward order.
      values: the fetched vector: per entry of ``order``, the sum and sum of squares of a layer's
        output ('out') or its nonlinearity's sign count ('act'); 'act?' has no value.
      order: ``(layer index, 'out' | 'act' | 'act?')`` in the order of ``values``.
      output_rows: ``id(module) -> (sum, sum of squares, entries)`` as measured by the hooks.
      act_rows: ``id(module) -> (activation name, sign count, entries)`` as measured by the hooks.
      outputs: ``id(module) -> output`` held this step (for an exact non-finite count), if any.
    """
    size = len(plan.layers)
    mean, std, zero, saturation, nonfinite = ([None] * size for _ in range(5))
    fetched = iter(values)
    for i, what in order:
        layer = plan.layers[i]
        key = id(layer.module)
        if what == "out":
            total, total_sq = next(fetched), next(fetched)
            m, sd = moments(total, total_sq, output_rows[key][2])
            mean[i], std[i] = jfloat(m), jfloat(sd)
            finite = math.isfinite(total) and math.isfinite(total_sq)
            held = outputs.get(key)
            nonfinite[i] = 0 if finite else (nonfinite_count(held) if held is not None else "NaN")
            continue
        measured_as, _, n = act_rows[key]
        value = next(fetched) if what == "act" else float("nan")
        if layer.activation in ZERO_ACTIVATIONS:
            zero[i] = jfloat(activation_fraction(layer.activation, measured_as, value, n))
        elif layer.activation in SATURATING:
            saturation[i] = jfloat(activation_fraction(layer.activation, measured_as, value, n))
    columns = {"mean": mean, "std": std, "zero_fraction": zero, "saturation_fraction": saturation,
               "nonfinite": nonfinite}
    return {name: values for name, values in columns.items() if any(v is not None for v in values)}
