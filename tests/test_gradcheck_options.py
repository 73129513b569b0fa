"""The JAX and PyTorch gradient checks take one set of settings, with one set of defaults."""

from __future__ import annotations

import numpy as np
import pytest

from diag.errors import DiagInputError
from diag.gradcheck.options import CheckOptions, CheckSettings


def test_settings_and_their_typed_keywords_name_the_same_fields():
    assert list(CheckOptions.__annotations__) == [f for f in CheckSettings.__dataclass_fields__]


def test_defaults_fill_what_was_not_given():
    settings = CheckSettings.of({"seed": 3}, "check_gradients")
    assert (settings.directions, settings.dtype, settings.seed, settings.localize) == (32, "float64", 3, True)
    assert settings.step is None and settings.threshold is None and settings.target is None


def test_misspelt_setting_is_a_type_error_naming_the_function_and_its_settings():
    with pytest.raises(TypeError, match=r"check_torch\(\) got an unexpected keyword argument 'directoins'.*directions"):
        CheckSettings.of({"directoins": 4}, "check_torch")


def test_fewer_than_one_direction_is_refused():
    with pytest.raises(DiagInputError, match="directions must be at least 1"):
        CheckSettings.of({"directions": 0}, "check_gradients")


def test_report_is_named_by_target_else_by_the_function():
    def loss(p):
        return p

    assert CheckSettings.of({}, "check_gradients").report_name(loss) == "loss"
    assert CheckSettings.of({"target": "mlp"}, "check_gradients").report_name(loss) == "mlp"


def test_jax_and_torch_checks_pass_their_settings_through():
    torch = pytest.importorskip("torch")
    import jax.numpy as jnp

    from diag.gradcheck import check_gradients, check_torch

    w = np.linspace(-1.0, 1.0, 6).reshape(3, 2)
    jax_report = check_gradients(lambda p: jnp.sum(jnp.tanh(p) ** 2), jnp.asarray(w),
                                 directions=4, dtype="float32", target="jax-side", localize=False)
    torch_report = check_torch(lambda p: torch.tanh(p).pow(2).sum(), torch.tensor(w),
                               directions=4, dtype="float32", target="torch-side", localize=False)
    for report, name in ((jax_report, "jax-side"), (torch_report, "torch-side")):
        assert report.target == name
        assert [(r.dtype, r.directions) for r in report.results] == [("float32", 4)]
    with pytest.raises(TypeError, match="check_gradients"):
        check_gradients(lambda p: jnp.sum(p), jnp.asarray(w), step_size=1e-3)
