"""The run context rules read: loss names normalised, output units, recurrent models, clipping."""

from __future__ import annotations

import pytest

from diag.engine.facts import loss_family, normalize_loss_kind, output_units, run_context
from diag.engine.synthetic import header_from_context, trace_from_series
from diag.trace.records import Header, LayerInfo, ParamInfo


@pytest.mark.parametrize("name, canonical", [
    ("mean_squared_error", "mse"), ("MSELoss", "mse"), ("mse", "mse"), ("l2", "mse"),
    ("mean_absolute_error", "mae"), ("L1Loss", "mae"), ("huber_loss", "huber"), ("SmoothL1Loss", "huber"),
    ("sparse_categorical_crossentropy", "softmax_cross_entropy"), ("CrossEntropyLoss", "softmax_cross_entropy"),
    ("BCEWithLogitsLoss", "binary_cross_entropy_with_logits"), ("my_focal_loss", "my_focal_loss"),
])
def test_loss_names_from_keras_pytorch_and_optax_map_to_one_name(name, canonical):
    assert normalize_loss_kind(name) == canonical


def test_loss_family_comes_from_the_loss_and_falls_back_to_the_task():
    assert loss_family("huber", "classification") == "regression"
    assert loss_family("softmax_cross_entropy", None) == "classification"
    assert loss_family("custom", "regression") == "regression"
    assert loss_family(None, None) is None


def _header(layers, **fields):
    return Header(run_id="t", framework=fields.pop("framework", "torch"), layers=layers, **fields)


def test_output_units_read_from_torch_weight_flax_kernel_or_bias():
    torch_out = LayerInfo(name="out", is_output=True, params=[ParamInfo(name="weight", shape=[1, 32], dtype="float32")])
    flax_out = LayerInfo(name="out", is_output=True, params=[ParamInfo(name="kernel", shape=[32, 5], dtype="float32")])
    biased = LayerInfo(name="out", is_output=True, params=[ParamInfo(name="bias", shape=[3], dtype="float32"),
                                                           ParamInfo(name="kernel", shape=[8, 3], dtype="float32")])
    assert output_units(_header([torch_out])) == 1.0
    assert output_units(_header([flax_out], framework="flax")) == 5.0
    assert output_units(_header([biased])) == 3.0
    assert output_units(_header([LayerInfo(name="h")])) is None


def test_recurrent_models_are_recognised_by_layer_type_module_path_or_model_name():
    def ctx(header):
        return run_context(trace_from_series({"loss": [1.0, 1.0]}, header=header))

    assert ctx(_header([LayerInfo(name="rnn", type="GRU"), LayerInfo(name="out", type="Linear")]))["recurrent"]
    assert ctx(_header([LayerInfo(name="cell/dense_h", type="Linear")], framework="flax"))["recurrent"]
    assert ctx(_header([LayerInfo(name="rec", type="Linear")], model_name="rnn"))["recurrent"]
    assert not ctx(_header([LayerInfo(name="conv1", type="Conv2d"), LayerInfo(name="fc", type="Linear")]))["recurrent"]


def test_a_clip_norm_in_the_optimizer_header_marks_the_run_clipped_and_the_loss_is_normalised():
    header = header_from_context({"grad_clip": 1.0, "optimizer": "adamw", "loss_kind": "mean_squared_error",
                                  "task": "regression"})
    context = run_context(trace_from_series({"loss": [1.0, 1.0]}, header=header))
    assert context["clipped"] and context["grad_clip"] == 1.0
    assert context["loss_kind"] == "mse" and context["loss_family"] == "regression"
