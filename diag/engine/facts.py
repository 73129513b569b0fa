"""What rules can name besides series: the run context, record attributes and fact attributes.

* **Context** (``context:`` clauses, ``{{ }}`` slots): facts about the run from the trace header
  (``precision``, ``optimizer``, ``lr``, ``loss_kind``, ``task``, ``num_classes``, ...). A value the
  trace does not record is missing, and a clause that reads it is skipped, not false.
* **Record attributes** (``record:`` clauses): the fields of ``data``, ``check``, ``eval`` and
  ``event`` records, plus a few derived ones (``max_feature_score``, ``top_feature``, ``accuracy``).
* **Fact attributes** (``fact: x`` ``as: name`` then ``name.first_step``): what the rule that
  concluded a fact measured: first/last step, value, peak, layer, ...

Example:
  >>> normalize_dtype("bfloat16"), CONTEXT_TYPES["lr"] is FLOAT
  ('bf16', True)
"""

from __future__ import annotations

import math

from diag.engine.expressions import BOOLEAN, FLOAT, STRING, STRINGS, DataType

CONTEXT_TYPES: dict = {
    "precision": STRING, "compute_dtype": STRING, "param_precision": STRING, "param_dtype": STRING,
    "optimizer": STRING, "lr": FLOAT, "momentum": FLOAT, "weight_decay": FLOAT, "grad_clip": FLOAT,
    "loss_kind": STRING, "task": STRING, "num_classes": FLOAT, "ln_num_classes": FLOAT, "batch_size": FLOAT,
    "framework": STRING, "loss_scaling": STRING, "num_layers": FLOAT, "num_steps": FLOAT,
    "first_step": FLOAT, "last_step": FLOAT, "steps_planned": FLOAT, "world_size": FLOAT, "seed": FLOAT,
    "device_platform": STRING, "model_name": STRING, "run_status": STRING,
    "loss_family": STRING, "output_units": FLOAT, "recurrent": BOOLEAN, "normalized_layers": BOOLEAN,
    "clipped": BOOLEAN, "output_fan_in": FLOAT,
    # Set per binding by ``for_each``:
    "layer": STRING, "layer_index": FLOAT, "layer_type": STRING, "layer_activation": STRING,
    "layer_is_output": BOOLEAN, "split": STRING,
}
"""Context symbols and their types."""

BINDING_SYMBOLS = ("layer", "layer_index", "layer_type", "layer_activation", "layer_is_output", "split")

SIGNAL_ATTRS: dict = {
    "first_step": FLOAT, "fired_at": FLOAT, "last_step": FLOAT, "value": FLOAT, "peak": FLOAT,
    "low": FLOAT, "last": FLOAT, "raw": FLOAT, "count": FLOAT, "frac": FLOAT, "n": FLOAT,
    "series": STRING, "layer": STRING, "layers": STRINGS, "n_layers": FLOAT, "frac_layers": FLOAT,
    "cf": FLOAT,
}
"""Attributes of a signal clause's result (and of a symptom concluded from one)."""

RECORD_TYPES: dict = {
    "data": {
        "split": STRING, "size": FLOAT, "num_features": FLOAT, "overlap_with_train": FLOAT,
        "overlap_fraction": FLOAT, "id_like_features": STRINGS, "time_min": FLOAT, "time_max": FLOAT,
        "input_mean": FLOAT, "input_std": FLOAT, "input_nonfinite": FLOAT, "conflicting_labels": FLOAT,
        "conflicting_fraction": FLOAT, "max_feature_score": FLOAT, "top_feature": STRING, "second_feature_score": FLOAT,
        "majority_fraction": FLOAT, "num_labels": FLOAT, "label_shift": FLOAT, "label_shift_noise": FLOAT,
    },
    "check": {
        "name": STRING, "target": STRING, "passed": BOOLEAN, "method": STRING, "error": FLOAT,
        "threshold": FLOAT, "dtype": STRING, "directions": FLOAT, "worst_direction": FLOAT, "step": FLOAT,
        "message": STRING,
    },
    "eval": {
        "step": FLOAT, "split": STRING, "loss": FLOAT, "model_mode": STRING, "examples": FLOAT,
        "accuracy": FLOAT,
    },
    "event": {
        "event": STRING, "step": FLOAT, "message": STRING, "tensor": STRING, "layer": STRING,
        "value": FLOAT, "type": STRING, "status": STRING, "last_good_step": FLOAT,
        # Where an exception was raised (recorders write them on exception events); the shapes and
        # dtypes as text, "(32, 13)" / "float64", so evidence can name them.
        "module_type": STRING, "input_shapes": STRING, "input_dtypes": STRING,
    },
}
"""Attributes of each record kind a ``record:`` clause can match."""

