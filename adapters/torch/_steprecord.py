"""A step record (as a dict in the field names of ``diag.trace.records.Step``) from the numbers
fetched to the host; sums of squares become norms, sums become means and standard deviations."""

from __future__ import annotations

import math

from diag.adapters.torch._encode import jfloat, jfloats
from diag.adapters.torch._layers import SATURATING, ZERO_ACTIVATIONS, LayerPlan
from diag.adapters.torch._stats import batch_summary, moments, nonfinite_count
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


def activation_columns(plan: LayerPlan, table: list[float], output_rows: dict, act_rows: dict, outputs: dict) -> dict:
    """The step record's ``activations`` object from the fetched ``(L, 4)`` table.

    Args:
      plan: layers in forward order.
      table: per layer: sum and sum of squares of its output, zero and saturated counts of its
        nonlinearity's output.
      output_rows, act_rows: ``id(module) -> (tensor, entries)`` as measured by the hooks (which
        layers were measured, over how many entries).
      outputs: ``id(module) -> output`` held this step (for an exact non-finite count), if any.
    """
    mean, std, zero, saturation, nonfinite = [], [], [], [], []
    for i, layer in enumerate(plan.layers):
        key = id(layer.module)
        total, total_sq, zeros, saturated = table[4 * i : 4 * i + 4]
        out = output_rows.get(key)
        if out is None:
            mean.append(None), std.append(None), nonfinite.append(None)
        else:
            m, sd = moments(total, total_sq, out[1])
            mean.append(jfloat(m)), std.append(jfloat(sd))
            finite = math.isfinite(total) and math.isfinite(total_sq)
            held = outputs.get(key)
            nonfinite.append(0 if finite else (nonfinite_count(held) if held is not None else "NaN"))
        act = act_rows.get(key) if layer.activation else None
        n_act = act[1] if act is not None else 0
        zero.append(jfloat(zeros / n_act) if act is not None and layer.activation in ZERO_ACTIVATIONS else None)
        saturation.append(jfloat(saturated / n_act) if act is not None and layer.activation in SATURATING else None)
    columns = {"mean": mean, "std": std, "zero_fraction": zero, "saturation_fraction": saturation,
               "nonfinite": nonfinite}
    return {name: values for name, values in columns.items() if any(v is not None for v in values)}


