"""Which tensor held the first NaN/Inf of a step, in the order the step computed them.

After a NaN appears, every gradient is non-finite, so "which gradients are NaN" says little; the
first non-finite tensor in computation order points at the source: the input batch, then per
layer in forward order its parameters and its output, then the loss, then the gradients (computed
last layer first), then the updates.
"""

from __future__ import annotations

import math

from diag.trace.records import NonFiniteEvent, Step


def _bad(v) -> bool:
    return v is not None and isinstance(v, float) and not math.isfinite(v)


def locate_nonfinite(step: Step, layer_names: list[str]) -> NonFiniteEvent | None:
    """The first non-finite tensor of a decoded step record, or None if everything is finite.

    Args:
      step: a step record with per-layer statistics (a measuring step).
      layer_names: the header's layers, forward order.

    Returns:
      A NonFiniteEvent naming the tensor kind and the layer, or None.

    Example:
      >>> from diag.trace.records import ActivationStats, LayerStats
      >>> s = Step(step=3, loss=float("nan"), activations=ActivationStats(nonfinite=[0.0, 12.0]),
      ...          layers=LayerStats(param_norm=[1.0, 1.0], grad_norm=[float("nan")] * 2))
      >>> e = locate_nonfinite(s, ["a", "b"]); (e.tensor, e.layer, e.step)
      ('activation', 'b', 3)
    """
    def event(tensor, layer=None, value=None, why=""):
        where = f" of layer {layer}" if layer else ""
        return NonFiniteEvent(step=step.step, tensor=tensor, layer=layer, value=value,
                              message=f"first non-finite value at step {step.step}: {tensor}{where}{why}")

    if step.input is not None and (step.input.nonfinite or 0) > 0:
        return event("input", value=step.input.nonfinite, why=f" ({step.input.nonfinite:g} entries)")
    acts = step.activations
    lay = step.layers
    for i, name in enumerate(layer_names):
        if lay is not None and lay.param_norm is not None and _bad(lay.param_norm[i]):
            return event("parameter", name)
        if acts is not None and acts.nonfinite is not None and (acts.nonfinite[i] or 0) > 0:
            return event("activation", name, acts.nonfinite[i], f" ({acts.nonfinite[i]:g} entries)")
        if acts is not None and acts.nonfinite is None and acts.mean is not None and _bad(acts.mean[i]):
            return event("activation", name)
    if _bad(step.loss):
        return event("loss", value=step.loss)
    if lay is not None and lay.grad_norm is not None:
        # Backpropagation runs from the last layer to the first: the last bad layer came first.
        for i in reversed(range(len(layer_names))):
            if _bad(lay.grad_norm[i]):
                return event("gradient", layer_names[i], why=" (first in backward order)")
    elif _bad(step.grad_norm):
        return event("gradient")
    if lay is not None and lay.update_norm is not None:
        for i, name in enumerate(layer_names):
            if _bad(lay.update_norm[i]):
                return event("update", name)
    return None


def origin_event(origin, step: int) -> NonFiniteEvent:
    """The ``nonfinite`` event of an :class:`~diag.adapters.flax.origin.Origin` (a watched re-run)."""
    layer = origin.layer or "root"
    where = f"in {layer}'s own code after {origin.after} returned finite outputs" if origin.after else f"by {layer}"
    element = f" ({origin.element})" if origin.element else ""
    return NonFiniteEvent(step=step, tensor="activation", layer=layer, module_type=origin.module_type,
                          value=origin.value, after=origin.after,
                          message=f"first non-finite value at step {step}: {origin.count} non-finite outputs{element} "
                                  f"made {where} ({origin.module_type}) from finite inputs")
