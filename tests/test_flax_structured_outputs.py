"""Flax layers whose output is a tuple or a dataclass get statistics of their main output, named
as the PyTorch adapter names them; ``nnx.RNN`` runs inside the recorder's jitted step.

The loop is the NNX tutorial's, with the recorder's four additions. References are computed with
the model's own modules on the same batch, before the step.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx, struct

from diag.adapters.flax import Recorder
from diag.trace import load_trace


@struct.dataclass
class HeadOutput:
    features: jax.Array
    logits: jax.Array


class Encoder(nnx.Module):
    """Returns (features, auxiliary) like many encoders: the first element is the main output."""

    def __init__(self, rngs):
        self.proj = nnx.Linear(3, 8, rngs=rngs)
        self.scale = nnx.Param(jnp.full((8,), 0.5))  # a parameter of its own: a layer

    def __call__(self, x):
        h = self.proj(x) * self.scale
        return jnp.tanh(h), jnp.mean(h * h)


class Head(nnx.Module):
    """Returns a dataclass, like Hugging Face model outputs: ``logits`` is measured."""

    def __init__(self, rngs):
        self.out = nnx.Linear(8, 2, rngs=rngs)
        self.shift = nnx.Param(jnp.full((2,), 0.25))

    def __call__(self, h):
        return HeadOutput(features=h, logits=self.out(h) + self.shift)


class SequenceClassifier(nnx.Module):
    def __init__(self, rngs):
        self.encoder = Encoder(rngs)
        self.rnn = nnx.RNN(nnx.GRUCell(8, 8, rngs=rngs), return_carry=True)  # (carry, outputs)
        self.head = Head(rngs)

    def __call__(self, x):
        h, _ = self.encoder(x)
        _, states = self.rnn(h)
        return self.head(states[:, -1]).logits


def test_tuple_dataclass_and_recurrent_outputs_are_measured_and_named(tmp_path):
    model = SequenceClassifier(nnx.Rngs(0))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(16, 5, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 2, size=16))
    h = model.encoder(x)[0]
    states = model.rnn(h)[1]
    reference = {"encoder": h, "rnn": states, "head": model.head(states[:, -1]).logits}

    rec = Recorder(tmp_path / "run.jsonl", model, task="classification", num_classes=2, every=1,
                   handle_signals=False)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.adam(1e-3)), wrt=nnx.Param)

    @rec.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        loss, grads = rec.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss, batch=x, labels=y)

    with rec:
        for step in range(3):
            rec.record(step, train_step(model, optimizer, x, y))
    trace = load_trace(tmp_path / "run.jsonl")
    layers = {layer.name: layer for layer in trace.header.layers}
    # Forward order; the RNN is one layer (its cell's parameters run inside a scan).
    assert list(layers) == ["encoder/proj", "encoder", "rnn", "head/out", "head"]
    assert {p.name for p in layers["rnn"].params} >= {"cell/dense_i/kernel", "cell/dense_h/kernel"}
    elements = {name: layer.output_element for name, layer in layers.items()}
    assert elements == {"encoder/proj": None, "encoder": "output[0]", "rnn": "output[1]", "head/out": None,
                        "head": "logits"}
    means = {name: trace.layer_series("activations.mean", name).values[0] for name in layers}
    for name in ("encoder", "rnn", "head"):
        assert means[name] == pytest.approx(float(jnp.mean(reference[name])), rel=1e-4), name
    assert np.isfinite(trace.series("grad_norm").values).all() and len(trace.series("loss").values) == 3
