"""The trace format: one typed record per line of a JSONL file.

A trace is a sequence of records, each a JSON object with a ``kind`` tag:

* ``header``: once per shard, first; what was trained, how and where.
* ``step``: one optimizer step's measurements.
* ``eval``: one evaluation of one split.
* ``data``: facts about one dataset split, measured once by a data probe.
* ``check``: the result of a gradient check or another probe.
* ``event``: something that happened once (first non-finite value, an exception, the end).

Per-layer statistics in ``step`` records are arrays aligned with the header's ``layers`` list
(forward order), so a 64-layer model writes one short array per statistic per step and loading is
a straight copy into columns. ``null`` in such an array means "not measured for this layer" (for
example a zero fraction for a layer that feeds no ReLU).

Non-finite floats are values, not errors. They are written as the JSON strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` so that every trace is standard JSON (readable by ``jq`` and
any JSON parser); the bare tokens ``NaN``/``Infinity`` that Python's ``json`` writes are accepted
on input too.
"""

# No ``from __future__ import annotations`` in a module of pydantic models: pydantic would then
# compile and evaluate every field's annotation from its text (~450 for the trace, diagnosis and
# rule-file models, ~2% of a diag explain).
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt

SCHEMA_NAME = "diag.trace"
SCHEMA_MAJOR = 1
SCHEMA_VERSION = f"{SCHEMA_NAME}/{SCHEMA_MAJOR}"

Scalar = Union[bool, int, float, str, None]
# A per-layer array: one entry per header layer, null where the statistic does not apply.
LayerValues = list[Union[float, None]]


class _Record(BaseModel):
    # forbid: a misspelled field is a user's mistake worth reporting, not something to drop.
    # defer_build: a model's validator is built when it first validates or dumps, not at import;
    # `diag explain` of a trace builds the few kinds it holds (the reader validates each record
    # with the model its tag names, diag.trace.builder.validate_record), ~4% of its CPU.
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings", frozen=False, defer_build=True)


class _Part(_Record):
    pass


# --------------------------------------------------------------------------- header


class ParamInfo(_Part):
    """One parameter tensor of a layer."""

    name: str = Field(description="Parameter name within its layer, e.g. 'kernel', 'weight', 'bias'.")
    shape: list[NonNegativeInt]
    dtype: str = Field(description="Storage dtype, e.g. 'float32', 'bfloat16'.")


class LayerInfo(_Part):
    """One layer (a module that owns parameters), in forward order."""

    name: str = Field(description="Module path, e.g. 'layers/0' or 'encoder.block.3.fc1'.")
    type: str | None = Field(default=None, description="Module class, e.g. 'Linear', 'Conv', 'LayerNorm'.")
    params: list[ParamInfo] = Field(default_factory=list)
    activation: str | None = Field(
        default=None,
        description="Nonlinearity applied to this layer's output before the next layer "
        "('relu', 'sigmoid', 'tanh', 'gelu', ...), or null for none/unknown.",
    )
    compute_dtype: str | None = None
    is_output: bool = Field(default=False, description="True for the layer that produces the model output.")
    output_element: str | None = Field(
        default=None,
        description="Which part of a structured output (tuple, dataclass) the activation statistics "
        "measure, e.g. 'output[0]' for a GRU's sequence output or 'last_hidden_state'; null for a tensor.",
    )


class OptimizerInfo(_Part):
    name: str = Field(description="e.g. 'adam', 'sgd', 'adamw'.")
    hyperparameters: dict[str, Scalar] = Field(default_factory=dict)


class Header(_Record):
    """What was trained, how and where. The first record of every trace shard."""

    kind: Literal["header"] = "header"
    schema_version: str = Field(
        default=SCHEMA_VERSION,
        alias="schema",
        description="Trace format and major version, 'diag.trace/1'.",
    )
    run_id: str
    created_at: str | None = Field(default=None, description="ISO 8601 time the run started.")
    framework: str = Field(description="'flax', 'torch', 'jax' or another name.")
    framework_version: str | None = None
    diag_version: str | None = None
    versions: dict[str, str] = Field(default_factory=dict, description="Other library versions.")
    model_name: str | None = None
    layers: list[LayerInfo] = Field(default_factory=list, description="Layers in forward order.")
    param_count: NonNegativeInt | None = None
    optimizer: OptimizerInfo | None = None
    param_dtype: str | None = None
    compute_dtype: str | None = None
    task: Literal["classification", "regression", "language_modeling", "other"] | None = None
    num_classes: NonNegativeInt | None = None
    loss_kind: str | None = Field(
        default=None,
        description="e.g. 'softmax_cross_entropy' (expects logits), 'cross_entropy_on_probabilities', "
        "'mse', 'binary_cross_entropy_with_logits'.",
    )
    batch_size: NonNegativeInt | None = None
    steps_planned: NonNegativeInt | None = None
    seed: int | None = None
    device_platform: str | None = Field(default=None, description="'cpu', 'gpu', 'tpu', 'cuda', 'mps'.")
    device_count: NonNegativeInt | None = None
    world_size: NonNegativeInt = 1
    process_index: NonNegativeInt = 0
    loss_scaling: str | None = Field(default=None, description="'dynamic', 'static' or null when not used.")
    recording: dict[str, Scalar] = Field(
        default_factory=dict, description="How the adapter recorded (intervals, which statistics)."
    )
    tags: dict[str, Scalar] = Field(default_factory=dict, description="Free-form user tags.")

    model_config = ConfigDict(populate_by_name=True)


