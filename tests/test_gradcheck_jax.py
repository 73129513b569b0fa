"""The JAX gradient check finds planted custom-VJP bugs, names the layer, and raises no false alarm.

One custom VJP dense layer carries every planted bug, selected by a runtime argument, so the check
compiles once per dtype and the whole table of cases reuses it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diag.gradcheck.custom_vjp import check_custom_vjp
from diag.gradcheck.jax_check import check_gradients, check_model

CORRECT, FACTOR, SIGN, TRANSPOSED, MISSING = range(5)
BUGS = {"factor_one_element": FACTOR, "sign": SIGN, "transposed": TRANSPOSED, "missing_term": MISSING}
GROSS = {"sign", "transposed", "missing_term"}


@jax.custom_vjp
def dense_tanh(x, w, b, bug):
    return jnp.tanh(x @ w + b)


def _fwd(x, w, b, bug):
    y = jnp.tanh(x @ w + b)
    return y, (x, w, y, bug)


def _bwd(res, g):
    x, w, y, bug = res
    d = g * (1 - y**2)
    dw = x.T @ d
    dw = jax.lax.switch(
        bug.astype(jnp.int32),
        [
            lambda: dw,
            lambda: dw.at[0, 0].multiply(2.0),  # wrong by a factor in one element
            lambda: -dw,  # a sign
            lambda: dw.T,  # a transposed matrix
            lambda: x.T @ g,  # a missing term: tanh's derivative left out
        ],
    )
    return d @ w.T, dw, d.sum(0), jnp.zeros_like(bug)


dense_tanh.defvjp(_fwd, _bwd)


def two_layer_loss(params, x, y, bug):
    """dense1 is always correct; the planted bug, if any, is in dense2's custom VJP."""
    h = dense_tanh(x, params["dense1"]["w"], params["dense1"]["b"], jnp.zeros_like(bug))
    out = dense_tanh(h, params["dense2"]["w"], params["dense2"]["b"], bug)
    return jnp.mean((out - y) ** 2)


def make_point(seed: int, width: int = 16):
    # Square weights, so that a transposed weight gradient has the right shape and only its values are wrong.
    k = jax.random.split(jax.random.key(seed), 6)
    params = {
        "dense1": {"w": jax.random.normal(k[0], (width, width)) / np.sqrt(width), "b": 0.1 * jax.random.normal(k[1], (width,))},
        "dense2": {"w": jax.random.normal(k[2], (width, width)) / np.sqrt(width), "b": 0.1 * jax.random.normal(k[3], (width,))},
    }
    return params, jax.random.normal(k[4], (32, width)), jax.random.normal(k[5], (32, width))


