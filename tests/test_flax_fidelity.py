"""The Flax trace is the truth of the run: checked against references computed beside an
ordinary training loop (the loop of the Flax NNX tutorial, with the recorder's four additions).

Every reference here is computed independently of the recorder: gradients with ``jax.grad`` on a
clone of the model, parameters read before and after the step, the loss scale from the loss
scaler's own state before the step.
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from diag.adapters.flax import Recorder, current_scale, dynamic_loss_scale
from diag.adapters.flax.loss_scale import WRONG_ORDER, LossScaleState
from diag.adapters.flax.transform import find_state
from diag.trace import load_trace


class MLP(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(4, 16, rngs=rngs)
        self.out = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.out(nnx.relu(self.hidden(x)))


def batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(jnp.asarray(rng.normal(size=(8, 4)), jnp.float32), jnp.asarray(rng.integers(0, 3, 8))) for _ in range(n)]


def norm(tree) -> float:
    return math.sqrt(sum(float(jnp.sum(jnp.asarray(a, jnp.float32) ** 2)) for a in jax.tree.leaves(tree)))


def params_of(model):
    return jax.tree.map(lambda a: np.array(a), nnx.to_pure_dict(nnx.state(model, nnx.Param)))


@pytest.mark.parametrize("global_norms", ["grad", "all"])
def test_global_norms_are_recorded_on_every_step_not_only_on_sampled_steps(tmp_path, global_norms):
    model = MLP(nnx.Rngs(0))
    rec = Recorder(tmp_path / "run.jsonl", model, every=25, handle_signals=False, global_norms=global_norms)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.adam(1e-2)), wrt=nnx.Param)

    @rec.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

        loss, grads = rec.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss)

    expected = []
    with rec:
        for step, (x, y) in enumerate(batches(6)):
            before = params_of(model)
            grads = jax.grad(lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(
                nnx.clone(model))
            rec.record(step, train_step(model, optimizer, x, y))
            after = params_of(model)
            expected.append((norm(nnx.state(grads, nnx.Param)), norm(before),
                             norm(jax.tree.map(lambda a, b: a - b, after, before))))
    trace = load_trace(tmp_path / "run.jsonl")
    expected = np.array(expected)
    np.testing.assert_allclose(trace.series("grad_norm").values, expected[:, 0], rtol=2e-4)
    assert trace.series("grad_norm").steps.tolist() == list(range(6))
    for k, name in ((1, "param_norm"), (2, "update_norm")):
        series = trace.series(name)
        # 'grad' (default): the parameter and update norms on the sampling schedule (step 0), as in PyTorch.
        steps = list(range(6)) if global_norms == "all" else [0]
        assert series.steps.tolist() == steps, name
        np.testing.assert_allclose(series.values, expected[steps, k], rtol=2e-4)
    # Per-layer detail stays on the sampling schedule: step 0 only.
    assert trace.layer_series("layers.grad_norm", "hidden").steps.tolist() == [0]


def _scaled_run(path, wrap_order):
    model = MLP(nnx.Rngs(0))
    rec = Recorder(path, model, every=2, handle_signals=False)
    tx = optax.sgd(0.1)
    if wrap_order == "recorder outside":
        optimizer = nnx.Optimizer(model, rec.wrap(dynamic_loss_scale(tx, init_scale=8.0, period=2)), wrt=nnx.Param)
    else:
        optimizer = nnx.Optimizer(model, dynamic_loss_scale(rec.wrap(tx), init_scale=8.0, period=2), wrt=nnx.Param)

    @rec.jit
    def train_step(model, optimizer, x, y, poison):
        scale = current_scale(optimizer)

        def loss_fn(model):
            loss = optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
            return loss * scale * poison, loss

        (_, loss), grads = rec.value_and_grad(loss_fn, has_aux=True)(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss)

    scales, true_grad_norms = [], []
    with rec:
        for step, (x, y) in enumerate(batches(5)):
            poison = jnp.float32(jnp.inf if step == 1 else 1.0)  # step 1 overflows
            scales.append(float(find_state(nnx.as_pure(optimizer.opt_state), LossScaleState).scale))
            grads = jax.grad(lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(
                nnx.clone(model))
            true_grad_norms.append(norm(nnx.state(grads, nnx.Param)))
            rec.record(step, train_step(model, optimizer, x, y, poison))
    return load_trace(path), scales, true_grad_norms


def test_loss_scale_is_the_scale_that_produced_the_steps_gradients_and_the_norm_is_unscaled(tmp_path):
    trace, scales, true_grad_norms = _scaled_run(tmp_path / "run.jsonl", "recorder outside")
    assert scales == [8.0, 8.0, 4.0, 4.0, 8.0]  # overflow halves it; two good steps double it
    assert trace.series("loss_scale").values.tolist() == scales
    assert trace.series("skipped").values.tolist() == [0, 1, 0, 0, 0]
    grad_norm = trace.series("grad_norm").values
    assert not np.isfinite(grad_norm[1])  # the overflowed step's gradient, unscaled: still Inf
    for step in (0, 2, 3, 4):  # measured (even) and unmeasured (odd) steps alike
        assert grad_norm[step] == pytest.approx(true_grad_norms[step], rel=1e-4)
    assert trace.header.loss_scaling == "dynamic"
    assert not trace.events_of("nonfinite")  # a skipped overflow is the loss scaler's business


def test_the_loss_scaler_wrapping_the_recorder_is_refused_with_the_right_order(tmp_path):
    with pytest.raises(ValueError, match=re.escape(WRONG_ORDER)):
        _scaled_run(tmp_path / "run.jsonl", "recorder inside")
    assert "rec.wrap(dynamic_loss_scale(" in WRONG_ORDER


class Reversed(nnx.Module):
    """Defined in one order, called in the other: only the first step reveals the forward order."""

    def __init__(self, rngs):
        self.b_second = nnx.Linear(16, 3, rngs=rngs)
        self.a_first = nnx.Linear(4, 16, rngs=rngs)

    def __call__(self, x):
        return self.b_second(nnx.relu(self.a_first(x)))


def test_the_header_is_on_disk_before_the_first_step_has_run_and_holds_the_forward_order(tmp_path):
    path = tmp_path / "run.jsonl"
    model = Reversed(nnx.Rngs(0))
    rec = Recorder(path, model, task="classification", num_classes=3, handle_signals=False)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.sgd(0.1)), wrt=nnx.Param)
    on_disk_while_compiling = []

    @rec.jit
    def train_step(model, optimizer, x, y):
        loss, grads = rec.value_and_grad(
            lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(model)
        optimizer.update(model, grads)
        stats = rec.stats(optimizer, loss)
        on_disk_while_compiling.append(path.read_text())  # traced once, before XLA compiles the step
        return stats

    with rec:
        for step, (x, y) in enumerate(batches(3)):
            rec.record(step, train_step(model, optimizer, x, y))
    assert '"kind":"header"' in on_disk_while_compiling[0]  # a run killed while compiling keeps it
    lines = path.read_text().splitlines()
    # The header written when the recorder opened (tree order), then the complete one restating it.
    assert [('"kind":"header"' in line) for line in lines[:3]] == [True, True, False]
    trace = load_trace(path)
    assert len(trace.headers) == 1
    assert [layer.name for layer in trace.header.layers] == ["a_first", "b_second"]
    assert trace.header.optimizer.name == "sgd"


KILLED_BEFORE_THE_FIRST_STEP = """
import sys, time
import optax
from flax import nnx
sys.path.insert(0, sys.argv[2])
from test_flax_fidelity import MLP
from diag.adapters.flax import Recorder

