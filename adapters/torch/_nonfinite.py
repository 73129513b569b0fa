"""Where the first NaN/Inf of a step came from, in forward order.

After a planted Inf every layer's gradient is non-finite, so gradients cannot point at the
source: the first non-finite tensor in forward order does. The order checked: the input batch,
each layer's output and its nonlinearity's output, the loss, then the gradient where backward
first produced it (the layer nearest the output), then the parameters.
"""

from __future__ import annotations

import math

import torch

from diag.adapters.torch._layers import LayerPlan
from diag.trace.records import NonFiniteEvent


def first_nonfinite(plan: LayerPlan, got: dict, n_input: float, outputs: dict, act_outputs: dict, *, step: int,
                    time: float) -> NonFiniteEvent:
    """The ``nonfinite`` event of a step whose statistics held a NaN/Inf.

    Args:
      plan: layers in forward order.
      got: the step's fetched numbers (``loss``, ``grad_sq`` per layer).
      n_input: count of non-finite input entries.
      outputs, act_outputs: ``id(module) -> tensor``: each layer's output and its nonlinearity's
        output from this step's forward pass (held or replayed); may be empty.
      step, time: where and when.
    """
    if n_input:
        return NonFiniteEvent(step=step, time=time, tensor="input", value=float(n_input),
                              message=f"{int(n_input)} non-finite input entries")
    held = [(layer.name, out) for layer in plan.layers
            for out in (outputs.get(id(layer.module)), act_outputs.get(id(layer.module))) if out is not None]
    if held:
        with torch.no_grad():
            finite = torch.stack([torch.isfinite(out.detach()).all() for _, out in held]).tolist()
            for (name, out), ok in zip(held, finite):
                if not ok:
                    bad = out.detach()[~torch.isfinite(out.detach())]
                    return NonFiniteEvent(step=step, time=time, tensor="activation", layer=name, value=float(bad[0]),
                                          message=f"{bad.numel()} non-finite outputs of {name}")
    loss = got["loss"][0]
    if not math.isfinite(loss):
        return NonFiniteEvent(step=step, time=time, tensor="loss", value=loss,
                              message="activations were finite; the loss computation produced it")
    bad_layers = [name for name, v in zip(plan.names, got.get("grad_sq", ())) if not math.isfinite(v)]
    if bad_layers:
        return NonFiniteEvent(step=step, time=time, tensor="gradient", layer=bad_layers[-1], value=float("nan"),
                              message=f"non-finite gradients in {len(bad_layers)} layer(s); "
                              f"nearest the output: {bad_layers[-1]}")
    return NonFiniteEvent(step=step, time=time, tensor="parameter", message="non-finite parameters")