_ALL_RECORD_ATTRS = {name: t for kind in RECORD_TYPES.values() for name, t in kind.items()}
FACT_ATTRS: dict = {**_ALL_RECORD_ATTRS, **SIGNAL_ATTRS, "count": FLOAT}

FACT_TYPE = DataType.OBJECT("Fact", attributes=FACT_ATTRS, accessor=lambda obj, name: obj.get(name))
"""The type of a name bound with ``as:``: every fact and record attribute, missing ones are null."""


def normalize_dtype(name: str | None) -> str | None:
    """'float16' -> 'fp16', 'bfloat16' -> 'bf16', 'float32' -> 'fp32' (others unchanged)."""
    if not name:
        return None
    key = str(name).lower().replace("torch.", "").replace("jnp.", "")
    return {
        "float16": "fp16", "half": "fp16", "fp16": "fp16", "f16": "fp16", "mixed_float16": "fp16",
        "bfloat16": "bf16", "bf16": "bf16", "mixed_bfloat16": "bf16",
        "float32": "fp32", "fp32": "fp32", "f32": "fp32", "float": "fp32",
        "float64": "fp64", "double": "fp64", "fp64": "fp64",
    }.get(key, key)


# Loss names as headers and imported logs write them (Keras, PyTorch, optax) -> one name per loss.
_LOSS_ALIASES = {
    "mse": "mse", "mean_squared_error": "mse", "meansquarederror": "mse", "l2": "mse", "l2_loss": "mse",
    "squared_error": "mse", "mseloss": "mse",
    "mae": "mae", "mean_absolute_error": "mae", "meanabsoluteerror": "mae", "l1": "mae", "l1loss": "mae",
    "huber": "huber", "huber_loss": "huber", "huberloss": "huber", "smooth_l1": "huber", "smoothl1loss": "huber",
    "log_cosh": "log_cosh", "logcosh": "log_cosh",
    "msle": "msle", "mean_squared_logarithmic_error": "msle",
    "categorical_crossentropy": "softmax_cross_entropy", "sparse_categorical_crossentropy": "softmax_cross_entropy",
    "cross_entropy": "softmax_cross_entropy", "crossentropyloss": "softmax_cross_entropy",
    "softmax_cross_entropy_with_integer_labels": "softmax_cross_entropy",
    "binary_crossentropy": "binary_cross_entropy", "bceloss": "binary_cross_entropy",
    "bcewithlogitsloss": "binary_cross_entropy_with_logits",
    "sigmoid_binary_cross_entropy": "binary_cross_entropy_with_logits",
}
REGRESSION_LOSSES = {"mse", "mae", "huber", "log_cosh", "msle"}
CLASSIFICATION_LOSSES = {"softmax_cross_entropy", "binary_cross_entropy", "binary_cross_entropy_with_logits",
                         "cross_entropy_on_probabilities", "nll_on_probabilities", "double_softmax", "nll"}
# Layer types, or module-path parts (NNX cells own plain Linear layers: 'cell/dense_h').
RECURRENT_LAYERS = ("rnn", "gru", "lstm", "simplecell", "grucell", "lstmcell", "optimizedlstmcell", "cell",
                    "recurrent")
NORM_LAYERS = ("layernorm", "rmsnorm", "batchnorm", "groupnorm")


def normalize_loss_kind(name: str | None) -> str | None:
    """One name per loss: 'mean_squared_error' and 'MSELoss' -> 'mse', 'categorical_crossentropy' -> ...

    Example:
      >>> normalize_loss_kind("mean_squared_error"), normalize_loss_kind("Huber"), normalize_loss_kind("focal")
      ('mse', 'huber', 'focal')
    """
    if not name:
        return None
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    key = key.removeprefix("keras.losses.").removeprefix("nn.").removeprefix("optax.")
    return _LOSS_ALIASES.get(key, _LOSS_ALIASES.get(key.replace("_", ""), key))


