"""The measuring optax transformation: updates unchanged, norms and the learning rate in its state."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from diag.adapters.flax import dynamic_loss_scale, measure
from diag.adapters.flax.header import describe_optimizer


def test_updates_pass_through_unchanged_and_norms_are_measured():
    params = {"a": {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}, "z": {"w": jnp.full((3,), 2.0)}}
    grads = {"a": {"w": jnp.ones((2, 3)), "b": jnp.full(3, 0.5)}, "z": {"w": jnp.full((3,), -1.0)}}
    plain, wrapped = optax.adam(1e-2), measure(optax.adam(1e-2), learning_rate=1e-2)
    u1, _ = plain.update(grads, plain.init(params), params)
    u2, state = wrapped.update(grads, wrapped.init(params), params)
    for x, y in zip(jax.tree.leaves(u1), jax.tree.leaves(u2)):
        np.testing.assert_array_equal(x, y)
    g, p, u = np.asarray(state.layers).T  # layers in tree order: a, z
    assert g.tolist() == pytest.approx([6 + 3 * 0.25, 3.0])
    assert p.tolist() == pytest.approx([55.0 + 3, 12.0])
    assert u.tolist() == pytest.approx([9 * 1e-4, 3 * 1e-4], rel=1e-3)  # adam's first step: lr * sign(g)


def test_a_schedule_is_recorded_at_the_step_it_was_used():
    schedule = optax.linear_schedule(1.0, 0.0, transition_steps=10)
    tx = measure(optax.sgd(schedule), learning_rate=schedule)
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    seen = []
    for _ in range(3):
        _, state = tx.update({"w": jnp.ones(2)}, state, params)
        seen.append(float(state.lr))
    assert seen == pytest.approx([1.0, 0.9, 0.8])


def test_inject_hyperparams_learning_rate_is_found_without_being_told():
    tx = measure(optax.inject_hyperparams(optax.adam)(learning_rate=3e-4))
    params = {"w": jnp.ones(2)}
    _, state = tx.update({"w": jnp.ones(2)}, tx.init(params), params)
    assert float(state.lr) == pytest.approx(3e-4)


@pytest.mark.parametrize("tx,name,hp", [
    (optax.adam(1e-3), "adam", {"learning_rate": 1e-3, "b1": 0.9}),
    (optax.adamw(1e-3, weight_decay=0.05), "adamw", {"weight_decay": 0.05}),
    (optax.sgd(0.1, momentum=0.9), "sgd", {"learning_rate": 0.1, "momentum": 0.9}),
    (optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-3)), "adam", {"grad_clip": 1.0}),
    (optax.chain(optax.adam(1e-3), optax.clip_by_global_norm(1.0)), "adam", {"clip_norm": 1.0}),
])
def test_the_header_names_the_optimizer_and_its_hyperparameters(tx, name, hp):
    info = describe_optimizer(tx)
    assert info.name == name and hp.items() <= info.hyperparameters.items()


def test_dynamic_loss_scale_skips_overflowing_steps_and_grows_after_a_period():
    tx = dynamic_loss_scale(optax.sgd(1.0), init_scale=4.0, period=2)
    params = {"w": jnp.ones(2)}
    state = tx.init(params)
    u, state = tx.update({"w": jnp.array([jnp.inf, 0.0])}, state, params)
    assert float(state.scale) == 2.0 and not bool(state.last_finite) and float(jnp.abs(u["w"]).sum()) == 0
    for _ in range(2):
        u, state = tx.update({"w": jnp.array([2.0, 2.0])}, state, params)
    assert float(state.scale) == 4.0 and u["w"].tolist() == [-1.0, -1.0]  # gradients unscaled by 2


def test_steps_skipped_by_apply_if_finite_are_marked_in_the_trace(tmp_path):
    from flax import nnx

    from diag.adapters.flax import Recorder
    from diag.trace import load_trace

    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    rec = Recorder(tmp_path / "run.jsonl", model, every=1)
    optimizer = nnx.Optimizer(model, optax.apply_if_finite(rec.wrap(optax.sgd(0.1)), 5), wrt=nnx.Param)

    @rec.jit
    def step(model, optimizer, x, scale):
        loss, grads = rec.value_and_grad(lambda m: (m(x) ** 2).mean() * scale)(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss)

    with rec:
        for i, scale in enumerate([1.0, jnp.inf, 1.0]):
            rec.record(i, step(model, optimizer, jnp.ones((4, 3)), scale))
    trace = load_trace(tmp_path / "run.jsonl")
    assert trace.series("skipped").values.tolist() == [0, 1, 0]


def test_gradient_norms_under_dynamic_loss_scaling_are_the_true_gradients():
    """The loss is multiplied by the scale, so raw gradients are 2**15 too large; the record is not."""
    scaled = measure(dynamic_loss_scale(optax.sgd(0.1), init_scale=2.0**15), learning_rate=0.1)
    plain = measure(optax.sgd(0.1), learning_rate=0.1)
    params = {"w": jnp.ones(3)}
    true_grads = {"w": jnp.array([1.0, 2.0, 2.0])}
    _, s1 = scaled.update(jax.tree.map(lambda g: g * 2.0**15, true_grads), scaled.init(params), params)
    _, s2 = plain.update(true_grads, plain.init(params), params)
    assert float(s1.layers[0, 0]) == pytest.approx(9.0)  # |g|^2 of the true gradient
    assert [float(v) for v in s1.layers[0]] == pytest.approx([float(v) for v in s2.layers[0]])


@pytest.mark.parametrize("values,nonfinite", [
    ([1.0, -2.0, 0.0, 3.0], 0),
    ([1.0, float("nan"), 0.0, 3.0], 1),
    ([float("inf"), -1.0, float("-inf"), 2.0], 2),  # the plain sum is NaN, the sum of squares Inf
    ([3e38, 3e38, -3e38, 1.0], 0),  # sums overflow in float32: counted, and there are none
])
def test_activation_statistics_count_nonfinite_outputs_exactly(values, nonfinite):
    from diag.adapters.flax.stats import activation_block

    z = jnp.asarray(values, jnp.float32).reshape(2, 2)
    block = jax.jit(lambda z: activation_block([z], ["relu"]))(z)
    assert float(block[5, 0]) == nonfinite
    assert float(block[2, 0]) == 4 and float(block[3, 0]) == sum(v <= 0 for v in values)
