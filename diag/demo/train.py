"""Train one demo scenario with the Flax recorder on: a complete, ordinary NNX training loop.

This file doubles as the example of the recorder in a real loop: the lines marked ``# diag``
are all that recording adds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diag.adapters.flax import Recorder, current_scale, dynamic_loss_scale
from diag.data_probe import probe_splits
from diag.demo.scenarios import Scenario

ACTIVATIONS = {"relu": nnx.relu, "sigmoid": nnx.sigmoid, "tanh": jnp.tanh}


class MLP(nnx.Module):
    """Hidden layers with one nonlinearity, then a linear head producing logits."""

    def __init__(self, sizes, num_classes, *, activation="relu", bias_init=0.0, kernel_scale=1.0,
                 dtype=None, param_dtype=jnp.float32, rngs):
        init = nnx.initializers.variance_scaling(kernel_scale**2, "fan_in", "truncated_normal")
        self.layers = nnx.List([
            nnx.Linear(a, b, kernel_init=init, bias_init=nnx.initializers.constant(bias_init),
                       dtype=dtype, param_dtype=param_dtype, rngs=rngs)
            for a, b in zip(sizes[:-1], sizes[1:])
        ])
        self.head = nnx.Linear(sizes[-1], num_classes, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.activation = activation

    def __call__(self, x):
        act = ACTIVATIONS[self.activation]
        for layer in self.layers:
            x = act(layer(x))
        return self.head(x)


def run_scenario(s: Scenario, out: str | Path, *, steps: int | None = None, seed: int = 0,
                 every: int = 5, eval_every: int = 10,
                 progress: Callable[[int, int, float], None] | None = None) -> Path:
    """Train scenario ``s`` and write its trace to ``out``.

    Args:
      s: the scenario.
      out: the trace file to write (replaced if it exists).
      steps: optimizer steps (default: the scenario's).
      seed: random seed of the model and the batch order.
      every: per-layer statistics every this many steps.
      eval_every: validation (and a fixed train subset) every this many steps.
      progress: called as ``progress(step, steps, loss)`` after each step.

    Returns:
      The trace path.
    """
    out = Path(out)
    if out.exists():
        out.unlink()
    steps = steps or s.steps
    d = s.data()
    dtype = jnp.dtype(s.dtype)
    compute = None if s.dtype == s.param_dtype else dtype
    in_dtype = dtype  # inputs enter in the compute dtype
    model = MLP((d.x_train.shape[1], *s.hidden), d.num_classes, activation=s.activation, bias_init=s.bias_init,
                kernel_scale=s.kernel_scale, dtype=compute, param_dtype=jnp.dtype(s.param_dtype),
                rngs=nnx.Rngs(seed))
    rec = Recorder(out, model, task="classification", num_classes=d.num_classes,  # diag
                   loss_kind="softmax_cross_entropy", seed=seed, every=every, batch_size=s.batch_size,
                   steps_planned=steps, model_name=f"MLP ({s.name} demo)",
                   tags={"demo": s.name, "planted_cause": s.expected_cause})
    tx = optax.adam(s.lr) if s.optimizer == "adam" else optax.sgd(s.lr)
    if s.loss_scaling:
        tx = dynamic_loss_scale(tx, init_scale=2.0**15, period=50)
    tx = rec.wrap(tx)  # diag (outside the loss scaler: it records the scale each step used)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    def loss_of(logits, y):
        return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), y).mean()

    @rec.jit  # diag (was nnx.jit)
    def train_step(model, optimizer, x, y):
        scale = current_scale(optimizer) if s.loss_scaling else 1.0

        def loss_fn(model):
            loss = loss_of(model(x.astype(in_dtype)), y)
            return loss * scale, loss

        (_, loss), grads = rec.value_and_grad(loss_fn, has_aux=True)(model)  # diag (was nnx.value_and_grad)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss, batch=x, labels=y)  # diag

    @nnx.jit
    def evaluate(model, x, y):
        logits = model(x.astype(in_dtype))
        return loss_of(logits, y), jnp.mean(jnp.argmax(logits, -1) == y)

    rng = np.random.default_rng(seed)
    n = len(d.x_train)
    order = rng.permutation(n)
    with rec:  # diag: flushes the trace on exceptions and signals too
        for record in probe_splits({"train": (d.x_train, d.y_train), "val": (d.x_val, d.y_val)},
                                   feature_names=d.feature_names):
            rec.write(record)  # diag: the data probe's facts
        at = 0
        for step in range(steps):
            if at + s.batch_size > n:
                order, at = rng.permutation(n), 0
            idx = order[at:at + s.batch_size]
            at += s.batch_size
            stats = train_step(model, optimizer, jnp.asarray(d.x_train[idx]), jnp.asarray(d.y_train[idx]))
            rec.record(step, stats, epoch=step * s.batch_size // n)  # diag
            if step % eval_every == 0 or step == steps - 1:
                for split, (x, y) in (("val", (d.x_val, d.y_val)), ("train_eval", (d.x_train[:512], d.y_train[:512]))):
                    loss, acc = jax.device_get(evaluate(model, jnp.asarray(x), jnp.asarray(y)))
                    rec.eval(step, split, loss=float(loss), metrics={"accuracy": float(acc)},  # diag
                             model_mode="eval", examples=len(x))
            if progress is not None:
                progress(step, steps, float(stats[0]) if step % 10 == 0 or step == steps - 1 else None)
    return out