model = MLP(nnx.Rngs(0))
rec = Recorder(sys.argv[1], model, task="classification", num_classes=3, seed=7)
optimizer = nnx.Optimizer(model, rec.wrap(optax.adam(1e-3)), wrt=nnx.Param)
print("open", flush=True)
time.sleep(120)  # killed here: no step has been traced
"""


def test_a_run_killed_before_its_first_step_leaves_a_trace_with_a_header(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from diag.trace.records import Header

    path = tmp_path / "run.jsonl"
    child = subprocess.Popen([sys.executable, "-c", KILLED_BEFORE_THE_FIRST_STEP, str(path), os.path.dirname(__file__)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "open"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    (line,) = path.read_text().splitlines()
    header = Header.model_validate_json(line)
    assert (header.framework, header.seed, header.task) == ("flax", 7, "classification")
    assert [layer.name for layer in header.layers] == ["hidden", "out"]


def test_nothing_of_the_run_is_held_after_close(tmp_path):
    import gc
    import weakref

    model = MLP(nnx.Rngs(0))
    rec = Recorder(tmp_path / "run.jsonl", model, every=2, handle_signals=False)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.adam(1e-3)), wrt=nnx.Param)

    @rec.jit
    def train_step(model, optimizer, x, y):
        loss, grads = rec.value_and_grad(
            lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss)

    with rec:
        for step, (x, y) in enumerate(batches(3)):
            rec.record(step, train_step(model, optimizer, x, y))
    held = [weakref.ref(model), weakref.ref(optimizer), weakref.ref(train_step)]
    del model, optimizer, train_step
    gc.collect()
    assert [ref() is None for ref in held] == [True, True, True]
    assert rec.path.exists()  # the recorder itself is still alive


@pytest.mark.parametrize("make_tx,wrap_lr,expected", [
    (lambda: optax.adamw(optax.warmup_cosine_decay_schedule(0.0, 3e-3, 10, 100)), None,
     {"learning_rate": 0.0, "lr_peak": 3e-3, "lr_schedule": "join_schedules(polynomial_schedule, cosine_decay_schedule)"}),
    (lambda: optax.sgd(optax.exponential_decay(0.1, 10, 0.5)), None,
     {"learning_rate": 0.1, "lr_peak": 0.1, "lr_schedule": "exponential_decay"}),
    (lambda: optax.inject_hyperparams(optax.adam)(learning_rate=optax.linear_schedule(1e-3, 0.0, 50)), None,
     {"learning_rate": 1e-3, "lr_schedule": "polynomial_schedule"}),
    (lambda: optax.chain(optax.scale_by_adam(), optax.scale(-2e-3)), 2e-3, {"learning_rate": 2e-3}),
    (lambda: optax.chain(optax.scale_by_adam(), optax.scale_by_learning_rate(optax.cosine_decay_schedule(0.5, 9))),
     optax.cosine_decay_schedule(0.5, 9), {"learning_rate": 0.5, "lr_schedule": "cosine_decay_schedule"}),
])
def test_the_header_shows_the_learning_rate_as_a_number_and_the_schedules_kind(tmp_path, make_tx, wrap_lr, expected):
    model = MLP(nnx.Rngs(0))
    rec = Recorder(tmp_path / "run.jsonl", model, handle_signals=False)
    optimizer = nnx.Optimizer(model, rec.wrap(make_tx(), learning_rate=wrap_lr), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer, x, y):
        loss, grads = rec.value_and_grad(
            lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss)

    with rec:
        for step, (x, y) in enumerate(batches(2)):
            rec.record(step, train_step(model, optimizer, x, y))
    hp = load_trace(tmp_path / "run.jsonl").header.optimizer.hyperparameters
    for key, value in expected.items():
        assert hp.get(key) == (value if isinstance(value, str) else pytest.approx(value)), key


def test_records_written_by_user_code_land_after_the_steps_recorded_before_them(tmp_path):
    from diag.trace.records import Data, NoteEvent

    model = MLP(nnx.Rngs(0))
    rec = Recorder(tmp_path / "run.jsonl", model, every=2, handle_signals=False)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.sgd(0.1)), wrt=nnx.Param)

    @rec.jit
    def train_step(model, optimizer, x, y):
        loss, grads = rec.value_and_grad(
            lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss)

    with rec:
        rec.write(Data(split="train", size=40, num_features=4))
        for step, (x, y) in enumerate(batches(5)):
            rec.record(step, train_step(model, optimizer, x, y))
            rec.write(NoteEvent(step=step, message=f"after step {step}"))
    lines = (tmp_path / "run.jsonl").read_text().splitlines()
    kinds = [line.split('"kind":"')[1].split('"')[0] for line in lines]
    # The header of the recorder's opening, restated complete, then the records in order.
    assert kinds == ["header", "header", "data"] + ["step", "event"] * 5 + ["event"]


def test_an_exception_names_the_module_and_the_shapes_and_dtypes_it_was_called_with(tmp_path):
    class Mismatched(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(4, 8, rngs=rngs)
            self.out = nnx.Linear(16, 3, rngs=rngs)  # the bug: the hidden layer gives 8 features

        def __call__(self, x):
            return self.out(nnx.relu(self.hidden(x)))

    model = Mismatched(nnx.Rngs(0))
    rec = Recorder(tmp_path / "run.jsonl", model, handle_signals=False)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.sgd(0.1)), wrt=nnx.Param)

    @rec.jit
    def train_step(model, optimizer, x, y):
        loss, grads = rec.value_and_grad(
            lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss)

    with pytest.raises(TypeError, match="dot_general requires contracting dimensions to have the same shape"):
        with rec:
            for step, (x, y) in enumerate(batches(2)):
                rec.record(step, train_step(model, optimizer, x, y))
    (event,) = load_trace(tmp_path / "run.jsonl").events_of("exception")
    assert (event.layer, event.module_type, event.input_shapes, event.input_dtypes) == (
        "out", "Linear", [[8, 8]], ["float32"])
