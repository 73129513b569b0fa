"""A Flax loop that stops calling ``record`` (a hung data loader, a long evaluation) still has its
last steps on disk within about ``flush_seconds``: before, the steps the device had not finished
when ``record`` returned stayed in memory until the loop came back, and a kill -9 lost them."""

from __future__ import annotations

import time

import jax.numpy as jnp
import optax
import pytest
from flax import nnx

from diag.adapters.flax import Recorder
from diag.errors import DiagInputError
from diag.trace import load_trace

PATIENCE = 60.0  # seconds before the test gives up on a loaded machine (not a timing check)


class WideMLP(nnx.Module):
    def __init__(self, rngs):
        self.l1 = nnx.Linear(512, 512, rngs=rngs)
        self.head = nnx.Linear(512, 3, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.l1(x)))


def _steps_on_disk(path) -> int:
    try:
        return load_trace(path).num_steps
    except (FileNotFoundError, DiagInputError):
        return 0


@pytest.mark.parametrize("localize", [True, False])
def test_steps_left_pending_by_an_idle_loop_reach_the_disk_without_another_record(tmp_path, localize):
    path = tmp_path / "run.jsonl"
    model = WideMLP(nnx.Rngs(0))
    rec = Recorder(path, model, task="classification", num_classes=3, every=5, localize=localize,
                   handle_signals=False)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.sgd(0.01)), wrt=nnx.Param)

    @rec.jit
    def step(model, optimizer, x, y):
        loss, grads = rec.value_and_grad(
            lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss)

    x, y = jnp.ones((4096, 512)) / 512, jnp.arange(4096) % 3  # a step long enough to be dispatched, not done
    i = 0
    while i < 3 or not rec._pending:  # go idle with a step the device had not finished when recorded
        rec.record(i, step(model, optimizer, x * (i + 1), y))
        i += 1
        assert i < 200, "every step was finished before record() returned: this test cannot show anything"
    deadline = time.monotonic() + PATIENCE
    while _steps_on_disk(path) < i:  # no more record() calls: only the idle thread can write them
        assert time.monotonic() < deadline, f"{_steps_on_disk(path)} of {i} steps on disk while the loop is idle"
        time.sleep(0.05)
    trace = load_trace(path)
    assert [int(s) for s in trace.series("loss").steps] == list(range(i))
    rec.close()
    assert load_trace(path).num_steps == i  # closing wrote nothing twice
