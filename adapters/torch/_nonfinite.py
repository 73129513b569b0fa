"""Where the first NaN/Inf of a step came from, in forward order.

After a planted Inf every layer's gradient is non-finite, so gradients cannot point at the
source: the first non-finite tensor in forward order does. The order checked: the input batch,
each layer's output and its nonlinearity's output, the loss, then the gradient where backward
first produced it (the layer nearest the output), then the parameters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from diag.adapters.torch._layers import LayerPlan, main_output
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


class _Watch:
    """Forward hooks on every module of a model for one replayed forward pass (see watch_modules)."""

    def __init__(self, model: nn.Module):
        self.names = {id(m): path or "root" for path, m in model.named_modules()}
        self.first: tuple[nn.Module, torch.Tensor] | None = None
        self.after: str | None = None
        self._depth = 0
        # Calls completed so far, innermost first: (module, depth it ran at, output finite).
        self._done: list[tuple[nn.Module, int, bool]] = []
        self._handles = [m.register_forward_pre_hook(self._on_call) for m in model.modules()]
        self._handles += [m.register_forward_hook(self._on_output) for m in model.modules()]

    def _on_call(self, module, args) -> None:
        self._depth += 1

    def _on_output(self, module, args, output) -> None:
        self._depth -= 1
        if self.first is not None:
            return
        out, _ = main_output(output)
        finite_out = out is None or not out.is_floating_point() or bool(torch.isfinite(out).all())
        self._done.append((module, self._depth, finite_out))
        if finite_out:
            return
        with torch.no_grad():
            inputs = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
            if all(bool(torch.isfinite(a).all()) for a in inputs):
                self.first = (module, out.detach())
                self.after = self._last_finite_child()

    def _last_finite_child(self) -> str | None:
        # The direct children of the module just found ran at the next depth, since its call began
        # (after the last call at its own depth or shallower). Those before the first one with a
        # non-finite output returned finite outputs: the value was made in the module's own code
        # after the last of them (a functional op such as torch.log or F.relu between two layers).
        depth = self._done[-1][1]
        children = []
        for module, d, finite in reversed(self._done[:-1]):
            if d <= depth:
                break
            if d == depth + 1:
                children.append((module, finite))
        before = []
        for module, finite in reversed(children):
            if not finite:
                break
            before.append(module)
        return self.names.get(id(before[-1])) if before else None

    def stop(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def event(self, *, step: int, time: float) -> NonFiniteEvent:
        module, out = self.first
        name, kind = self.names[id(module)], type(module).__name__
        bad = out[~torch.isfinite(out)]
        where = f"{name}'s own code after {self.after} returned finite outputs" if self.after else name
        return NonFiniteEvent(step=step, time=time, tensor="activation", layer=name, module_type=kind,
                              value=float(bad[0]), after=self.after,
                              message=f"{bad.numel()} non-finite outputs made by {where} ({kind}) from finite inputs")


def watch_modules(model: nn.Module) -> _Watch:
    """Watch every module (parameter-free ones included) during one forward pass.

    Forward hooks fire when a module's forward returns, so children report before their parent:
    the first module whose output is non-finite while its floating-point inputs were finite is
    the innermost place that created the value, a ``Softmax`` or a ``log`` in a custom module's
    ``forward`` (then that module is named) rather than the next layer with parameters.

    Example:
      >>> class Log(nn.Module):
      ...     def forward(self, x):
      ...         return torch.log(x)
      >>> model = nn.Sequential(nn.Linear(2, 2), Log(), nn.Linear(2, 1))
      >>> with torch.no_grad():
      ...     _ = model[0].weight.fill_(-1.0), model[0].bias.zero_()
      >>> watch = watch_modules(model); _ = model(torch.ones(1, 2)); watch.stop()
      >>> watch.event(step=0, time=0.0).layer
      '1'
    """
    return _Watch(model)