@pytest.fixture(scope="module")
def point():
    return make_point(0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_correct_custom_vjp_passes_in_both_precisions(point, dtype):
    report = check_gradients(two_layer_loss, *point, jnp.float32(CORRECT), dtype=dtype)
    assert report.passed, report.format()
    assert [r.name for r in report.results] == ["dense1/b", "dense1/w", "dense2/b", "dense2/w"]


@pytest.mark.parametrize("bug", list(BUGS))
def test_planted_bug_is_found_in_float64_and_names_the_layer(point, bug):
    report = check_gradients(two_layer_loss, *point, jnp.float32(BUGS[bug]))
    failed = {r.name for r in report.failures}
    assert failed == {"dense2/w"}, report.format()
    result = report.by_name("dense2/w")
    assert result.layer == "dense2"
    assert "layer dense2" in result.message
    assert result.error > 100 * result.threshold


@pytest.mark.parametrize("bug", sorted(GROSS))
def test_gross_bug_is_found_in_float32(point, bug):
    report = check_gradients(two_layer_loss, *point, jnp.float32(BUGS[bug]), dtype="float32")
    assert {r.name for r in report.failures} == {"dense2/w"}, report.format()


@jax.custom_vjp
def scale_shift(x, a, b):
    return x * a + b


def _scale_shift_fwd(x, a, b):
    return x * a + b, (x, a)


def _scale_shift_bwd(res, g):
    x, a = res
    return g * a, jnp.sum(g * x, axis=0), jnp.full(g.shape[1:], jnp.nan)  # b's gradient: NaN


scale_shift.defvjp(_scale_shift_fwd, _scale_shift_bwd)


def test_a_nan_gradient_in_one_leaf_fails_that_leaf_and_only_that_leaf():
    x = jax.random.normal(jax.random.key(3), (8, 4))
    params = {"a": jnp.linspace(0.5, 1.5, 4), "b": jnp.linspace(-0.2, 0.2, 4)}
    report = check_gradients(lambda p, x: jnp.mean(scale_shift(x, p["a"], p["b"]) ** 2), params, x)
    assert {r.name for r in report.failures} == {"b"}, report.format()
    assert report.by_name("a").passed


def test_one_element_bug_points_at_that_element(point):
    result = check_gradients(two_layer_loss, *point, jnp.float32(FACTOR)).by_name("dense2/w")
    assert result.worst_elements[0] == [0, 0]


@pytest.mark.parametrize("bug", list(BUGS))
def test_custom_vjp_disagrees_with_autodiff_of_its_primal(point, bug):
    report = check_custom_vjp(two_layer_loss, *point, jnp.float32(BUGS[bug]))
    assert {r.name for r in report.failures} == {"dense2/w"}, report.format()
    assert "custom VJP of dense_tanh" in report.by_name("dense2/w", "custom_vjp").message


def test_correct_custom_vjp_matches_autodiff_to_rounding(point):
    report = check_custom_vjp(two_layer_loss, *point, jnp.float32(CORRECT))
    assert report.passed and len(report.results) == 4
    assert max(r.error for r in report.results) < 1e-12


def test_function_without_custom_vjp_says_there_is_nothing_to_compare(point):
    report = check_custom_vjp(lambda p, x: jnp.sum(jnp.tanh(x @ p["dense1"]["w"])), point[0], point[1])
    assert report.results == [] and "no custom VJP" in report.notes[0]


def test_no_false_alarm_over_a_hundred_random_correct_functions():
    # Random weights, data and a random mix of smooth and kinked activations per draw: the
    # relu and abs terms make central differences cross kinks, which must not raise alarms.
    def random_fn(params, x, c):
        z = x @ params["l1"]["w"] + params["l1"]["b"]
        h = c[0] * jax.nn.relu(z) + c[1] * jnp.tanh(z) + c[2] * jax.nn.softplus(z) + c[3] * jnp.abs(z)
        out = h @ params["l2"]["w"]
        return jnp.mean(out**2) + c[4] * jnp.sum(jnp.sin(out))

    worst = {"float64": 0.0, "float32": 0.0}
    for i in range(100):
        k = jax.random.split(jax.random.key(1000 + i), 5)
        params = {
            "l1": {"w": jax.random.normal(k[0], (6, 24)), "b": jax.random.normal(k[1], (24,))},
            "l2": {"w": jax.random.normal(k[2], (24, 3)) / 5},
        }
        x = jax.random.normal(k[3], (16, 6))
        c = jax.random.uniform(k[4], (5,), minval=-1.0, maxval=1.0)
        for dtype in ("float64", "float32") if i % 4 == 0 else ("float64",):
            report = check_gradients(random_fn, params, x, c, dtype=dtype, seed=i, localize=False)
            assert report.passed, f"false alarm on draw {i} ({dtype}):\n{report.format()}"
            worst[dtype] = max(worst[dtype], max(r.error for r in report.results))
    assert worst["float64"] < 1e-2 * 1e-6  # two orders of magnitude of margin below the threshold


def test_float64_check_leaves_the_users_precision_setting_alone(point):
    before = jax.config.jax_enable_x64
    check_gradients(two_layer_loss, *point, jnp.float32(CORRECT))
    assert jax.config.jax_enable_x64 == before
    assert jnp.ones(2).dtype == (jnp.float64 if before else jnp.float32)


def test_function_fixed_to_float32_is_judged_by_float32_thresholds(point):
    def f32_loss(params, x):
        return jnp.sum(jnp.tanh(x.astype(jnp.float32) @ params["dense1"]["w"].astype(jnp.float32)))

    report = check_gradients(f32_loss, point[0], point[1])
    assert report.passed
    assert "computes in float32" in report.notes[0]
    assert report.results[0].dtype == "float32"


def test_flax_model_with_custom_vjp_layer_is_checked_per_module_path():
    from flax import nnx

    class Block(nnx.Module):
        def __init__(self, din, dout, rngs, bug=CORRECT):
            self.w = nnx.Param(jax.random.normal(rngs.params(), (din, dout)) / np.sqrt(din))
            self.b = nnx.Param(jnp.zeros(dout))
            self.bug = bug

        def __call__(self, x):
            return dense_tanh(x, self.w[...], self.b[...], jnp.asarray(self.bug, x.dtype))

    class Net(nnx.Module):
        def __init__(self, rngs, bug):
            self.encoder = Block(16, 16, rngs)
            self.head = Block(16, 16, rngs, bug=bug)

        def __call__(self, x):
            return self.head(self.encoder(x))

    x, y = make_point(3)[1:]
    loss = lambda m, x, y: jnp.mean((m(x) - y) ** 2)  # noqa: E731
    good = check_model(Net(nnx.Rngs(0), CORRECT), loss, x, y)
    bad = check_model(Net(nnx.Rngs(0), SIGN), loss, x, y)
    assert good.passed, good.format()
    assert {r.name for r in good.results} >= {"encoder/w", "head/w"}  # passed is all() over these
    assert [r.name for r in bad.failures] == ["head/w"], bad.format()
    assert bad.failures[0].layer == "head"


def test_non_scalar_output_is_checked_through_a_random_cotangent(point):
    def outputs(params, x, bug):
        return dense_tanh(x, params["dense1"]["w"], params["dense1"]["b"], bug)

    assert check_gradients(outputs, point[0], point[1], jnp.float32(CORRECT)).passed
    assert not check_gradients(outputs, point[0], point[1], jnp.float32(SIGN)).passed


def deep_loss(params, x, y, bugs):
    """Six custom-VJP layers; the third sees its input scaled by 1/20, so its weight gradient is
    small next to the others' (what the joint screen must not let hide a bug)."""
    h = x
    for i, layer in enumerate(params):
        scale = 0.05 if i == 2 else 1.0
        h = dense_tanh(scale * h, layer["w"], layer["b"], bugs[i])
    return jnp.mean((h - y) ** 2)


@pytest.fixture(scope="module")
def deep_point():
    k = jax.random.split(jax.random.key(7), 14)
    params = [{"w": jax.random.normal(k[2 * i], (12, 12)) / np.sqrt(12), "b": 0.1 * jax.random.normal(k[2 * i + 1], (12,))}
              for i in range(6)]
    return params, jax.random.normal(k[12], (24, 12)), jax.random.normal(k[13], (24, 12))


def test_correct_model_is_cleared_by_one_joint_pass_over_all_leaves(deep_point):
    report = check_gradients(deep_loss, *deep_point, jnp.zeros(6))
    assert report.passed, report.format()
    assert all("joint directions over 12 leaves" in r.method for r in report.results)
    assert max(r.error for r in report.results) < 1e-8


@pytest.mark.parametrize("bug", list(BUGS))
def test_bug_in_a_leaf_with_a_small_gradient_is_not_hidden_by_the_joint_screen(deep_point, bug):
    bugs = jnp.zeros(6).at[2].set(BUGS[bug])
    report = check_gradients(deep_loss, *deep_point, bugs)
    assert [r.name for r in report.failures] == ["2/w"], report.format()
    assert "per leaf" in report.failures[0].method
    if bug == "factor_one_element":
        assert report.failures[0].worst_elements[0] == [0, 0]


def test_sign_directions_are_unit_random_and_distinct_per_leaf_and_direction():
    from diag.gradcheck._directions import stream, unit_signs

    def signs(seed, k, offset):
        return np.asarray(unit_signs(stream(seed, k), offset, (40, 50), jnp.float32), np.float64).ravel()

    v = np.stack([signs(3, k, 0) for k in range(64)])
    assert np.allclose(np.sum(v * v, axis=1), 1.0, rtol=1e-6)
    gram = v @ v.T  # off-diagonal entries of unrelated sign vectors: about +-1/sqrt(2000)
    assert np.abs(gram - np.eye(64)).max() < 0.12
    assert abs(v.mean() * 2000) < 0.05  # signs balanced overall
    other_leaf, other_seed = signs(3, 0, 2000), signs(4, 0, 0)
    assert abs(other_leaf @ v[0]) < 0.12 and abs(other_seed @ v[0]) < 0.12


def test_model_keeping_a_dict_attribute_is_still_checked():
    """A model whose graph holds an unhashable attribute cannot key the compile cache; it still runs."""
    from flax import nnx
    import jax.numpy as jnp

    from diag.gradcheck import check_model

    class WithConfig(nnx.Module):
        def __init__(self, rngs):
            self.config = {"width": 3}
            self.dense = nnx.Linear(3, 2, rngs=rngs)

        def __call__(self, x):
            return self.dense(x)

    model = WithConfig(nnx.Rngs(0))
    report = check_model(model, lambda m, x: jnp.mean(jnp.tanh(m(x)) ** 2), jnp.ones((4, 3)))
    assert report.passed
    assert {r.name for r in report.results} >= {"dense/kernel", "dense/bias"}
