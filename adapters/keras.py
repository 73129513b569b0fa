"""diag inside Keras 3 ``fit``: a callback that writes the trace the other adapters write.

Install with ``pip install "diag[keras]"``. One line::

    model.fit(x, y, callbacks=[DiagCallback("run.jsonl", guard=True)])

On the JAX backend (as the Flax adapter does, inside the jitted step) the callback wraps the
model's ``stateless_compute_loss`` and its optimizer's ``stateless_apply``, the two pure functions
Keras' train step calls, so that each step also computes, on the device: the batch's loss and
input statistics, and per variable the sums of squares of the gradient, the parameter and the
update. ``jax.debug.callback`` hands them to the host, where they become per-layer gradient,
parameter and update norms and update-to-weight ratios aligned with the header's layers
(``model.layers`` order). On other backends only what ``logs`` holds is recorded (Keras' running
mean of the epoch's loss, training metrics) with the learning rate.

Validation metrics come from Keras' ``logs`` (``val_loss``, ``val_accuracy``, ...). With a guard,
a doomed run is stopped through ``model.stop_training``.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Mapping

import keras
import numpy as np

import diag
from diag.adapters._framework_logs import as_float, evaluations, training_metrics
from diag.guard import Guard
from diag.trace.records import (
    BatchStats, Eval, Header, LayerInfo, LayerStats, NonFiniteEvent, OptimizerInfo, ParamInfo, RunEndEvent, Step,
)
from diag.trace.writer import TraceWriter

_ACTIVATIONS = {"relu", "sigmoid", "tanh", "gelu", "elu", "selu", "softplus", "silu", "swish", "leaky_relu"}


def _weighted_layers(model) -> list:
    """Layers that own trainable weights, in forward order (nested models flattened)."""
    found = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            found += _weighted_layers(layer)
        elif layer.trainable_weights:
            found.append(layer)
    return found


def _activation(layer) -> str | None:
    fn = getattr(layer, "activation", None)
    name = getattr(fn, "__name__", None)
    return name if name in _ACTIVATIONS else None


class DiagCallback(keras.callbacks.Callback):
    """Records a Keras 3 ``fit`` into a diag trace; optionally stops a doomed run.

    Args:
      path: the ``.jsonl`` trace file.
      guard: ``True`` or a :class:`diag.guard.Guard` (stops via ``model.stop_training``).
      task, num_classes, loss_kind, batch_size, steps_planned, seed, run_id, tags: header fields.
      flush_every: records buffered before the file is written.

    Example:
      >>> model.fit(x, y, epochs=3, validation_data=(vx, vy),
      ...           callbacks=[DiagCallback("run.jsonl", task="classification", guard=True)])  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, *, guard: Guard | bool | None = None, task: str | None = None,
                 num_classes: int | None = None, loss_kind: str | None = None, batch_size: int | None = None,
                 steps_planned: int | None = None, seed: int | None = None, run_id: str | None = None,
                 tags: Mapping[str, object] | None = None, flush_every: int = 50):
        super().__init__()
        self.path = path
        self.guard = Guard.coerce(guard)
        self.header_fields = dict(task=task, num_classes=num_classes, loss_kind=loss_kind, batch_size=batch_size,
                                  steps_planned=steps_planned, seed=seed, tags=dict(tags or {}))
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.flush_every = flush_every
        self.writer: TraceWriter | None = None
        self.step = 0
        self._layers: list = []
        self._var_layer: np.ndarray | None = None
        self._device: dict[str, np.ndarray] = {}
        self._originals: dict[str, object] = {}
        self._nonfinite_reported = False
        self._last_time: float | None = None

    # ------------------------------------------------------------------ fit events

    def on_train_begin(self, logs=None) -> None:
        model = self.model
        self.writer = TraceWriter(self.path, flush_every=self.flush_every, flush_seconds=1.0, background=True)
        self._layers = _weighted_layers(model)
        owner = {id(v): i for i, layer in enumerate(self._layers) for v in layer.trainable_weights}
        self._var_layer = np.array([owner.get(id(v), -1) for v in model.trainable_variables], dtype=np.int64)
        self.writer.write(self._header())
        if keras.backend.backend() == "jax":
            self._wrap_jax_step()
        self._last_time = None

    def on_train_batch_end(self, batch, logs=None) -> None:
        logs = logs or {}
        if self._originals:
            import jax

            jax.effects_barrier()  # the step's host callbacks have run
        record = self._step_record(logs)
        self.writer.write(record)
        finite = record.loss is not None and math.isfinite(record.loss) and (
            record.grad_norm is None or math.isfinite(record.grad_norm))
        if not finite and not self._nonfinite_reported:
            self._nonfinite_reported = True
            self.writer.write(self._nonfinite_event(record))
        step, self.step = self.step, self.step + 1
        if self.guard is not None and self.guard.after_step(step, self.writer, finite=finite) is not None:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None) -> None:
        if self.writer is None:
            return
        for split, (loss, metrics) in evaluations(logs or {}).items():
            self.writer.write(Eval(step=max(self.step - 1, 0), split=split, loss=loss, metrics=metrics,
                                   model_mode="eval"))

    def on_train_end(self, logs=None) -> None:
        self._unwrap()
        if self.writer is not None:
            stopped = self.guard is not None and self.guard.stopped
            self.writer.write(RunEndEvent(step=max(self.step - 1, 0), time=time.time(),
                                          status="stopped" if stopped else "completed",
                                          steps=self.step))
            self.writer.close()
            self.writer = None

    # ------------------------------------------------------------------ records

    def _header(self) -> Header:
        model, opt = self.model, self.model.optimizer
        layers = [LayerInfo(name=layer.path if hasattr(layer, "path") else layer.name, type=type(layer).__name__,
                            params=[ParamInfo(name=v.name, shape=list(v.shape), dtype=str(v.dtype))
                                    for v in layer.trainable_weights],
                            activation=_activation(layer), is_output=i == len(self._layers) - 1)
                  for i, layer in enumerate(self._layers)]
        hyper = {}
        for key, value in (opt.get_config() if opt is not None else {}).items():
            if isinstance(value, (int, float, str, bool)) and key != "name":
                hyper["lr" if key == "learning_rate" else key] = value
        param_dtypes = {str(v.dtype) for v in model.trainable_variables}
        return Header(
            run_id=self.run_id, created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            framework="keras", framework_version=keras.__version__, diag_version=diag.__version__,
            versions={"backend": keras.backend.backend()}, model_name=type(model).__name__ if model.name is None
            else model.name, layers=layers, param_count=int(sum(np.prod(v.shape) for v in model.trainable_variables)),
            optimizer=OptimizerInfo(name=type(opt).__name__.lower(), hyperparameters=hyper) if opt else None,
            param_dtype=param_dtypes.pop() if len(param_dtypes) == 1 else None,
            compute_dtype=str(getattr(model, "compute_dtype", None) or "") or None,
            device_platform="cpu" if keras.backend.backend() != "jax" else _jax_platform(),
            recording={"adapter": "diag.adapters.keras", "every": 1,
                       "gradients": "optimizer.stateless_apply" if keras.backend.backend() == "jax" else "off"},
            **{k: v for k, v in self.header_fields.items()},
        )

    def _step_record(self, logs: Mapping) -> Step:
        now = time.time()
        got, self._device = self._device, {}
        loss = float(got["loss"]) if "loss" in got else as_float(logs.get("loss"))
        fields: dict = dict(step=self.step, time=now, loss=loss, lr=self._learning_rate(got),
                            metrics=training_metrics(logs))
        if self._last_time is not None:
            fields["step_time"] = now - self._last_time
        self._last_time = now
        if "sums" in got:
            grad_sq, param_sq, update_sq = self._per_layer(got["sums"])
            ratio = np.sqrt(update_sq) / np.where(param_sq > 0, np.sqrt(param_sq), np.nan)
            fields.update(grad_norm=float(np.sqrt(grad_sq.sum())), param_norm=float(np.sqrt(param_sq.sum())),
                          update_norm=float(np.sqrt(update_sq.sum())))
            fields["layers"] = LayerStats(grad_norm=np.sqrt(grad_sq).tolist(), param_norm=np.sqrt(param_sq).tolist(),
                                          update_norm=np.sqrt(update_sq).tolist(), update_ratio=ratio.tolist(),
                                          grad_nonfinite=(~np.isfinite(grad_sq)).astype(float).tolist())
        if "input" in got:
            mean, sq, lo, hi, bad, n = (float(v) for v in got["input"])
            std = math.sqrt(max(sq / n - mean * mean, 0.0)) if n and math.isfinite(sq) else float("nan")
            fields["input"] = BatchStats(mean=mean, std=std, min=lo, max=hi, nonfinite=bad)
        return Step(**fields)

    def _per_layer(self, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(variables, 3)`` sums of squares -> three ``(layers,)`` arrays."""
        width = len(self._layers)
        out = []
        for column in range(3):
            values = np.zeros(width)
            mask = self._var_layer >= 0
            np.add.at(values, self._var_layer[mask], sums[mask, column])
            out.append(values)
        return out[0], out[1], out[2]

    def _learning_rate(self, got) -> float | None:
        if "lr" in got:
            return float(got["lr"])
        opt = self.model.optimizer
        try:
            return float(np.asarray(opt.learning_rate))
        except (TypeError, ValueError, AttributeError):
            return None

    def _nonfinite_event(self, record: Step) -> NonFiniteEvent:
        """The first non-finite tensor in forward order that this callback sees."""
        if record.input is not None and record.input.nonfinite:
            return NonFiniteEvent(step=record.step, time=record.time, tensor="input", value=record.input.nonfinite)
        if record.layers is not None and record.layers.grad_nonfinite and any(record.layers.grad_nonfinite):
            first = next(i for i, bad in enumerate(record.layers.grad_nonfinite) if bad)
            if record.loss is None or math.isfinite(record.loss):
                return NonFiniteEvent(step=record.step, time=record.time, tensor="gradient",
                                      layer=self._layers[first].path if hasattr(self._layers[first], "path")
                                      else self._layers[first].name)
        return NonFiniteEvent(step=record.step, time=record.time, tensor="loss", value=record.loss)

    # ------------------------------------------------------------------ the jitted step (JAX)

    def _wrap_jax_step(self) -> None:
        """Wrap the two pure functions Keras' JAX train step calls; each sends its statistics to
        the host with ``jax.debug.callback`` (no blocking inside the step)."""
        import jax
        import jax.numpy as jnp

        model, opt = self.model, self.model.optimizer
        compute_loss, apply = model.stateless_compute_loss, opt.stateless_apply
        self._originals = {"stateless_compute_loss": compute_loss, "stateless_apply": apply}

        def stateless_compute_loss(*args, **kwargs):
            loss, variables = compute_loss(*args, **kwargs)
            if kwargs.get("training", True):
                x = kwargs.get("x")
                leaves = [a for a in jax.tree_util.tree_leaves(x) if jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating)]
                if leaves:
                    x = jnp.asarray(leaves[0], jnp.float32)
                    stats = jnp.stack([jnp.nanmean(x), jnp.nanmean(x * x), jnp.nanmin(x), jnp.nanmax(x),
                                       jnp.sum(~jnp.isfinite(x)).astype(jnp.float32), jnp.float32(x.size)])
                    jax.debug.callback(self._from_device, "input", stats)
                jax.debug.callback(self._from_device, "loss", loss)
            return loss, variables

        def stateless_apply(optimizer_variables, grads, trainable_variables):
            new_trainable, new_optimizer = apply(optimizer_variables, grads, trainable_variables)
            sums = jnp.stack([jnp.stack([jnp.sum(jnp.square(g.astype(jnp.float32))),
                                         jnp.sum(jnp.square(p.astype(jnp.float32))),
                                         jnp.sum(jnp.square((q - p).astype(jnp.float32)))])
                              for g, p, q in zip(grads, trainable_variables, new_trainable)])
            with keras.StatelessScope(state_mapping=list(zip(opt.variables, optimizer_variables))):
                lr = jnp.asarray(opt.learning_rate, jnp.float32)  # the rate this step used (schedules too)
            jax.debug.callback(self._from_device, "sums", sums)
            jax.debug.callback(self._from_device, "lr", lr)
            return new_trainable, new_optimizer

        model.stateless_compute_loss = stateless_compute_loss
        opt.stateless_apply = stateless_apply
        model.make_train_function(force=True)

    def _from_device(self, name: str, value) -> None:
        self._device[name] = np.asarray(value)

    def _unwrap(self) -> None:
        if not self._originals:
            return
        del self.model.stateless_compute_loss  # the instance attributes shadowed the methods
        del self.model.optimizer.stateless_apply
        self._originals = {}
        self.model.make_train_function(force=True)


def _jax_platform() -> str:
    import jax

    return jax.devices()[0].platform


__all__ = ["DiagCallback"]