def loss_family(kind: str | None, task: str | None) -> str | None:
    """'regression' or 'classification' by the loss (the task when the loss says nothing)."""
    if kind in REGRESSION_LOSSES:
        return "regression"
    if kind in CLASSIFICATION_LOSSES or (kind and "entropy" in kind):
        return "classification"
    return task if task in ("regression", "classification") else None


def _output_param_shapes(header) -> dict | None:
    """The output layer's parameter shapes by short name (kernel, weight, bias), or None."""
    if header is None:
        return None
    outs = [layer for layer in header.layers if layer.is_output]
    if not outs:
        return None
    return {p.name.rsplit(".", 1)[-1]: p.shape for p in outs[-1].params}


def output_units(header) -> float | None:
    """How many numbers the model outputs per example, read from the output layer's parameters."""
    params = _output_param_shapes(header)
    if params is None:
        return None
    if params.get("bias"):
        return float(params["bias"][-1])
    if params.get("kernel"):  # flax: (in, out)
        return float(params["kernel"][-1])
    if params.get("weight"):  # torch: (out, in)
        return float(params["weight"][0])
    return None


def output_fan_in(header) -> float | None:
    """How many features the output layer reads (the width of the representation it classifies),
    from its 2-D kernel (flax: (in, out)) or weight (torch: (out, in)); None when unknown."""
    params = _output_param_shapes(header)
    if params is None:
        return None
    kernel, weight = params.get("kernel"), params.get("weight")
    if kernel and len(kernel) == 2:
        return float(kernel[0])
    if weight and len(weight) == 2:
        return float(weight[1])
    return None


def _layer_kinds(header, names) -> bool:
    """Whether a layer's type, or a part of its module path, is one of ``names``."""
    if header is None:
        return False
    for layer in header.layers:
        parts = {p.lower() for p in layer.name.replace(".", "/").split("/")}
        if (layer.type or "").lower() in names or parts & set(names):
            return True
    return False


def _hyper(header, *names):
    if header is None or header.optimizer is None:
        return None
    for name in names:
        value = header.optimizer.hyperparameters.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def run_context(trace) -> dict:
    """The context facts of a trace (None where the trace does not say)."""
    h = trace.header
    lr = _hyper(h, "learning_rate", "lr")
    if lr is None and "lr" in trace.columns and trace.present["lr"].any():
        lr = float(trace.series("lr").values[0])
    status = None
    for event in trace.events:
        if getattr(event, "event", None) == "run_end":
            status = event.status
    layers = len(trace.layer_names)
    ctx = {
        "precision": normalize_dtype(h.compute_dtype) if h else None,
        "compute_dtype": h.compute_dtype if h else None,
        "param_precision": normalize_dtype(h.param_dtype) if h else None,
        "param_dtype": h.param_dtype if h else None,
        "optimizer": (h.optimizer.name.lower() if h and h.optimizer else None),
        "lr": lr,
        "momentum": _hyper(h, "momentum", "beta1", "b1"),
        "weight_decay": _hyper(h, "weight_decay"),
        "grad_clip": _hyper(h, "grad_clip", "max_grad_norm", "clip_norm"),
        "loss_kind": normalize_loss_kind(h.loss_kind) if h else None,
        "loss_family": loss_family(normalize_loss_kind(h.loss_kind) if h else None, h.task if h else None),
        "output_units": output_units(h),
        "output_fan_in": output_fan_in(h),
        "recurrent": _layer_kinds(h, RECURRENT_LAYERS) or bool(
            h and h.model_name and any(k in h.model_name.lower() for k in ("rnn", "gru", "lstm", "recurrent"))),
        "normalized_layers": _layer_kinds(h, NORM_LAYERS),
        "task": h.task if h else None,
        "num_classes": float(h.num_classes) if h and h.num_classes is not None else None,
        # The loss of a uniform guess over C classes: what a well-initialized classifier starts at.
        "ln_num_classes": math.log(h.num_classes) if h and h.num_classes and h.num_classes > 1 else None,
        "batch_size": float(h.batch_size) if h and h.batch_size is not None else None,
        "framework": h.framework if h else None,
        "loss_scaling": h.loss_scaling if h else None,
        "num_layers": float(layers) if layers else None,
        "num_steps": float(trace.num_steps),
        "first_step": float(trace.steps[0]) if trace.num_steps else None,
        "last_step": float(trace.steps[-1]) if trace.num_steps else None,
        "steps_planned": float(h.steps_planned) if h and h.steps_planned is not None else None,
        "world_size": float(h.world_size) if h else None,
        "seed": float(h.seed) if h and h.seed is not None else None,
        "device_platform": h.device_platform if h else None,
        "model_name": h.model_name if h else None,
        "run_status": status,
    }
    ctx["clipped"] = ctx["grad_clip"] is not None
    for name in BINDING_SYMBOLS:
        ctx[name] = None
    return ctx


