"""The first NaN/Inf of a run is traced to the tensor that produced it, in computation order.

One small MLP trains with a fault planted at one step: a NaN in the input batch, an overflow
between two layers, a loss of log(0), or a gradient of sqrt at 0. The recorder measures every
second step; faults on the other steps are localized by re-running that step with measurements.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from diag.adapters.flax import Recorder
from diag.trace import load_trace


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(6, 8, rngs=rngs)
        self.l2 = nnx.Linear(8, 8, rngs=rngs)
        self.head = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x, boost):
        h = nnx.relu(self.l1(x)) * boost  # boost=inf overflows what l2 receives
        return self.head(nnx.relu(self.l2(h)))


def train_with_fault(path, fault: str, at: int, steps: int = 5):
    model = MLP(nnx.Rngs(0))
    rec = Recorder(path, model, task="classification", num_classes=3, every=2)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.sgd(0.05)), wrt=nnx.Param)

    @rec.jit
    def step(model, optimizer, x, y, boost, log_arg, sqrt_shift):
        def loss_fn(m):
            logits = m(x, boost)
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
            # log(1) = 0 normally; log(0) = -inf makes only the loss non-finite.
            # sqrt(1) normally; sqrt(0) is finite but its derivative is not: only gradients go bad.
            return ce + jnp.log(log_arg) + 1e-9 * jnp.sqrt(logits[0, 0] - logits[0, 0] + sqrt_shift)

        loss, grads = rec.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss, batch=x, labels=y)

    rng = np.random.default_rng(0)
    with rec:
        for i in range(steps):
            x = rng.normal(size=(16, 6)).astype(np.float32)
            y = rng.integers(0, 3, size=16)
            boost, log_arg, sqrt_shift = 1.0, 1.0, 1.0
            if i == at:
                if fault == "input":
                    x[3, 2] = np.nan
                boost = np.inf if fault == "activation" else boost
                log_arg = 0.0 if fault == "loss" else log_arg
                sqrt_shift = 0.0 if fault == "gradient" else sqrt_shift
            rec.record(i, step(model, optimizer, jnp.asarray(x), jnp.asarray(y), boost, log_arg, sqrt_shift))
    return load_trace(path)


CASES = [
    # fault, step it is planted at (even steps are measured, odd ones re-run), tensor, layer
    ("input", 2, "input", None),
    ("input", 3, "input", None),
    ("activation", 1, "activation", "l2"),
    ("loss", 3, "loss", None),
    ("gradient", 1, "gradient", "head"),
]


@pytest.mark.parametrize("fault,at,tensor,layer", CASES, ids=[f"{c[0]}-step{c[1]}" for c in CASES])
def test_first_nonfinite_tensor_is_named_with_its_step(tmp_path, fault, at, tensor, layer):
    trace = train_with_fault(tmp_path / "run.jsonl", fault, at)
    events = trace.events_of("nonfinite")
    assert len(events) == 1, events
    event = events[0]
    assert (event.step, event.tensor, event.layer) == (at, tensor, layer), event.message
    assert str(at) in event.message


def test_steps_before_the_fault_stay_the_last_good_step_and_later_steps_are_still_written(tmp_path):
    trace = train_with_fault(tmp_path / "run.jsonl", "activation", at=3, steps=6)
    loss = trace.series("loss")
    assert np.isfinite(loss.values[:3]).all() and not np.isfinite(loss.values[3:]).any()
    assert list(loss.steps) == list(range(6))