# --------------------------------------------------------------------------- step


class LayerStats(_Part):
    """Per-layer optimizer-side statistics, each array aligned with the header's layers."""

    grad_norm: LayerValues | None = None
    param_norm: LayerValues | None = None
    update_norm: LayerValues | None = None
    update_ratio: LayerValues | None = Field(
        default=None, description="Update-to-weight ratio: norm of this step's update / norm of the parameters."
    )
    grad_nonfinite: LayerValues | None = Field(
        default=None, description="Count (or 0/1 flag) of non-finite gradient entries."
    )
    param_nonfinite: LayerValues | None = None


class ActivationStats(_Part):
    """Per-layer statistics of each layer's output, aligned with the header's layers."""

    mean: LayerValues | None = None
    std: LayerValues | None = None
    zero_fraction: LayerValues | None = Field(
        default=None, description="Share of exactly-zero outputs after the layer's ReLU-like activation."
    )
    saturation_fraction: LayerValues | None = Field(
        default=None, description="Share of sigmoid/tanh outputs within 1e-3 of their bounds."
    )
    nonfinite: LayerValues | None = Field(default=None, description="Count of non-finite outputs.")


class BatchStats(_Part):
    """Statistics of one input batch (or of its labels)."""

    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    nonfinite: float | None = Field(default=None, description="Count of non-finite entries.")
    label_entropy: float | None = Field(
        default=None, description="Entropy (nats) of the batch's label histogram; near 0 for label-sorted data."
    )
    distinct_labels: NonNegativeInt | None = None


class Step(_Record):
    """Measurements of one optimizer step."""

    kind: Literal["step"] = "step"
    step: NonNegativeInt
    epoch: NonNegativeInt | None = None
    time: float | None = Field(default=None, description="Wall-clock time (seconds since the epoch).")
    step_time: float | None = Field(default=None, description="Seconds this step took.")
    data_wait_time: float | None = Field(default=None, description="Seconds spent waiting for the batch.")
    loss: float | None = None
    loss_per_replica: list[float] | None = None
    lr: float | None = Field(default=None, description="Learning rate used by this step (first param group).")
    lr_per_group: list[float] | None = None
    grad_norm: float | None = Field(default=None, description="Global gradient norm over all parameters.")
    grad_norm_before_clip: float | None = Field(
        default=None,
        description="Global gradient norm before clipping (the norm torch.nn.utils.clip_grad_norm_ computed, "
        "or the raw gradient's norm under an optax.clip_by_global_norm first in the chain); "
        "``grad_norm`` is the norm the optimizer used. The bound is the header optimizer's ``grad_clip``.",
    )
    update_norm: float | None = None
    param_norm: float | None = None
    loss_scale: float | None = Field(default=None, description="Dynamic loss scale, when loss scaling is on.")
    skipped: bool | None = Field(default=None, description="True when the optimizer skipped this step.")
    layers: LayerStats | None = None
    activations: ActivationStats | None = None
    input: BatchStats | None = None
    labels: BatchStats | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict, description="Training metrics, e.g. accuracy.")
    memory_bytes: float | None = None


# --------------------------------------------------------------------------- eval


class Eval(_Record):
    """One evaluation of one split."""

    kind: Literal["eval"] = "eval"
    step: NonNegativeInt
    split: str = Field(description="'val', 'test', 'train_eval' (a fixed train subset), ...")
    loss: float | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict)
    model_mode: Literal["train", "eval"] | None = Field(
        default=None, description="Mode the model was in during this evaluation (dropout/batch norm)."
    )
    examples: NonNegativeInt | None = None
    accuracy_rule: str | None = Field(
        default=None,
        description="How metrics.accuracy was computed: 'argmax' (one logit per class), 'logit>0' "
        "(a single logit), 'probability>0.5' (a single sigmoid output), 'per_label logit>0' or "
        "'per_label probability>0.5' (multi-label: the share of correct label decisions).",
    )


# --------------------------------------------------------------------------- data


class FeatureScore(_Part):
    feature: str
    score: float = Field(description="Single-feature predictive power against the label, 0..1.")
    metric: str = Field(default="accuracy", description="How the score was measured.")


