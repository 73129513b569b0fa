"""diag inside PyTorch Lightning: one callback that records the trace the PyTorch bridge records.

Install with ``pip install "diag[lightning]"``. One line::

    trainer = L.Trainer(callbacks=[DiagCallback("run.jsonl", guard=True)])

The callback is a thin layer over :class:`diag.adapters.torch.TorchRecorder`: before the first
training batch it attaches a recorder to the ``LightningModule`` and its (first) optimizer, whose hooks
on the optimizer's step measure gradients, parameters and updates as in a plain loop. After each
optimizer step it records the loss Lightning returned and the batch's labels; after each
validation it writes the metrics the module logged (``self.log("val_loss", ...)``,
``val_acc``, ...) as a ``val`` evaluation. With a guard, a doomed run is stopped through
``trainer.should_stop`` and the reason is written into the trace.
"""

from __future__ import annotations

import os
import sys

import lightning.pytorch as pl
import torch

from diag.adapters._framework_logs import evaluations, training_metrics
from diag.adapters.torch import TorchRecorder
from diag.guard import Guard


def split_batch(batch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(inputs, labels)`` of a batch shaped ``(x, y, ...)`` or ``{"input..": x, "label..": y}``."""
    if isinstance(batch, (tuple, list)) and batch and all(isinstance(b, torch.Tensor) for b in batch[:2]):
        return batch[0], (batch[1] if len(batch) > 1 else None)
    if isinstance(batch, dict):
        inputs = next((v for k, v in batch.items() if k.startswith("input") and isinstance(v, torch.Tensor)), None)
        labels = next((v for k, v in batch.items() if k.startswith("label") and isinstance(v, torch.Tensor)), None)
        return inputs, labels
    return (batch, None) if isinstance(batch, torch.Tensor) else (None, None)


class DiagCallback(pl.Callback):
    """Records a Lightning run into a diag trace; optionally stops it when it is doomed.

    Args:
      path: the ``.jsonl`` trace file.
      guard: ``True`` or a :class:`diag.guard.Guard` to stop doomed runs (``trainer.should_stop``).
      **options: :class:`~diag.adapters.torch.TorchRecorder` options (``task``, ``num_classes``,
        ``loss_kind``, ``costly_every``, ``seed``, ...). ``batch_size`` and ``steps_planned``
        default to what the trainer knows.

    Example:
      >>> trainer = L.Trainer(max_steps=300, callbacks=[DiagCallback("run.jsonl", task="classification",
      ...                                                             num_classes=4, guard=True)])  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, *, guard: Guard | bool | None = None, **options):
        super().__init__()
        self.path = path
        self.guard = Guard.coerce(guard)
        self.options = options
        self.recorder: TorchRecorder | None = None
        self._measure = None
        self._recorded_step = -1

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx) -> None:
        # Attached before the first forward pass, when the first batch tells the batch size.
        if self.recorder is not None or not trainer.is_global_zero or not trainer.optimizers:
            return
        options = dict(self.options)
        options.setdefault("steps_planned", trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else None)
        options.setdefault("capture_crashes", False)  # Lightning reports exceptions: on_exception
        inputs, _ = split_batch(batch)
        options.setdefault("batch_size", getattr(trainer.train_dataloader, "batch_size", None)
                           or (int(inputs.shape[0]) if inputs is not None and inputs.dim() else None))
        self.recorder = TorchRecorder(pl_module, trainer.optimizers[0], self.path, **options)
        # Lightning runs forward and backward inside optimizer.step(closure): gradients are
        # measured in on_before_optimizer_step, once they exist.
        self._measure = self.recorder.measure_after_closure()
        self._recorded_step = trainer.global_step - 1

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.recorder is not None and optimizer is self.recorder.optimizer:
            self._measure()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        rec = self.recorder
        # Once per optimizer step: with gradient accumulation several batches make one step.
        if rec is None or trainer.global_step - 1 <= self._recorded_step:
            return
        self._recorded_step = trainer.global_step - 1
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        inputs, labels = split_batch(batch)
        logged = {k: v for k, v in trainer.callback_metrics.items() if k.endswith("_step")}
        rec.record(loss, inputs=inputs, labels=labels, epoch=trainer.current_epoch,
                   metrics=training_metrics(logged) or None)
        if self.guard is not None:
            verdict = self.guard.after_step(rec.step - 1, rec.writer, finite=rec.last_good_step == rec.step - 1)
            if verdict is not None:
                trainer.should_stop = True

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.recorder is None or trainer.sanity_checking:
            return
        for split, (loss, metrics) in evaluations(trainer.callback_metrics).items():
            self.recorder.log_eval(split, loss, metrics, model_mode="eval")

    def on_train_end(self, trainer, pl_module) -> None:
        if self.recorder is not None:
            self.recorder.close("stopped" if self.guard is not None and self.guard.stopped else "completed")
            self.recorder = None

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        if self.recorder is not None:
            self.recorder.__exit__(type(exception), exception, exception.__traceback__ or sys.exc_info()[2])
            self.recorder = None

    def state_dict(self) -> dict:
        return {"path": str(self.path)}


__all__ = ["DiagCallback", "split_batch"]
