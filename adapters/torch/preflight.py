"""The PyTorch runner of ``diag.preflight``: trains copies of a module and its optimizer.

Every session deep-copies the model and the optimizer together (one copy, so the optimizer's
parameter groups point at the copied parameters, with its state), so the objects the user passed
are never stepped. The learning-rate factor of the LR sweep is applied to each parameter group of
the copy.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Optional

import numpy as np
import torch

from diag.preflight import rngs
from diag.preflight.runner import ParamGrad, RunnerBase, as_numpy, leaves, map_arrays, split_batch

_TORCH_RNG: rngs.GlobalRng = (torch.get_rng_state, torch.set_rng_state, torch.manual_seed)
# Below this many parameters one CPU thread is fastest: on a busy 2-core machine a small MLP's
# step took 93 ms with torch's default threads and 1.5 ms with one (measured, load 13).
SMALL_MODEL = 5_000_000


def _first_tensor(out) -> torch.Tensor:
    """The model's main output, when it returns a tuple or dict (the first tensor)."""
    if isinstance(out, torch.Tensor):
        return out
    return next(t for t in leaves(out) if isinstance(t, torch.Tensor))


class TorchSession:
    """One copy of the model and optimizer; see ``diag.preflight.runner.Session``."""

    def __init__(self, runner: "TorchRunner"):
        self.runner = runner
        self.model, self.optimizer = copy.deepcopy((runner.model, runner.optimizer))
        self.model.train()
        self.loss_fn = runner.loss_fn
        self._base_lrs = [group["lr"] for group in self.optimizer.param_groups]

    def _loss(self, batch):
        inputs, targets = split_batch(batch)
        return self.loss_fn(self.model(inputs), targets)

    def loss(self, batch) -> float:
        with torch.no_grad():
            return float(self._loss(batch))

    def step(self, batch, lr_factor: float = 1.0) -> float:
        for group, base in zip(self.optimizer.param_groups, self._base_lrs):
            group["lr"] = base * lr_factor
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(batch)
        loss.backward()
        self.optimizer.step()
        self.runner.steps += 1
        return float(loss.detach())

    def gradients(self, batch) -> tuple[float, list[ParamGrad]]:
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(batch)
        if loss.requires_grad:
            loss.backward()
        params = list(self.model.named_parameters())
        grads = [p.grad for _, p in params]
        present = [g for g in grads if g is not None]
        norms = iter(torch._foreach_norm(present) if present else [])  # one fused call
        out = []
        for (name, p), g in zip(params, grads):
            norm = float(next(norms)) if g is not None else 0.0
            out.append(ParamGrad(name=name, trainable=p.requires_grad, connected=g is not None, norm=norm,
                                 finite=bool(np.isfinite(norm)), size=p.numel()))
        self.optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()), out

    def outputs(self, batch) -> np.ndarray:
        inputs, _ = split_batch(batch)
        with torch.no_grad():
            return as_numpy(_first_tensor(self.model(inputs)).float())

    def loss_of(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        with torch.no_grad():
            return float(self.loss_fn(torch.from_numpy(np.ascontiguousarray(outputs)), torch.from_numpy(np.asarray(targets))))


class TorchRunner(RunnerBase):
    """Runs the preflight probes on copies of a PyTorch model and optimizer."""

    framework = "torch"
    extra_rngs = (_TORCH_RNG,)

    def __init__(self, model: torch.nn.Module, loss_fn, optimizer, train_batches):
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"a torch model needs a torch.optim.Optimizer; got {type(optimizer).__name__}")
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.steps = 0  # optimizer steps taken on copies, all probes together
        # Where the data pipeline's generators stand now, before the preflight reads a batch.
        self._restore_data_rngs = rngs.held_generators(train_batches, extra_types=((torch.Generator, "get_state", "set_state"),))

    def session(self) -> TorchSession:
        return TorchSession(self)

    @contextmanager
    def isolated(self):
        """Around the whole preflight: global generators and torch's thread count end as they were."""
        threads = torch.get_num_threads()
        small = sum(p.numel() for p in self.model.parameters()) < SMALL_MODEL
        try:
            if small and threads > 1:
                torch.set_num_threads(1)
            with self.seeded(None):
                yield
        finally:
            torch.set_num_threads(threads)

    def learning_rate(self) -> Optional[float]:
        lr = self.optimizer.param_groups[0].get("lr") if self.optimizer.param_groups else None
        return float(lr) if lr is not None else None

    def determinism_notes(self) -> list[str]:
        notes = []
        if torch.backends.cudnn.benchmark:
            notes.append("torch.backends.cudnn.benchmark is on")
        if torch.cuda.is_available() and not torch.are_deterministic_algorithms_enabled():
            notes.append("deterministic algorithms are off (torch.use_deterministic_algorithms)")
        return notes
