"""The Flax NNX runner of ``diag.preflight``: trains clones of an NNX module with an optax transformation.

Each session clones the module (``nnx.clone``) and starts the transformation's state fresh
(``tx.init``): the user's module is never updated and an optax transformation is pure, so nothing
the user passed changes. The learning-rate factor of the LR sweep scales the updates, which is the
learning rate for every optax optimizer (their last step multiplies by it). The step, the loss and
the forward pass are compiled once per runner and shared by every session.
"""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diag.preflight import rngs
from diag.preflight.runner import ParamGrad, RunnerBase, as_numpy, leaves, map_arrays, split_batch


def _torch_rngs():
    """torch's generators, when a torch DataLoader feeds the JAX model (torch already imported)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return (), ()
    return ((torch.Generator, "get_state", "set_state"),), ((torch.get_rng_state, torch.set_rng_state, torch.manual_seed),)


def _param_name(path) -> str:
    parts = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
    return "/".join(p for p in parts if p not in (".value", "value"))


class FlaxSession:
    """One clone of the module and a fresh optimizer state; see ``diag.preflight.runner.Session``."""

    def __init__(self, runner: "FlaxRunner"):
        self.runner = runner
        self.model = nnx.clone(runner.model)
        self.opt_state = runner.tx.init(nnx.state(self.model, nnx.Param))

    def _xy(self, batch):
        inputs, targets = split_batch(batch)
        return map_arrays(lambda a: jnp.asarray(as_numpy(a)), inputs), jnp.asarray(as_numpy(targets))

    def loss(self, batch) -> float:
        x, y = self._xy(batch)
        return float(self.runner._loss(self.model, x, y))

    def step(self, batch, lr_factor: float = 1.0) -> float:
        x, y = self._xy(batch)
        loss, self.opt_state = self.runner._step(self.model, self.opt_state, x, y, jnp.float32(lr_factor))
        self.runner.steps += 1
        return float(loss)

    def gradients(self, batch) -> tuple[float, list[ParamGrad]]:
        x, y = self._xy(batch)
        loss, grads = self.runner._grads(self.model, x, y)
        out = []
        for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
            g = np.asarray(g, dtype=np.float64)
            norm = float(np.sqrt(np.sum(np.square(g))))
            out.append(ParamGrad(name=_param_name(path), trainable=True, connected=True, norm=norm,
                                 finite=bool(np.isfinite(norm)), size=int(g.size)))
        return float(loss), out

    def outputs(self, batch) -> np.ndarray:
        x, _ = self._xy(batch)
        return np.asarray(leaves(self.runner._forward(self.model, x))[0], dtype=np.float32)

    def loss_of(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        return float(self.runner.loss_fn(jnp.asarray(outputs), jnp.asarray(targets)))


class FlaxRunner(RunnerBase):
    """Runs the preflight probes on clones of a Flax NNX module with an optax transformation."""

    framework = "flax"

    def __init__(self, model: nnx.Module, loss_fn, optimizer, train_batches):
        if isinstance(optimizer, nnx.Optimizer):
            optimizer = optimizer.tx  # its state is not reused: every probe starts from tx.init
        if not isinstance(optimizer, optax.GradientTransformation):
            raise TypeError(f"an NNX model needs an optax GradientTransformation; got {type(optimizer).__name__}")
        self.model, self.loss_fn, self.tx = model, loss_fn, optimizer
        self.steps = 0  # optimizer steps taken on clones, all probes together
        self._torch_types, self.extra_rngs = _torch_rngs()
        self._restore_data_rngs = rngs.held_generators(train_batches, extra_types=self._torch_types)
        tx = optimizer

        @nnx.jit
        def step(model, opt_state, x, y, factor):
            loss, grads = nnx.value_and_grad(lambda m: loss_fn(m(x), y))(model)
            params = nnx.state(model, nnx.Param)
            updates, opt_state = tx.update(grads, opt_state, params)
            updates = jax.tree.map(lambda u: u * factor.astype(u.dtype), updates)
            nnx.update(model, optax.apply_updates(params, updates))
            return loss, opt_state

        @nnx.jit
        def grads(model, x, y):
            return nnx.value_and_grad(lambda m: loss_fn(m(x), y))(model)

        @nnx.jit
        def loss(model, x, y):
            return loss_fn(model(x), y)

        @nnx.jit
        def forward(model, x):
            return model(x)

        self._step, self._grads, self._loss, self._forward = step, grads, loss, forward

    def session(self) -> FlaxSession:
        return FlaxSession(self)

    def isolated(self) -> AbstractContextManager:
        return self.seeded(None)

    def learning_rate(self) -> Optional[float]:
        """The learning rate, when the transformation was built with ``optax.inject_hyperparams``."""
        try:
            state = self.tx.init(nnx.state(self.model, nnx.Param))
        except Exception:  # pragma: no cover - a transformation that cannot init here
            return None
        for node in jax.tree_util.tree_leaves(state, is_leaf=lambda n: hasattr(n, "hyperparams")):
            hyper = getattr(node, "hyperparams", None)
            if isinstance(hyper, dict) and "learning_rate" in hyper:
                return float(hyper["learning_rate"])
        return None

    def determinism_notes(self) -> list[str]:
        if jax.default_backend() == "gpu":
            return ["XLA on GPU may reorder reductions (XLA_FLAGS=--xla_gpu_deterministic_ops=true)"]
        return []