class Data(_Record):
    """Facts about one dataset split, measured once by the data probe."""

    kind: Literal["data"] = "data"
    split: str
    size: NonNegativeInt
    num_features: NonNegativeInt | None = None
    label_histogram: dict[str, NonNegativeInt] | None = None
    overlap_with_train: NonNegativeInt | None = Field(
        default=None, description="Examples of this split whose row hash also occurs in train."
    )
    overlap_fraction: float | None = None
    feature_scores: list[FeatureScore] = Field(default_factory=list)
    id_like_features: list[str] = Field(default_factory=list)
    time_min: float | None = None
    time_max: float | None = None
    input_mean: float | None = None
    input_std: float | None = None
    input_nonfinite: NonNegativeInt | None = None
    conflicting_labels: NonNegativeInt | None = Field(
        default=None, description="Examples whose identical input occurs with a different label."
    )
    conflicting_fraction: float | None = None


# --------------------------------------------------------------------------- check


class Check(_Record):
    """The result of a gradient check or another probe."""

    kind: Literal["check"] = "check"
    name: str = Field(description="e.g. 'gradient', 'custom_vjp', 'determinism'.")
    target: str | None = Field(default=None, description="Function, layer or parameter checked.")
    passed: bool
    method: str | None = None
    error: float | None = Field(default=None, description="Relative error measured.")
    threshold: float | None = None
    dtype: str | None = None
    directions: NonNegativeInt | None = None
    worst_direction: NonNegativeInt | None = None
    worst_elements: list[list[int]] = Field(default_factory=list)
    step: NonNegativeInt | None = None
    message: str | None = None


# --------------------------------------------------------------------------- events


class _Event(_Record):
    kind: Literal["event"] = "event"
    step: NonNegativeInt | None = None
    time: float | None = None
    message: str | None = None


class NonFiniteEvent(_Event):
    """The first step where a NaN/Inf was seen, and the first tensor in forward order that held one."""

    event: Literal["nonfinite"] = "nonfinite"
    tensor: str = Field(description="'input', 'activation', 'loss', 'gradient', 'parameter', 'update'.")
    layer: str | None = Field(
        default=None,
        description="Module path where it was born: a header layer, or a parameter-free module "
        "(softmax, a custom log) whose output was non-finite while its inputs were finite.",
    )
    module_type: str | None = Field(default=None, description="Class of that module, e.g. 'Softmax', 'Linear'.")
    value: float | None = None
    after: str | None = Field(
        default=None,
        description="The last submodule of ``layer`` that returned a finite output before the value "
        "appeared: it was made by ``layer``'s own code after that call (a plain function such as log "
        "or a division between two layers).",
    )


class NonFiniteReplayEvent(_Event):
    """The failing step replayed under the framework's NaN debugger (opt-in: it is slow).

    PyTorch: ``torch.autograd.detect_anomaly``; JAX: ``jax.debug_nans``. Names the operation that
    first produced a NaN/Inf and the line of the user's code that called it.
    """

    event: Literal["nonfinite_replay"] = "nonfinite_replay"
    tool: str = Field(description="'torch.autograd.detect_anomaly' or 'jax.debug_nans'.")
    operation: str | None = Field(default=None, description="The operation that produced it, e.g. 'LogBackward0', 'log'.")
    source: str | None = Field(default=None, description="'file.py:LINE in function' of the user's code that called it.")
    traceback: str | None = None


class ExceptionEvent(_Event):
    """An exception that ended the run, and where in the model it was raised.

    ``layer``, ``module_type``, ``input_shapes`` and ``input_dtypes`` describe the innermost module
    whose forward pass was running when it was raised (parameter-free modules included), so a
    shape or dtype mismatch can be diagnosed from the trace alone.
    """

    event: Literal["exception"] = "exception"
    type: str = Field(description="Exception class, e.g. 'FloatingPointError'.")
    traceback: str | None = None
    last_good_step: NonNegativeInt | None = None
    layer: str | None = Field(default=None, description="Module path active when it was raised, e.g. 'encoder.fc1'.")
    module_type: str | None = Field(default=None, description="Class of that module, e.g. 'Linear', 'Conv'.")
    input_shapes: list[list[NonNegativeInt] | None] | None = Field(
        default=None,
        description="Shape of each positional input of that module's forward call (null for a non-array input).",
    )
    input_dtypes: list[str | None] | None = Field(
        default=None, description="dtype of each positional input, e.g. 'float32', 'int64' (null for a non-array)."
    )


class RunEndEvent(_Event):
    """How the run ended. ``stopped``: the guard stopped a doomed run (its reason is a ``note`` event)."""

    event: Literal["run_end"] = "run_end"
    status: Literal["completed", "crashed", "interrupted", "killed", "stopped"]
    steps: NonNegativeInt | None = None


class SignalEvent(_Event):
    event: Literal["signal"] = "signal"
    signal: str = Field(description="'SIGINT', 'SIGTERM', ...")


class NoteEvent(_Event):
    event: Literal["note"] = "note"
    level: Literal["info", "warning", "error"] = "info"


Event = Annotated[
    Union[NonFiniteEvent, NonFiniteReplayEvent, ExceptionEvent, RunEndEvent, SignalEvent, NoteEvent],
    Field(discriminator="event"),
]

Record = Annotated[Union[Header, Step, Eval, Data, Check, Event], Field(discriminator="kind")]
RECORD_KINDS = ("header", "step", "eval", "data", "check", "event")
