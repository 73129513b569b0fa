"""The guard stops doomed runs of a plain Flax NNX loop (TrainingDoomed) and never a healthy one,
through the hook the PyTorch recorder uses (adapters/_guard.py)."""

from __future__ import annotations

import jax.numpy as jnp
import optax
import pytest
from flax import nnx

from diag import Guard, TrainingDoomed, load_trace
from diag.adapters.flax import Recorder
from diag.guard import guard_notes
from tests.guard_runs import CLASSES, FEATURES, NAN_ONSET, batch_indices, learning_rate, make_data, poison


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(FEATURES, 32, rngs=rngs)
        self.l2 = nnx.Linear(32, CLASSES, rngs=rngs)

    def __call__(self, x):
        return self.l2(nnx.relu(self.l1(x)))


def fit_flax(path, fault: str, steps: int, *, guard=True) -> int:
    """The NNX tutorial's loop with the recorder; returns the steps run."""
    x_all, y_all = make_data()
    model = MLP(nnx.Rngs(0))
    rec = Recorder(path, model, task="classification", num_classes=CLASSES, guard=guard, handle_signals=False)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.adam(learning_rate(fault))), wrt=nnx.Param)

    @rec.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        loss, grads = rec.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss, batch=x, labels=y)

    ran = 0
    with rec:
        for step, rows in enumerate(batch_indices(steps, len(x_all))):
            x = poison(x_all[rows], step, fault)
            rec.record(step, train_step(model, optimizer, jnp.asarray(x), jnp.asarray(y_all[rows])))
            ran += 1
    return ran


def test_healthy_flax_loop_is_never_stopped(tmp_path):
    guard = Guard(every=25)
    assert fit_flax(tmp_path / "run.jsonl", "healthy", 200, guard=guard) == 200
    # Judged every 25 decoded steps (the last steps are decoded at close, after the loop).
    assert guard.checks >= 5 and not guard.stopped
    assert guard_notes(load_trace(tmp_path / "run.jsonl").events) == []


def test_data_turning_nan_raises_training_doomed_within_a_few_steps_and_says_why_once(tmp_path, capsys):
    path = tmp_path / "run.jsonl"
    with pytest.raises(TrainingDoomed) as caught:
        fit_flax(path, "nan_data", 200)
    doomed = caught.value
    assert NAN_ONSET <= doomed.step <= NAN_ONSET + 5
    assert doomed.cause in ("nan_in_input_data", "nonfinite_values")
    trace = load_trace(path)
    notes = guard_notes(trace.events)
    assert len(notes) == 1 and doomed.cause in notes[0]
    assert trace.events_of("run_end")[-1].status == "stopped" and not trace.events_of("exception")
    assert capsys.readouterr().err.count("diag guard:") == 1
