"""A NaN born in the backward pass under a finite loss, between measured steps, is reported, never raised.

An Elman network reads a sequence holding one +Inf (a ratio with a zero count): tanh saturates, so
the forward pass and the loss stay finite, but the gradient is Inf * 0 = NaN. The recorder measures
every 25th step, so the step is an unmeasured one; the recorder must name the first non-finite value
from what it did measure and let the training loop go on (it once raised AttributeError there).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax
import pytest
from flax import nnx

from diag.adapters.flax import Recorder
from diag.trace import load_trace


class Elman(nnx.Module):
    def __init__(self, rngs):
        self.inp = nnx.Linear(4, 16, rngs=rngs)
        self.rec = nnx.Linear(16, 16, use_bias=False, rngs=rngs)
        self.head = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        xs = self.inp(x)
        h = jnp.zeros((x.shape[0], 16))
        for t in range(x.shape[1]):
            h = jnp.tanh(xs[:, t] + self.rec(h))
        return self.head(h)


# localize=False: no re-run, as when the step's inputs are no longer held (decoded more than
# max_snapshots steps after it ran); the recorder then has only the step's own global numbers.
@pytest.mark.parametrize("localize", [True, False], ids=["re-run", "no-re-run"])
def test_a_nan_gradient_under_a_finite_loss_on_an_unmeasured_step_is_an_event_not_a_crash(tmp_path, localize):
    path = tmp_path / "rnn.jsonl"
    model = Elman(nnx.Rngs(0))
    rec = Recorder(path, model, task="classification", num_classes=3, every=25, localize=localize)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.sgd(0.05)), wrt=nnx.Param)

    @rec.jit
    def step(model, optimizer, x, y):
        loss, grads = rec.value_and_grad(
            lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss, batch=x, labels=y)

    y = jnp.arange(8) % 3
    with rec:
        for i in range(4):
            x = jnp.linspace(-1.0, 1.0, 8 * 6 * 4).reshape(8, 6, 4)
            if i == 1:
                x = x.at[2, 3, 1].set(jnp.inf)
            rec.record(i, step(model, optimizer, x, y))

    trace = load_trace(path)
    assert list(trace.series("loss").steps) == [0, 1, 2, 3]  # the loop ran on; every step recorded
    (event,) = trace.events_of("nonfinite")
    assert event.step == 1
    assert event.tensor in ("input", "gradient", "update")
    assert trace.events_of("run_end")[0].status == "completed"
