"""diag inside the Hugging Face ``Trainer``: a ``TrainerCallback`` over the PyTorch bridge.

Install with ``pip install "diag[huggingface]"``. One line::

    trainer = Trainer(model, args, train_dataset=train, callbacks=[DiagCallback("run.jsonl", guard=True)])

At ``on_train_begin`` the callback attaches a :class:`diag.adapters.torch.TorchRecorder` to the
model and the optimizer the Trainer built (unwrapped from accelerate's wrapper), whose hooks on
the optimizer's step see the gradients after backward (and after the Trainer's clipping), as in a
plain loop. The Trainer does not hand callbacks the loss of each step, so the model's own
output is read: a forward hook keeps ``outputs["loss"]`` (the mean over the forward passes of
one optimizer step when gradients accumulate) with the batch's inputs and ``labels``. Evaluation
metrics come from the Trainer's ``metrics`` (``eval_loss``, ``eval_accuracy``, ...) as a ``val``
evaluation. With a guard, a doomed run is stopped through ``control.should_training_stop``.
"""

from __future__ import annotations

import os

import torch
from transformers import TrainerCallback

from diag.adapters._framework_logs import evaluations
from diag.adapters.torch import TorchRecorder
from diag.guard import Guard

# Keyword arguments of a model call that are not its input features.
_NOT_INPUTS = ("labels", "attention_mask", "token_type_ids", "position_ids", "return_dict", "head_mask")


def _loss_of(output) -> torch.Tensor | None:
    if isinstance(output, dict) or hasattr(output, "keys"):
        loss = output.get("loss") if hasattr(output, "get") else None
    elif isinstance(output, (tuple, list)) and output:
        loss = output[0]
    else:
        loss = None
    return loss if isinstance(loss, torch.Tensor) and loss.numel() == 1 else None


class DiagCallback(TrainerCallback):
    """Records a Hugging Face ``Trainer`` run into a diag trace; optionally stops a doomed one.

    Args:
      path: the ``.jsonl`` trace file.
      guard: ``True`` or a :class:`diag.guard.Guard` (stops via ``control.should_training_stop``).
      **options: :class:`~diag.adapters.torch.TorchRecorder` options (``task``, ``num_classes``,
        ``loss_kind``, ``costly_every``, ...). ``batch_size``, ``steps_planned`` and ``seed``
        default to the ``TrainingArguments``.

    Example:
      >>> trainer = Trainer(model, args, train_dataset=train,
      ...                   callbacks=[DiagCallback("run.jsonl", guard=True)])  # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike, *, guard: Guard | bool | None = None, **options):
        self.path = path
        self.guard = Guard.coerce(guard)
        self.options = options
        self.recorder: TorchRecorder | None = None
        self._forward_hook = None
        self._losses: list[torch.Tensor] = []
        self._inputs: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None

    # ------------------------------------------------------------------ Trainer events

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if not state.is_world_process_zero or model is None or optimizer is None:
            return
        inner = getattr(optimizer, "optimizer", optimizer)  # accelerate's AcceleratedOptimizer
        options = dict(self.options)
        options.setdefault("batch_size", args.per_device_train_batch_size * args.gradient_accumulation_steps)
        options.setdefault("steps_planned", state.max_steps or None)
        options.setdefault("seed", args.seed)
        options.setdefault("capture_crashes", False)
        self.recorder = TorchRecorder(model, inner, self.path, **options)
        self._forward_hook = model.register_forward_hook(self._on_forward, with_kwargs=True)

    def on_step_end(self, args, state, control, **kwargs):
        rec = self.recorder
        if rec is None or not self._losses:
            return
        loss = torch.stack([x.float() for x in self._losses]).mean()
        self._losses = []
        rec.record(loss, inputs=self._inputs, labels=self._labels, epoch=int(state.epoch or 0))
        self._inputs = self._labels = None
        if self.guard is not None:
            verdict = self.guard.after_step(rec.step - 1, rec.writer, finite=rec.last_good_step == rec.step - 1)
            if verdict is not None:
                control.should_training_stop = True

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.recorder is None or not metrics:
            return
        for split, (loss, values) in evaluations(metrics).items():
            self.recorder.log_eval(split, loss, values, model_mode="eval")

    def on_train_end(self, args, state, control, **kwargs):
        if self._forward_hook is not None:
            self._forward_hook.remove()
            self._forward_hook = None
        if self.recorder is not None:
            self.recorder.close("stopped" if self.guard is not None and self.guard.stopped else "completed")
            self.recorder = None

    # ------------------------------------------------------------------ the model's forward

    def _on_forward(self, module, args, kwargs, output) -> None:
        if not (module.training and torch.is_grad_enabled()):
            return  # evaluation and prediction passes are not training steps
        loss = _loss_of(output)
        if loss is None:
            return
        self._losses.append(loss.detach())
        labels = kwargs.get("labels")
        self._labels = labels if isinstance(labels, torch.Tensor) else None
        tensors = [v for k, v in kwargs.items() if k not in _NOT_INPUTS and isinstance(v, torch.Tensor)]
        self._inputs = args[0] if args and isinstance(args[0], torch.Tensor) else (tensors[0] if tensors else None)


__all__ = ["DiagCallback"]
