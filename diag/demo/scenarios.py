"""The demo's scenarios: one healthy run and runs with one planted fault each.

Each scenario names the catalog cause (shared/CAUSES.md) that ``diag explain`` should rank first,
and is small enough to train in a few seconds on two CPU cores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from diag.demo import data as D


@dataclass(frozen=True)
class Scenario:
    """A demo run: the data, the model, the optimizer, and what goes wrong.

    Attributes:
      name: the CLI name.
      summary: one line for ``diag demo --list``.
      expected_cause: the catalog cause id this run plants (None for the healthy run).
      data: builds the dataset.
      hidden: hidden layer widths.
      activation: 'relu', 'sigmoid' or 'tanh'.
      optimizer: 'adam' or 'sgd'.
      lr: learning rate.
      steps: default number of steps.
      batch_size: examples per step.
      bias_init: constant initial bias of hidden layers.
      kernel_scale: multiplies the default (LeCun normal) initial weights.
      dtype: compute dtype ('float32', 'float16', 'bfloat16').
      param_dtype: parameter storage dtype.
      loss_scaling: use diag's dynamic loss scale (float16 training).
    """

    name: str
    summary: str
    expected_cause: str | None
    data: Callable[[], D.Dataset] = field(default=lambda: D.gaussian_mixture())
    hidden: tuple[int, ...] = (64, 64)
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 3e-3
    steps: int = 200
    batch_size: int = 64
    bias_init: float = 0.0
    kernel_scale: float = 1.0
    dtype: str = "float32"
    param_dtype: str = "float32"
    loss_scaling: bool = False


SCENARIOS: dict[str, Scenario] = {s.name: s for s in [
    Scenario("healthy", "a small MLP that learns a 4-class problem: nothing to fix", None),
    Scenario("lr_too_high", "SGD with learning rate 8: the loss jumps and diverges", "lr_too_high",
             optimizer="sgd", lr=8.0),
    Scenario("vanishing_gradients", "eight sigmoid layers with small weights: early layers get no gradient",
             "vanishing_gradients", hidden=(64,) * 8, activation="sigmoid", optimizer="sgd", lr=0.05,
             kernel_scale=0.3),
    Scenario("dead_relu", "ReLU layers initialised with bias -3: most units never fire", "dead_relu",
             bias_init=-3.0, lr=1e-3),
    Scenario("target_leakage", "a feature that is the label in disguise: validation accuracy ~100% at once",
             "target_leakage", data=lambda: D.with_target_leak(D.gaussian_mixture())),
    Scenario("fp16_overflow", "float16 compute on unnormalized inputs: activations overflow 65504",
             "fp16_overflow", data=lambda: D.scaled(D.gaussian_mixture(), 20000.0), dtype="float16",
             loss_scaling=True, steps=60),
    Scenario("bf16_update_stagnation", "bfloat16 parameters with a small learning rate: updates round away",
             "bf16_update_stagnation", param_dtype="bfloat16", dtype="bfloat16", optimizer="sgd", lr=1e-3),
    Scenario("overfitting", "a wide MLP on 96 examples: train loss falls, validation loss rises",
             "overfitting", data=lambda: D.small(D.with_label_noise(D.gaussian_mixture(), share=0.2), 96),
             hidden=(256, 256), lr=3e-3, steps=300),
    Scenario("train_val_overlap", "60% of the validation set copied from train", "train_val_overlap",
             data=lambda: D.with_val_copied_from_train(D.gaussian_mixture())),
    Scenario("nan_in_input_data", "a few input values are NaN: the loss turns NaN", "nan_in_input_data",
             data=lambda: D.with_nan_rows(D.gaussian_mixture())),
    Scenario("label_noise", "40% of the training labels are random", "label_noise",
             data=lambda: D.with_label_noise(D.gaussian_mixture())),
]}
