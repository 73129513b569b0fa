"""Where the first NaN was born, in a Flax NNX loop written as the NNX tutorial writes it.

The measured statistics cover layers with parameters; a NaN made by a plain function between
two layers (log of a sigmoid that underflowed) or by a parameter-free module (a division by a
zero sum) must be blamed on where it was made, not on the next layer with parameters. The
opt-in replay under ``jax.debug_nans`` names the primitive and the line of this file.
"""

from __future__ import annotations

import inspect

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from diag.adapters.flax import Recorder
from diag.trace import load_trace


class LogFeatures(nnx.Module):
    """log between two layers, written in the model's own ``__call__``."""

    def __init__(self, rngs):
        self.l1 = nnx.Linear(4, 8, rngs=rngs)
        self.l2 = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        h = jnp.log(nnx.sigmoid(self.l1(x)))  # sigmoid underflows to 0 for huge inputs: log -> -inf
        return self.l2(h)


class Normalize(nnx.Module):
    """A parameter-free module: each row divided by its sum (0/0 for an all-zero row)."""

    def __call__(self, h):
        return h / jnp.sum(h, axis=-1, keepdims=True)


class NormalizedMLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(4, 8, use_bias=False, rngs=rngs)  # a zero batch gives zero rows
        self.norm = Normalize()
        self.l2 = nnx.Linear(8, 3, rngs=rngs)

    def __call__(self, x):
        return self.l2(self.norm(nnx.relu(self.l1(x))))


LOG_LINE = inspect.getsourcelines(LogFeatures.__call__)[1] + 1
DIV_LINE = inspect.getsourcelines(Normalize.__call__)[1] + 1


def train(path, model, poison, at: int, *, every: int, replay: bool = False, steps: int = 4):
    """The NNX tutorial's loop with the recorder's four additions; batch ``at`` is poisoned."""
    rec = Recorder(path, model, task="classification", num_classes=3, every=every, replay_nonfinite=replay,
                   handle_signals=False)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.adam(1e-3)), wrt=nnx.Param)

    @rec.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            logits = model(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = rec.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss, batch=x, labels=y)

    rng = np.random.default_rng(0)
    with rec:
        for step in range(steps):
            x = rng.normal(size=(16, 4)).astype(np.float32)
            if step == at:
                x = poison(x)
            y = rng.integers(0, 3, size=16)
            rec.record(step, train_step(model, optimizer, jnp.asarray(x), jnp.asarray(y)))
    return load_trace(path)


def huge(x):
    return x * 1e5  # some of l1's outputs are hugely negative: their sigmoid is exactly 0


def zeros(x):
    return x * 0


# every=2: step 2 is a measuring step, step 1 is re-run to be localized.
@pytest.mark.parametrize("at", [1, 2])
def test_a_nan_made_by_a_plain_function_between_two_layers_is_blamed_on_the_code_after_the_first(tmp_path, at):
    trace = train(tmp_path / "run.jsonl", LogFeatures(nnx.Rngs(0)), huge, at, every=2)
    (event,) = trace.events_of("nonfinite")
    assert (event.step, event.tensor, event.layer, event.after) == (at, "activation", "root", "l1"), event.message
    assert event.module_type == "LogFeatures"
    assert not trace.events_of("nonfinite_replay")  # opt-in only


@pytest.mark.parametrize("at", [1, 2])
def test_a_nan_made_by_a_parameter_free_module_is_blamed_on_it(tmp_path, at):
    model = NormalizedMLP(nnx.Rngs(0))
    trace = train(tmp_path / "run.jsonl", model, zeros, at, every=2)
    (event,) = trace.events_of("nonfinite")
    assert (event.step, event.tensor, event.layer, event.module_type) == (at, "activation", "norm", "Normalize")
    assert event.after is None
    # The recorder's re-run touched nothing: the parameters are those the (NaN) update wrote.
    assert not np.isfinite(np.asarray(model.l2.kernel[...])).all()


@pytest.mark.parametrize("model_class,poison,operation,line", [
    (LogFeatures, huge, "log", LOG_LINE),
    (NormalizedMLP, zeros, "div", DIV_LINE),
], ids=["log", "div"])
def test_the_opt_in_replay_under_debug_nans_names_the_primitive_and_the_line_of_user_code(
        tmp_path, model_class, poison, operation, line):
    trace = train(tmp_path / "run.jsonl", model_class(nnx.Rngs(0)), poison, 1, every=2, replay=True)
    (replay,) = trace.events_of("nonfinite_replay")
    assert (replay.step, replay.tool, replay.operation) == (1, "jax.debug_nans", operation), replay.message
    assert replay.source.startswith(f"test_flax_nan_origin.py:{line} in __call__"), replay.source
