"""Evaluations written by the PyTorch recorder: your own numbers, or a split evaluated here.

A mixin of :class:`~diag.adapters.torch.recorder.TorchRecorder` (it uses the recorder's model,
writer and header fields).
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping

import torch

from diag.adapters.torch._accuracy import accuracy_rule, correct_decisions
from diag.trace.records import Eval


class Evaluations:
    """``log_eval``, ``evaluate`` and ``evaluate_train_subset`` of the recorder."""

    def log_eval(
        self,
        split: str,
        loss: float | torch.Tensor | None = None,
        metrics: Mapping[str, float] | None = None,
        *,
        examples: int | None = None,
        step: int | None = None,
        model_mode: str | None = None,
        accuracy_rule: str | None = None,
    ) -> Eval:
        """Write an evaluation computed by your own loop; the model's current mode is recorded.

        Args:
          split: 'val', 'test', 'train_eval', ...
          loss: mean loss over the split.
          metrics: e.g. ``{"accuracy": 0.91}``.
          examples: how many examples were evaluated.
          step: the training step it belongs to (default: the last recorded step).
          model_mode: 'train' or 'eval'; default: read from ``model.training``.
          accuracy_rule: how ``metrics["accuracy"]`` was computed (see :func:`accuracy_rule`).

        Returns:
          The :class:`~diag.trace.Eval` record written.
        """
        self._ensure_header()
        record = Eval(
            step=self._default_step(step),
            split=split,
            loss=None if loss is None else float(loss),
            metrics={k: float(v) for k, v in (metrics or {}).items()},
            model_mode=model_mode or ("train" if self.model.training else "eval"),
            examples=examples,
            accuracy_rule=accuracy_rule,
        )
        self.writer.write(record)
        return record

    def evaluate(
        self,
        split: str,
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        mode: str = "eval",
        accuracy: bool | None = None,
        step: int | None = None,
    ) -> Eval:
        """Evaluate the model on ``batches`` in the given mode, restore its mode, write an eval record.

        Args:
          split: the split name.
          batches: ``(inputs, labels)`` pairs.
          loss_fn: ``loss_fn(outputs, labels)`` returning the batch's mean loss.
          mode: 'eval' (dropout off, batch-norm running statistics) or 'train'.
          accuracy: also compute accuracy (default: when the header's task is classification), by
            the rule the outputs call for: argmax over classes, a single logit thresholded at 0
            (0.5 after a sigmoid), or per-label decisions for multi-label targets; the record
            says which (``accuracy_rule``).
          step: the training step it belongs to (default: the last recorded step).

        Returns:
          The :class:`~diag.trace.Eval` record written.
        """
        if accuracy is None:
            accuracy = self._header_fields["task"] == "classification"
        was_training = self.model.training
        self.model.train(mode == "train")
        total_loss = torch.zeros(())
        correct = torch.zeros(())
        decisions = 0
        count = 0
        rule = None
        try:
            with torch.no_grad():
                for x, y in batches:
                    out = self.model(x)
                    n = y.shape[0]
                    total_loss = total_loss + loss_fn(out, y).detach().float().cpu() * n
                    if accuracy:
                        rule = rule or accuracy_rule(out, y, loss_fn, self._header_fields["loss_kind"], self.model)
                        hits, total = correct_decisions(out, y, rule)
                        correct = correct + hits.cpu()
                        decisions += total
                    count += n
        finally:
            self.model.train(was_training)
        metrics = {"accuracy": float(correct) / max(decisions, 1)} if accuracy else {}
        return self.log_eval(split, float(total_loss) / max(count, 1), metrics, examples=count, step=step,
                             model_mode=mode, accuracy_rule=rule)

    def evaluate_train_subset(self, inputs: torch.Tensor, labels: torch.Tensor, loss_fn, *,
                              batch_size: int = 256, step: int | None = None) -> Eval:
        """Evaluate a fixed train subset in eval mode, as split ``train_eval``.

        Compared with the ``val`` split and the training loss, it separates a train/eval mode
        mismatch (``train_eval`` as bad as ``val``) from overfitting (``train_eval`` as good as
        training).
        """
        batches = [(inputs[i : i + batch_size], labels[i : i + batch_size]) for i in range(0, len(inputs), batch_size)]
        return self.evaluate("train_eval", batches, loss_fn, mode="eval", step=step)