def _label_shift(hist: dict, ref: dict) -> tuple[float | None, float | None]:
    """Total variation distance between two label histograms, and what random splitting gives.

    The second number is the expected distance if both splits were drawn from one pool
    (``0.5 * sum_i sqrt(2/pi) * sqrt(p_i (1 - p_i) (1/n + 1/m))``, the mean absolute deviation
    of each class share), so a rule can ask for a shift several times larger than chance.
    """
    n, m = sum(hist.values()), sum(ref.values())
    if not n or not m:
        return None, None
    labels = set(hist) | set(ref)
    tv = 0.5 * sum(abs(hist.get(k, 0) / n - ref.get(k, 0) / m) for k in labels)
    pooled = {k: (hist.get(k, 0) + ref.get(k, 0)) / (n + m) for k in labels}
    spread = math.sqrt(2 / math.pi) * math.sqrt(1 / n + 1 / m)
    noise = 0.5 * sum(spread * math.sqrt(p * (1 - p)) for p in pooled.values())
    return tv, noise


def record_attrs(kind: str, record, train=None) -> dict:
    """The attributes a ``record:`` clause sees for one record (floats for numbers).

    ``train`` is the training split's data record (for ``label_shift``: how far this split's
    label proportions are from the training set's).
    """
    attrs: dict = {}
    for name in RECORD_TYPES[kind]:
        value = getattr(record, name, None)
        if isinstance(value, bool) or value is None or isinstance(value, (str, list)):
            attrs[name] = value
        elif isinstance(value, (int, float)):
            attrs[name] = float(value)
        else:
            attrs[name] = str(value)
    if kind == "data":
        scores = sorted(record.feature_scores, key=lambda s: -s.score)
        attrs["max_feature_score"] = float(scores[0].score) if scores else None
        attrs["top_feature"] = scores[0].feature if scores else None
        attrs["second_feature_score"] = float(scores[1].score) if len(scores) > 1 else 0.0
        hist = record.label_histogram or {}
        total = sum(hist.values())
        attrs["majority_fraction"] = (max(hist.values()) / total) if total else None
        attrs["num_labels"] = float(len(hist)) if hist else None
        ref = (train.label_histogram or {}) if train is not None else {}
        attrs["label_shift"], attrs["label_shift_noise"] = _label_shift(hist, ref) if hist and ref else (None, None)
    elif kind == "event":
        attrs["input_shapes"] = _join_inputs(getattr(record, "input_shapes", None), _shape_text)
        attrs["input_dtypes"] = _join_inputs(getattr(record, "input_dtypes", None), str)
    elif kind == "eval":
        acc = record.metrics.get("accuracy")
        attrs["accuracy"] = float(acc) if acc is not None else None
    return attrs


def _shape_text(shape) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


def _join_inputs(items, fmt) -> str | None:
    """One text for the inputs of a module call: "(32, 13)", "(8, 20, 1) and (1, 8, 16)"."""
    if not items:
        return None
    return " and ".join("a non-array" if item is None else fmt(item) for item in items)


def records_of(trace, kind: str) -> list:
    """The records of one kind, in file order."""
    return {"data": trace.data, "check": trace.checks, "eval": trace.evals, "event": trace.events}[kind]
