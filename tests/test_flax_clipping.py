"""Gradient clipping in a Flax run leaves the same evidence as in a PyTorch one: the raw norm
(``grad_norm_before_clip``), the bound (header ``grad_clip``) and the norm the optimizer used
(``grad_norm``), so a clipped healthy run reads apart from exploding gradients in both frameworks.

The loop is the Flax NNX tutorial's, with ``optax.clip_by_global_norm`` first in an ``optax.chain``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from diag.adapters.flax import Recorder
from diag.engine.facts import run_context
from diag.trace import load_trace

MAX_NORM = 0.5


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(10, 32, rngs=rngs)
        self.head = nnx.Linear(32, 3, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.l1(x)))


def fit(path, tx, every=2):
    model = MLP(nnx.Rngs(0))
    rec = Recorder(path, model, task="classification", num_classes=3, every=every, handle_signals=False)
    optimizer = nnx.Optimizer(model, rec.wrap(tx), wrt=nnx.Param)
    raw = []

    @rec.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
        loss, grads = rec.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return optax.tree.norm(grads), rec.stats(optimizer, loss)

    key = jax.random.PRNGKey(0)
    with rec:
        for step in range(6):
            key, kx, ky = jax.random.split(key, 3)
            x, y = jax.random.normal(kx, (32, 10)) * 5, jax.random.randint(ky, (32,), 0, 3)
            norm, stats = train_step(model, optimizer, x, y)
            raw.append(float(norm))
            rec.record(step, stats)
    return load_trace(path), raw


def test_the_raw_norm_the_bound_and_the_clipped_norm_are_recorded(tmp_path):
    trace, raw = fit(tmp_path / "run.jsonl", optax.chain(optax.clip_by_global_norm(MAX_NORM), optax.sgd(0.5)))
    before = trace.series("grad_norm_before_clip").values
    assert before.tolist() == pytest.approx(raw, rel=1e-4)
    assert (before > MAX_NORM).all()  # the test clips on every step
    assert trace.series("grad_norm").values.tolist() == pytest.approx([MAX_NORM] * len(raw), rel=1e-4)
    assert trace.header.optimizer.hyperparameters["grad_clip"] == MAX_NORM
    assert run_context(trace)["clipped"] is True


@pytest.mark.parametrize("every", [1, 2])
def test_per_layer_gradient_norms_of_a_clipped_step_add_up_to_the_bound(tmp_path, every):
    trace, _ = fit(tmp_path / "run.jsonl", optax.chain(optax.clip_by_global_norm(MAX_NORM), optax.sgd(0.5)), every)
    matrix = trace.layer_matrix("layers.grad_norm")
    assert len(matrix.steps) == 6 // every  # the measuring steps
    assert np.sqrt((matrix.values ** 2).sum(axis=1)).tolist() == pytest.approx([MAX_NORM] * len(matrix.steps), rel=1e-4)


def test_a_clip_after_the_optimizer_clips_updates_not_gradients(tmp_path):
    trace, raw = fit(tmp_path / "run.jsonl", optax.chain(optax.sgd(0.5), optax.clip_by_global_norm(MAX_NORM)))
    hp = trace.header.optimizer.hyperparameters
    assert "grad_clip" not in hp and hp["clip_norm"] == MAX_NORM
    assert "grad_norm_before_clip" not in trace.series_names()
    assert trace.series("grad_norm").values.tolist() == pytest.approx(raw, rel=1e-4)


def test_an_unclipped_run_records_no_clip(tmp_path):
    trace, raw = fit(tmp_path / "run.jsonl", optax.sgd(0.5))
    assert "grad_clip" not in trace.header.optimizer.hyperparameters
    assert "grad_norm_before_clip" not in trace.series_names()
    assert trace.series("grad_norm").values.tolist() == pytest.approx(raw, rel=1e-4)
