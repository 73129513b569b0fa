"""The check's own XLA:CPU compile options: same verdicts and numbers, and a jaxlib without them still checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diag.gradcheck import _jax_util as U
from diag.gradcheck.jax_check import check_gradients


def _loss(p, x):
    return jnp.sum(jnp.tanh(x @ p["w"] + p["b"]) ** 2)


def _point():
    rng = np.random.default_rng(0)
    return {"w": rng.normal(size=(5, 3)), "b": rng.normal(size=3)}, rng.normal(size=(4, 5))


def _leaf_errors(report):
    return {r.name: (r.passed, r.error) for r in report.results}


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the options are for XLA:CPU")
def test_tuned_and_default_compiles_give_the_same_check():
    params, x = _point()
    tuned = check_gradients(lambda p, x: _loss(p, x), params, x)
    saved = U.CPU_COMPILE_OPTIONS
    try:
        U.CPU_COMPILE_OPTIONS = {}
        default = check_gradients(lambda p, x: _loss(p, x), params, x)
    finally:
        U.CPU_COMPILE_OPTIONS = saved
    assert tuned.passed and default.passed
    for name, (passed, error) in _leaf_errors(default).items():
        assert _leaf_errors(tuned)[name][0] == passed
        assert _leaf_errors(tuned)[name][1] == pytest.approx(error, rel=1e-3, abs=1e-12)


def test_option_the_installed_jaxlib_does_not_know_falls_back_to_xla_defaults():
    params, x = _point()
    bogus = {"xla_cpu_option_that_never_existed": True}
    with pytest.raises(jax.errors.JaxRuntimeError, match="compile option"):  # what the fallback catches
        jax.jit(lambda v: v + 1, compiler_options=bogus)(jnp.ones(3))
    saved = U.CPU_COMPILE_OPTIONS
    try:
        U.CPU_COMPILE_OPTIONS = bogus
        report = check_gradients(lambda p, x: _loss(p, x), params, x)
        broken = {**params, "w": params["w"]}
        failing = check_gradients(lambda p, x: _loss(p, x) + 0.5 * jax.lax.stop_gradient(jnp.sum(p["w"])), broken, x)
    finally:
        U.CPU_COMPILE_OPTIONS = saved
    assert report.passed and len(report.results) == 2
    assert not failing.passed and [r.name for r in failing.results if not r.passed] == ["w"]
