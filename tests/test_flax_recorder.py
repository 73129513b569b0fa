"""The Flax recorder writes numbers that match references computed independently.

A small CNN with dense, conv, BatchNorm and LayerNorm layers trains for a few real steps; before
each step the test clones the model and computes the gradient with ``jax.grad`` directly, the
layer outputs with a hand-written forward pass, and afterwards the update from the parameters
before and after. The trace must agree with all of them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from diag.adapters.flax import Recorder
from diag.trace import load_trace

STEPS = 3


class SmallCNN(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(3, 4, kernel_size=(3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.dense = nnx.Linear(4 * 4 * 4, 16, rngs=rngs)
        self.ln = nnx.LayerNorm(16, rngs=rngs)
        self.head = nnx.Linear(16, 5, rngs=rngs)

    def __call__(self, x):
        h = nnx.relu(self.bn(self.conv(x)))
        h = nnx.avg_pool(h, (2, 2), strides=(2, 2)).reshape(x.shape[0], -1)
        h = jnp.tanh(self.ln(self.dense(h)))
        return self.head(h)


def reference_forward(m, x):
    """Each layer's output, written out by hand (no capture, no recorder)."""
    conv = m.conv(x)
    bn = m.bn(conv)
    h = nnx.avg_pool(nnx.relu(bn), (2, 2), strides=(2, 2)).reshape(x.shape[0], -1)
    dense = m.dense(h)
    ln = m.ln(dense)
    return {"conv": conv, "bn": bn, "dense": dense, "ln": ln, "head": m.head(jnp.tanh(ln))}


