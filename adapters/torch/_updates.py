"""Update norms: how far the optimizer moved each layer, measured as cheaply as is exact.

Three methods, chosen once from the optimizer:

* ``sgd_grad``: plain SGD (no momentum, no weight decay) moves each parameter by exactly
  ``lr * grad``, so the update norm is ``lr`` times the gradient norm already measured before the
  step (SGD leaves the gradients as they are): free.
* ``sgd_momentum``: SGD with (non-Nesterov) momentum moves each parameter by ``lr * buf`` where
  ``buf`` is the momentum buffer after the step (weight decay and dampening are already folded into
  it): one fused norm over the buffers, no copy.
* ``snapshot``: every other optimizer (Adam, AdamW, RMSprop, ...) and any parameter stored in a
  low-precision dtype. A fused copy of the parameters before the step, subtracted in place after it.
  Adam's update could be rebuilt from its moments too, but that costs three or four fused passes
  with temporaries (no cheaper than the copy) and would miss what rounding did to the parameters,
  which is exactly what ``bf16_update_stagnation`` looks for: the difference of the parameters is
  the update that really happened.

All of them run only on the steps that record the costly statistics.
"""

from __future__ import annotations

import torch

from diag.adapters.torch import _foreach
from diag.adapters.torch._stats import norms_vector

_FULL_PRECISION = (torch.float32, torch.float64)


def choose_method(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> str:
    """The cheapest exact method for this optimizer (see the module docstring)."""
    if type(optimizer) is not torch.optim.SGD or any(p.dtype not in _FULL_PRECISION for p in params):
        return "snapshot"
    groups = optimizer.param_groups
    if any(g.get("nesterov") or g.get("differentiable") for g in groups):
        return "snapshot"
    if all(g.get("momentum", 0) == 0 and g.get("weight_decay", 0) == 0 for g in groups):
        return "sgd_grad"
    if all(g.get("momentum", 0) > 0 for g in groups):
        return "sgd_momentum"
    return "snapshot"


class UpdateMeter:
    """Measures per-parameter update norms around one optimizer step.

    Args:
      optimizer: the optimizer being recorded.
      params: the plan's parameters (forward order).
      keep_snapshot: keep the ``snapshot`` method's copy between steps and overwrite it in place
        (for a recorder that measures every step: the copy is in use every step anyway, and
        allocating it afresh each time makes the CPU allocator hand back and re-fault its pages,
        which slowed the optimizer's own temporaries too).
    """

    def __init__(self, optimizer, params, *, keep_snapshot=False):
        self.optimizer = optimizer
        self.params = params
        self.method = choose_method(optimizer, params)
        group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
        # Parameters the optimizer does not own never move: their learning rate is 0.
        self._group = [group_of.get(id(p)) for p in params]
        self.keep_snapshot = keep_snapshot
        self._snapshot: list[torch.Tensor] | None = None
        self._kept: list[torch.Tensor] | None = None
        self._had_grad: list[bool] = []
        self.scales: list[float] | None = None

    def before_step(self) -> None:
        """Called by the optimizer's step pre-hook on a recording step."""
        if self.method == "snapshot":
            # One fused call copies every parameter (no per-tensor clone loop).
            if self._kept is not None:
                _foreach.copy_(self._kept, self.params)
                self._snapshot = self._kept
            else:
                self._snapshot = _foreach.copies(self.params)
        else:
            self._had_grad = [p.grad is not None for p in self.params]

    def after_step(self, grad_norms: torch.Tensor) -> torch.Tensor:
        """Per-parameter update norms, called by the step post-hook; for the SGD methods they are
        still to be multiplied by :attr:`scales` (each parameter's learning rate at this step).

        Args:
          grad_norms: the per-parameter gradient norms measured before this step.
        """
        if self.method == "snapshot":
            snapshot, self._snapshot = self._snapshot, None
            _foreach.sub_(snapshot, self.params)
            if self.keep_snapshot:
                self._kept = snapshot
            self.scales = None
            return norms_vector(snapshot)
        self.scales = self._param_lrs()
        if self.method == "sgd_grad":
            # SGD leaves the gradients in place: the update is lr * grad, gradient by gradient.
            return grad_norms
        state = self.optimizer.state
        buffers = [state.get(p, {}).get("momentum_buffer") if had else None for p, had in zip(self.params, self._had_grad)]
        return norms_vector(buffers)

    def _param_lrs(self) -> list[float]:
        # Parameters without a gradient at the step did not move.
        groups = self.optimizer.param_groups
        return [float(groups[g]["lr"]) if g is not None and had else 0.0 for g, had in zip(self._group, self._had_grad)]


__all__ = ["UpdateMeter", "choose_method"]