def loss_of(logits, y):
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def layer_norms(state) -> dict[str, float]:
    out: dict[str, float] = {}
    for path, v in nnx.to_flat_state(state):
        a = np.asarray(v.get_value() if isinstance(v, nnx.Variable) else v, np.float64)
        k = "/".join(map(str, path[:-1]))
        out[k] = out.get(k, 0.0) + float((a * a).sum())
    return {k: math.sqrt(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("flax") / "run.jsonl"
    model = SmallCNN(nnx.Rngs(0))
    rec = Recorder(path, model, task="classification", num_classes=5, loss_kind="softmax_cross_entropy",
                   seed=0, every=1, batch_size=16)
    tx = optax.adam(1e-2)
    optimizer = nnx.Optimizer(model, rec.wrap(tx), wrt=nnx.Param)

    @rec.jit
    def train_step(model, optimizer, x, y):
        loss, grads = rec.value_and_grad(lambda m: loss_of(m(x), y))(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss, batch=x, labels=y)

    graphdef = nnx.graphdef(model)

    @jax.jit
    def reference(params, rest, x, y):
        # Independent of the recorder: plain jax.value_and_grad of a pure function of the params.
        loss, grads = jax.value_and_grad(lambda p: loss_of(nnx.merge(graphdef, p, rest)(x), y))(params)
        return loss, grads, reference_forward(nnx.merge(graphdef, params, rest), x)

    rng = np.random.default_rng(0)
    refs = []
    with rec:
        for step in range(STEPS):
            x = jnp.asarray(rng.normal(size=(16, 8, 8, 3)), jnp.float32)
            y = jnp.asarray(rng.integers(0, 5, size=16))
            _, params, rest = nnx.split(model, nnx.Param, ...)
            params, rest = nnx.as_pure(params), nnx.as_pure(rest)
            ref_loss, ref_grads, acts = reference(params, rest, x, y)
            before = {k: np.asarray(v.get_value()) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
            rec.record(step, train_step(model, optimizer, x, y))
            after = {k: np.asarray(v.get_value()) for k, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
            delta: dict[str, float] = {}
            for k in before:
                name = "/".join(map(str, k[:-1]))
                delta[name] = delta.get(name, 0.0) + float(((after[k] - before[k]).astype(np.float64) ** 2).sum())
            refs.append(dict(
                loss=float(ref_loss), grad=layer_norms(ref_grads), param=layer_norms(params),
                update={k: math.sqrt(v) for k, v in delta.items()}, acts=jax.device_get(acts),
                x=np.asarray(x), y=np.asarray(y),
            ))
    return load_trace(path), refs


def test_layers_are_listed_in_forward_order_not_alphabetical(run):
    trace, _ = run
    assert list(trace.layer_names) == ["conv", "bn", "dense", "ln", "head"]


def test_header_names_activations_optimizer_task_and_devices(run):
    trace, _ = run
    h = trace.header
    by_name = {l.name: l for l in h.layers}
    assert by_name["bn"].activation == "relu" and by_name["ln"].activation == "tanh"
    assert by_name["conv"].activation is None and by_name["head"].is_output
    assert [l.type for l in h.layers] == ["Conv", "BatchNorm", "Linear", "LayerNorm", "Linear"]
    assert by_name["conv"].params[1].shape == [3, 3, 3, 4]
    assert h.param_count == sum(int(np.prod(p.shape)) for l in h.layers for p in l.params)
    assert h.optimizer.name == "adam" and h.optimizer.hyperparameters["learning_rate"] == 0.01
    assert (h.task, h.num_classes, h.loss_kind, h.seed, h.batch_size) == ("classification", 5, "softmax_cross_entropy", 0, 16)
    assert h.device_platform == "cpu" and h.device_count == jax.device_count() and h.process_index == 0
    assert h.param_dtype == "float32" and {"jax", "flax", "optax"} <= set(h.versions)


def test_loss_and_per_layer_grad_norms_match_jax_grad(run):
    trace, refs = run
    np.testing.assert_allclose(trace.series("loss").values, [r["loss"] for r in refs], rtol=1e-5)
    grads = trace.layer_matrix("layers.grad_norm").values
    for step, ref in enumerate(refs):
        np.testing.assert_allclose(grads[step], [ref["grad"][n] for n in trace.layer_names], rtol=1e-4)
        total = math.sqrt(sum(v * v for v in ref["grad"].values()))
        assert trace.series("grad_norm").values[step] == pytest.approx(total, rel=1e-4)


def test_param_norms_updates_and_update_ratios_match_the_parameters_that_changed(run):
    trace, refs = run
    params = trace.layer_matrix("layers.param_norm").values
    updates = trace.layer_matrix("layers.update_norm").values
    ratios = trace.layer_matrix("layers.update_ratio").values
    for step, ref in enumerate(refs):
        names = trace.layer_names
        np.testing.assert_allclose(params[step], [ref["param"][n] for n in names], rtol=1e-5)
        np.testing.assert_allclose(updates[step], [ref["update"][n] for n in names], rtol=2e-3)
        np.testing.assert_allclose(ratios[step], [ref["update"][n] / ref["param"][n] for n in names], rtol=2e-3)
    assert trace.series("lr").values.tolist() == pytest.approx([0.01] * STEPS)


def test_activation_statistics_match_a_hand_written_forward_pass(run):
    trace, refs = run
    names = list(trace.layer_names)
    mean = trace.layer_matrix("activations.mean").values
    std = trace.layer_matrix("activations.std").values
    zero = trace.layer_matrix("activations.zero_fraction").values
    sat = trace.layer_matrix("activations.saturation_fraction").values
    for step, ref in enumerate(refs):
        for j, name in enumerate(names):
            a = np.asarray(ref["acts"][name], np.float64)
            assert mean[step, j] == pytest.approx(a.mean(), abs=1e-5)
            assert std[step, j] == pytest.approx(a.std(), rel=1e-3, abs=1e-5)
        bn = np.asarray(ref["acts"]["bn"])
        assert zero[step, names.index("bn")] == pytest.approx((np.maximum(bn, 0) == 0).mean())
        ln = np.asarray(ref["acts"]["ln"])
        assert sat[step, names.index("ln")] == pytest.approx((1 - np.abs(np.tanh(ln.astype(np.float64))) < 1e-3).mean())
    # Not measured where the statistic has no meaning (no ReLU after conv, no sigmoid/tanh after bn).
    assert np.isnan(zero[:, names.index("conv")]).all() and np.isnan(sat[:, names.index("bn")]).all()


def test_input_and_label_statistics_describe_the_batch(run):
    trace, refs = run
    x, y = refs[0]["x"], refs[0]["y"]
    assert trace.series("input.mean").values[0] == pytest.approx(x.mean(), abs=1e-5)
    assert trace.series("input.std").values[0] == pytest.approx(x.std(), rel=1e-4)
    assert trace.series("input.nonfinite").values[0] == 0
    p = np.bincount(y, minlength=5) / len(y)
    p = p[p > 0]
    assert trace.series("labels.label_entropy").values[0] == pytest.approx(-(p * np.log(p)).sum(), rel=1e-5)


def test_a_finished_run_ends_with_a_completed_event(run):
    trace, _ = run
    end = trace.events_of("run_end")
    assert len(end) == 1 and end[0].status == "completed" and end[0].steps == STEPS


def test_the_loop_shown_in_the_readme_runs_and_writes_a_complete_trace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    batches = [(jnp.asarray(rng.normal(size=(32, 20)), jnp.float32), jnp.asarray(rng.integers(0, 10, 32)))
               for _ in range(4)]

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.hidden = nnx.Linear(20, 32, rngs=rngs)
            self.out = nnx.Linear(32, 10, rngs=rngs)

        def __call__(self, x):
            return self.out(nnx.relu(self.hidden(x)))

    # The README's loop itself, as written (a copy here could drift from what users are shown).
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Flax NNX"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md (Flax NNX example)", "exec"),
         {"MLP": MLP, "batches": batches, "nnx": nnx, "optax": optax})

    trace = load_trace(tmp_path / "run.jsonl")
    assert list(trace.layer_names) == ["hidden", "out"] and trace.header.layers[0].activation == "relu"
    assert len(trace.series("loss")) == 4 and list(trace.layer_matrix("layers.grad_norm").steps) == [0]  # every 25 steps
    assert trace.events_of("run_end")[0].status == "completed"
