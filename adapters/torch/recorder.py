"""The PyTorch recorder: hooks on a module and its optimizer that write a diag trace.

Every step: loss, learning rate per parameter group, global and per-layer gradient norms
(measured in a step pre-hook, so accumulated gradients are seen as the optimizer sees them), the
GradScaler's scale and whether the step was skipped. Every ``costly_every`` steps (and on a step
with a NaN/Inf) also: parameter norms, update norms and update-to-weight ratios (see
``_updates.py`` for how each optimizer's update is measured), activation statistics, input batch
statistics and the label histogram's entropy. All of a step's numbers are stacked on the
device and copied to the host once, in :meth:`TorchRecorder.record`.

Forward hooks on the layers exist only on recording steps, where they measure the layer output
(mean, std, non-finite count, as the Flax adapter does) and the nonlinearity's output (zero
fraction for ReLU, saturation for sigmoid/tanh). Non-finite values are found in forward order:
on the CPU the optimizer-step hook sees a NaN gradient before the parameters are overwritten,
keeps a copy of them, and ``record`` replays the forward pass on that step's batch; on an
accelerator (where that check would stall the device) the hooks stay on and hold each step's
layer outputs until ``record`` instead.
"""

from __future__ import annotations

import math
import os
import time
import traceback
import uuid
from datetime import datetime, timezone
from typing import Callable, Iterable, Mapping

import torch
from torch import nn

from diag.adapters.torch._encode import encode_line, jfloat
from diag.adapters.torch._accuracy import accuracy_rule, correct_decisions
from diag.adapters.torch._header import build_header
from diag.adapters.crash_site import describe_inputs, innermost_module
from diag.adapters.header_at_open import HeaderAtOpen
from diag.adapters.torch._layers import LayerPlan, activation_name, dtype_name, find_layers, main_output, plan_layers
from diag.adapters.torch._lifecycle import CrashCapture
from diag.adapters.torch._nonfinite import first_nonfinite, watch_modules
from diag.adapters.torch._stats import activation_counts, batch_stats, grad_layer_sq, label_stats, per_layer_sq, sums
from diag.adapters.torch._steprecord import activation_columns, step_record
from diag.adapters.torch._updates import UpdateMeter
from diag.trace.records import (
    Eval,
    ExceptionEvent,
    Header,
    NonFiniteEvent,
    RunEndEvent,
    SignalEvent,
)
from diag.trace.writer import TraceWriter



class TorchRecorder:
    """Records a PyTorch training run into a diag trace.

    Args:
      model: the ``nn.Module`` being trained.
      optimizer: its optimizer; hooks on its ``step`` measure gradients and updates.
      path: the ``.jsonl`` trace file, or an open :class:`~diag.trace.TraceWriter`.
      scaler: the ``torch.amp.GradScaler`` when training with loss scaling.
      costly_every: record parameter norms, update ratios, activation, input and label statistics
        every this many steps (step 0 included; 25 like the Flax adapter's ``every``).
      grad_every: measure the global and per-layer gradient norms every this many steps (and on
        every costly step). One fused pass over the gradients costs ~3-4% of a small CPU MLP's
        step (memory bound) and ~1% of a CNN's; loss, learning rate, loss scale and skipped
        steps are recorded every step regardless. On the CPU, a NaN that first appears on a step
        without gradient norms is localized with the parameters after that step.
      activations: forward hooks for activation statistics and non-finite localization.
      localize: how the first NaN/Inf is traced to a layer: 'replay' (check the gradients at the
        optimizer step, copy the parameters only when they are bad, replay the forward pass),
        'hold' (keep every step's layer outputs until ``record``: costs memory, no host sync), or
        'auto': 'replay' on the CPU, 'hold' on accelerators.
      capture_crashes: record uncaught exceptions and SIGINT/SIGTERM and flush the trace on exit.
      run_id, task, num_classes, loss_kind, batch_size, steps_planned, seed, tags: header fields.
      flush_every: records buffered before the file is written (also flushed every second, from
        a background thread, so that ``diag tui --follow`` sees a stalled run's last steps).

    Example:
      >>> import tempfile, os, torch
      >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
      >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
      >>> path = os.path.join(tempfile.mkdtemp(), "run.jsonl")
      >>> with TorchRecorder(model, opt, path, task="classification", num_classes=3) as rec:
      ...     for _ in range(3):
      ...         x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
      ...         opt.zero_grad()
      ...         loss = torch.nn.functional.cross_entropy(model(x), y)
      ...         loss.backward()
      ...         opt.step()
      ...         rec.record(loss, labels=y)
      >>> from diag.trace import load_trace
      >>> load_trace(path).layer_names
      ('0', '2')
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        path: str | os.PathLike | TraceWriter,
        *,
        scaler: "torch.amp.GradScaler | None" = None,
        costly_every: int = 25,
        grad_every: int = 1,
        activations: bool = True,
        localize: str = "auto",
        capture_crashes: bool = True,
        run_id: str | None = None,
        task: str | None = None,
        num_classes: int | None = None,
        loss_kind: str | None = None,
        batch_size: int | None = None,
        steps_planned: int | None = None,
        seed: int | None = None,
        tags: Mapping[str, object] | None = None,
        flush_every: int = 50,
    ):
        self.model = model
        self.optimizer = optimizer
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.costly_every = max(1, int(costly_every))
        self.grad_every = max(1, int(grad_every))
        self.activations = activations
        if localize not in ("auto", "replay", "hold"):
            raise ValueError(f"localize must be 'auto', 'replay' or 'hold', not {localize!r}")
        self.localize = localize
        self.writer = path if isinstance(path, TraceWriter) else TraceWriter(
            path, flush_every=flush_every, flush_seconds=1.0, background=True)
        self._header_fields = dict(
            run_id=run_id or uuid.uuid4().hex[:12], task=task, num_classes=num_classes, loss_kind=loss_kind,
            batch_size=batch_size, steps_planned=steps_planned, seed=seed, tags=dict(tags or {}),
        )
        self._created_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self._layers = find_layers(model)
        self._plan: LayerPlan | None = None
        self._meter: UpdateMeter | None = None
        self._segment: torch.Tensor | None = None
        self._header_written = False
        self._ended = False
        self._signal: str | None = None
        self._autocast_dtype: torch.dtype | None = None

        self.step = 0  # index of the step the next record() describes
        self.last_good_step: int | None = None
        self._last_record_time: float | None = None
        self._record_end: float | None = None
        self._forward_start: float | None = None
        self._nonfinite_reported = False
        # Filled between two record() calls.
        self._stepped = False
        self._pending: dict[str, torch.Tensor] = {}
        self._input: torch.Tensor | None = None
        self._scale_used: torch.Tensor | None = None
        self._outputs: dict[int, torch.Tensor] = {}
        self._act_outputs: dict[int, torch.Tensor] = {}
        # On recording steps, per layer: (statistics tensor, number of entries it covers).
        self._output_rows: dict[int, tuple[torch.Tensor, int]] = {}
        self._act_rows: dict[int, tuple[torch.Tensor, int]] = {}
        self._last_layer: int | None = None
        self._output_elements: dict[int, str] = {}  # id(module) -> which element of a structured output
        self._call_order: list[nn.Module] | None = None
        self._trace_handles: list = []

        self._handles = [
            model.register_forward_pre_hook(self._on_root_start),
            model.register_forward_hook(self._on_root_end),
            optimizer.register_step_pre_hook(self._before_step),
            optimizer.register_step_post_hook(self._after_step),
        ]
        self._layer_hooks: list = []
        # Where a host sync is free (CPU), a NaN is caught at the optimizer step and the forward
        # pass replayed to find it; elsewhere the layer outputs are held until record() instead
        # (memory, no sync). Holding them on the CPU costs ~4% of an MLP step in allocator churn.
        self._hold_outputs = False
        self._replaying = False
        self._pre_step_params: list[torch.Tensor] | None = None
        self._update_layer_hooks()
        if self.scaler is not None:
            self._wrap_scaler(self.scaler)
        # A run killed before its first step still leaves a header (replaced by the complete one,
        # layers in forward order, once the first step has run).
        self._header_line = HeaderAtOpen(self.writer)
        self._header_line.write_provisional(build_header(
            model, optimizer, plan_layers(find_layers(model), None), self._header_fields,
            created_at=self._created_at, autocast_dtype=None,
            loss_scaling="dynamic" if self.scaler is not None else None,
            recording={"adapter": "diag.adapters.torch", "layer_order": "registration order (before the first step)"}))
        self._crash = None
        if capture_crashes:
            self._crash = CrashCapture(self._on_uncaught, self._on_signal, self._on_exit)
            self._crash.install()

    # ------------------------------------------------------------------ public API

    @property
    def layer_names(self) -> list[str]:
        """Layer names in forward order (registration order until the first forward pass)."""
        return (self._plan or plan_layers(self._layers, None)).names

    @property
    def update_method(self) -> str:
        """How update norms are measured: 'sgd_grad', 'sgd_momentum' or 'snapshot'."""
        self._ensure_plan()
        return self._meter.method

    def is_costly_step(self, step: int | None = None) -> bool:
        """Whether ``step`` (default: the next one) records the costly statistics."""
        return (self.step if step is None else step) % self.costly_every == 0

    def record(
        self,
        loss: torch.Tensor | float,
        inputs: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        metrics: Mapping[str, torch.Tensor | float] | None = None,
        epoch: int | None = None,
    ) -> None:
        """Write the step record of the optimizer step that just ran (see :meth:`_record`)."""
        if self._crash is None:
            return self._record(loss, inputs, labels, metrics=metrics, epoch=epoch)
        with self._crash.deferring_signals():
            return self._record(loss, inputs, labels, metrics=metrics, epoch=epoch)

    def _record(
        self,
        loss: torch.Tensor | float,
        inputs: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        *,
        metrics: Mapping[str, torch.Tensor | float] | None = None,
        epoch: int | None = None,
    ) -> None:
        """Write the step record of the optimizer step that just ran. Call once per step, after
        ``optimizer.step()`` (and ``scaler.update()``).

        Args:
          loss: this step's loss (a tensor is fine: it is copied with the other numbers, once).
          inputs: the input batch; by default the first tensor argument of the model's last
            training forward call.
          labels: the labels, for the label-entropy statistic (integer class ids, one-hot or
            regression targets).
          metrics: training metrics (tensors or floats), e.g. ``{"accuracy": acc}``.
          epoch: the epoch, if the loop counts them.
        """
        plan = self._ensure_plan()
        self._ensure_header()
        step, costly = self.step, self.is_costly_step()
        now = time.time()
        perf = time.perf_counter()
        L = len(plan.layers)

        parts: list[torch.Tensor] = []
        layout: list[tuple[str, int]] = []

        device = self._segment.device

        def add(name: str, tensor: torch.Tensor) -> None:
            flat = tensor.detach().reshape(-1)
            if flat.dtype != torch.float32:
                flat = flat.float()
            if flat.device != device:  # inputs and labels may still sit on the CPU
                flat = flat.to(device, non_blocking=True)
            parts.append(flat)
            layout.append((name, flat.numel()))

        with torch.no_grad():
            loss_t = loss if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
            add("loss", loss_t)
            grad_sq = self._pending.pop("grad_sq", None)
            if grad_sq is None and not self._stepped and self._measures_grads(step):
                # The optimizer did not step (a GradScaler skip): the gradients as they are now.
                grad_sq = grad_layer_sq(plan.params, self._segment, L)
            if grad_sq is not None:
                add("grad_sq", grad_sq)
            if "param_sq" in self._pending:
                add("param_sq", self._pending.pop("param_sq"))
            if "update_sq" in self._pending:
                add("update_sq", self._pending.pop("update_sq"))
            if costly and self.activations and self._output_rows:
                add("act", self._activation_table(plan))
            x = inputs if inputs is not None else self._input
            if not (isinstance(x, torch.Tensor) and x.numel()):
                x = None
            if x is not None and costly:
                add("input", batch_stats(x))
            label_kind = None
            if not (isinstance(labels, torch.Tensor) and labels.numel()):
                labels = None
            elif costly:
                label_kind, label_t = label_stats(labels, self._header_fields["num_classes"])
                add("labels", label_t)
            if self._scale_used is not None:
                add("scale", self._scale_used)
            metric_names = []
            for name, value in (metrics or {}).items():
                if isinstance(value, torch.Tensor):
                    metric_names.append(name)
                    add("metric", value)
            values = torch.cat(parts).tolist()  # the one host transfer of this step

        got: dict[str, list[float]] = {}
        offset = 0
        metric_values = []
        for name, size in layout:
            chunk = values[offset : offset + size]
            offset += size
            if name == "metric":
                metric_values.append(chunk[0])
            else:
                got[name] = chunk

        finite = math.isfinite(got["loss"][0]) and all(math.isfinite(v) for v in got.get("grad_sq", ()))
        if not finite and x is not None and "input" not in got:
            # A bad step always gets its input statistics (one extra transfer, on this step only).
            got["input"] = batch_stats(x).tolist()
        record = self._step_dict(step, now, got, epoch, x, labels, label_kind)
        if metrics:
            floats = {k: float(v) for k, v in metrics.items() if not isinstance(v, torch.Tensor)}
            floats.update(zip(metric_names, metric_values))
            record["metrics"] = {k: jfloat(v) for k, v in floats.items()}
        record["step_time"] = None if self._last_record_time is None else perf - self._last_record_time
        if self._record_end is not None and self._forward_start is not None:
            # From the end of the last record() to this step's first forward: mostly the data loader.
            record["data_wait_time"] = max(self._forward_start - self._record_end, 0.0)
        self.writer.write_encoded(encode_line(record))

        if finite and not record.get("skipped"):
            self.last_good_step = step
        input_nonfinite = record.get("input", {}).get("nonfinite", 0)
        if not self._nonfinite_reported and not (finite and not input_nonfinite):
            self._nonfinite_reported = True
            self.writer.write(self._locate_nonfinite(step, now, got, input_nonfinite))

        for held in (self._outputs, self._act_outputs, self._output_rows, self._act_rows):
            held.clear()
        self._input = None
        self._scale_used = None
        self._pre_step_params = None
        self._stepped = False
        self._last_record_time = perf
        self._forward_start = None
        self.step += 1
        self._update_layer_hooks()
        self._record_end = time.perf_counter()

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

    def write(self, record) -> None:
        """Write any trace record from your own code (a ``Data`` record from the data probe, an
        ``Eval``, a ``NoteEvent``): it lands in this trace after the steps recorded so far.

        Example:
          >>> from diag.trace.records import NoteEvent
          >>> rec.write(NoteEvent(step=rec.step, message="switched to the second data shard"))  # doctest: +SKIP
        """
        self._ensure_header()
        self.writer.write(record)

    def note(self, message: str, level: str = "info") -> None:
        """Write a free-form note event (e.g. 'lr schedule changed')."""
        from diag.trace.records import NoteEvent

        self._ensure_header()
        self.writer.write(NoteEvent(step=self._default_step(None), time=time.time(), message=message, level=level))

    def close(self, status: str = "completed") -> None:
        """Write the end of the run, flush, and remove every hook."""
        if not self._ended:
            self._end(status)
        for handle in self._handles + self._trace_handles + self._layer_hooks:
            handle.remove()
        self._handles, self._trace_handles, self._layer_hooks = [], [], []
        if self.scaler is not None and "scale" in vars(self.scaler):
            del self.scaler.scale
        if self._crash is not None:
            self._crash.uninstall()
        self.writer.close()

    def __enter__(self) -> "TorchRecorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close("completed")
            return
        if not self._ended:
            if issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
                self._end("interrupted")
            else:
                self._write_exception(exc_type, exc, tb)
                self._end("crashed")
        self.close()

    # ------------------------------------------------------------------ hooks

    def _on_root_start(self, module, args) -> None:
        if self._plan is None and self._call_order is None:
            # First forward pass: learn the order in which layers and activations run.
            self._call_order = []
            for sub in module.modules():
                if sub is not module:
                    self._trace_handles.append(sub.register_forward_pre_hook(self._on_traced_call))
            device = next(module.parameters(), torch.empty(0)).device.type
            if torch.is_autocast_enabled(device):
                self._autocast_dtype = torch.get_autocast_dtype(device)
        if torch.is_grad_enabled():
            if self._forward_start is None:
                self._forward_start = time.perf_counter()
            if args and isinstance(args[0], torch.Tensor):
                self._input = args[0]

    def _on_traced_call(self, module, args) -> None:
        self._call_order.append(module)

    def _on_root_end(self, module, args, output) -> None:
        if self._trace_handles and self._plan is None:
            for handle in self._trace_handles:
                handle.remove()
            self._trace_handles = []
            self._ensure_plan()

    def _update_layer_hooks(self) -> None:
        """Layer and activation hooks are installed only while they have work to do: on steps that
        record activation statistics, or on every step where outputs are held for localization."""
        wanted = self.activations and (self._hold_outputs or self.is_costly_step() or self._replaying)
        if wanted and not self._layer_hooks:
            layer_modules = {id(layer.module): layer.module for layer in self._layers}
            for module in layer_modules.values():
                self._layer_hooks.append(module.register_forward_hook(self._on_layer_output))
            seen = set()
            for module in self.model.modules():
                if activation_name(module) is not None and id(module) not in layer_modules and id(module) not in seen:
                    seen.add(id(module))
                    self._layer_hooks.append(module.register_forward_hook(self._on_activation_output))
        elif not wanted and self._layer_hooks:
            for handle in self._layer_hooks:
                handle.remove()
            self._layer_hooks = []

    def _on_layer_output(self, module, args, output) -> None:
        if not isinstance(output, torch.Tensor):
            # GRU/LSTM/MultiheadAttention return tuples, Hugging Face models dataclasses: measure
            # the main output, and say in the header which element it was.
            output, element = main_output(output)
            if element is not None:
                self._output_elements.setdefault(id(module), element)
        if (torch.is_grad_enabled() or self._replaying) and isinstance(output, torch.Tensor):
            self._outputs[id(module)] = output
            self._last_layer = id(module)
            if self.is_costly_step() and not self._replaying:
                # Measured now, before an in-place nonlinearity (ReLU(inplace=True)) overwrites it.
                with torch.no_grad():
                    self._output_rows[id(module)] = (sums(output), output.numel())

    def _on_activation_output(self, module, args, output) -> None:
        if self._last_layer is not None and (torch.is_grad_enabled() or self._replaying) and isinstance(output, torch.Tensor):
            self._act_outputs[self._last_layer] = output
            if self.is_costly_step() and not self._replaying:
                with torch.no_grad():
                    self._act_rows[self._last_layer] = (activation_counts(output, activation_name(module)),
                                                        output.numel())
        self._last_layer = None

    def _before_step(self, optimizer, args, kwargs) -> None:
        plan = self._ensure_plan()
        self._stepped = True
        self._step_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        with torch.no_grad():
            if not self._measures_grads(self.step):
                return
            grad_sq = grad_layer_sq(plan.params, self._segment, len(plan.layers))
            self._pending["grad_sq"] = grad_sq
            if not self._hold_outputs and not self._nonfinite_reported and not math.isfinite(grad_sq.sum().item()):
                # The step is about to write NaN into the parameters: keep them as they were, so
                # that record() can replay this step's forward pass to find where the NaN began.
                self._pre_step_params = torch._foreach_mul(plan.params, 1.0)
            if self.is_costly_step():
                self._pending["param_sq"] = per_layer_sq(plan.params, self._segment, len(plan.layers))
                self._meter.before_step()

    def _measures_grads(self, step: int) -> bool:
        return step % self.grad_every == 0 or self.is_costly_step(step)

    def _after_step(self, optimizer, args, kwargs) -> None:
        if self.is_costly_step() and "param_sq" in self._pending:
            with torch.no_grad():
                self._pending["update_sq"] = self._meter.after_step()

    def _wrap_scaler(self, scaler) -> None:
        original = scaler.scale

        def scale(outputs):
            # The scale this step's backward used; scaler.update() may change it before record().
            result = original(outputs)
            if scaler._scale is not None:
                self._scale_used = scaler._scale.detach().clone()
            return result

        scaler.scale = scale

    # ------------------------------------------------------------------ crash capture

    def _on_uncaught(self, exc_type, exc, tb) -> None:
        if self._ended:
            return
        if issubclass(exc_type, KeyboardInterrupt):
            self._end("interrupted")
        else:
            self._write_exception(exc_type, exc, tb)
            self._end("crashed")
        self.writer.flush()

    def _on_signal(self, name: str) -> None:
        # Runs inside the signal handler: only remember it, the unwinding code writes.
        self._signal = name

    def _on_exit(self) -> None:
        if not self._ended:
            self._end("interrupted" if self._signal else "completed")
        if not self.writer.closed:
            self.writer.close()

    def _write_exception(self, exc_type, exc, tb) -> None:
        self._ensure_header()
        site = self._crash_site(tb)
        self.writer.write(
            ExceptionEvent(
                step=self.step,
                time=time.time(),
                type=exc_type.__name__,
                message=str(exc),
                traceback="".join(traceback.format_exception(exc_type, exc, tb)),
                last_good_step=self.last_good_step,
                **site,
            )
        )

    def _crash_site(self, tb) -> dict:
        """The innermost module whose forward is on the traceback (parameter-free ones included),
        with the shapes and dtypes it was called with: what a shape or dtype mismatch needs."""
        names = {id(module): path or "root" for path, module in self.model.named_modules()}
        site = innermost_module(tb, lambda owner: id(owner) in names)
        if site is None:
            return {}
        shapes, dtypes = describe_inputs(site.inputs, lambda d: dtype_name(d) if isinstance(d, torch.dtype) else str(d))
        return {"layer": names[id(site.module)], "module_type": type(site.module).__name__,
                "input_shapes": shapes, "input_dtypes": dtypes}

    def _end(self, status: str) -> None:
        self._ended = True
        self._ensure_header()
        if self._signal:
            self.writer.write(SignalEvent(step=self._default_step(None), time=time.time(), signal=self._signal))
        self.writer.write(RunEndEvent(step=self._default_step(None), time=time.time(), status=status, steps=self.step))
        self.writer.flush()

    # ------------------------------------------------------------------ internals

    def _default_step(self, step: int | None) -> int:
        return step if step is not None else max(self.step - 1, 0)

    def _ensure_plan(self) -> LayerPlan:
        if self._plan is None:
            self._plan = plan_layers(self._layers, self._call_order)
            self._call_order = None
            device = self._plan.params[0].device if self._plan.params else torch.device("cpu")
            self._segment = torch.tensor(self._plan.param_layer, dtype=torch.int64, device=device)
            self._meter = UpdateMeter(self.optimizer, self._plan.params, self._segment, len(self._plan.layers))
            self._hold_outputs = self.localize == "hold" or (self.localize == "auto" and device.type != "cpu")
            self._update_layer_hooks()
        return self._plan

    def _ensure_header(self) -> None:
        if not self._header_written:
            self._header_written = True
            self._header_line.write_final(self._header())

    def _header(self) -> Header:
        header = self._build_header()
        for info, layer in zip(header.layers, self._plan.layers):
            info.output_element = self._output_elements.get(id(layer.module))
        return header

    def _build_header(self) -> Header:
        return build_header(
            self.model, self.optimizer, self._ensure_plan(), self._header_fields,
            created_at=self._created_at,
            autocast_dtype=self._autocast_dtype,
            loss_scaling="dynamic" if self.scaler is not None else None,
            recording={
                "adapter": "diag.adapters.torch",
                "every": 1,
                "grad_every": self.grad_every,
                "costly_every": self.costly_every,
                "update_method": self._meter.method,
                "activations": "module hooks" if self.activations else "off",
                "localize": "hold" if self._hold_outputs else "replay",
                "activation_stats": "mean/std/nonfinite of the layer output; zero/saturation of its nonlinearity",
            },
        )

    def _activation_table(self, plan: LayerPlan) -> torch.Tensor:
        """``(L, 4)``: sum and sum of squares of each layer's output, then the zero and saturated
        counts of the nonlinearity that follows it (NaN where not measured)."""
        device = self._segment.device
        nan2 = torch.full((2,), float("nan"), device=device)
        rows = []
        for layer in plan.layers:
            key = id(layer.module)
            out = self._output_rows.get(key)
            act = self._act_rows.get(key) if layer.activation else None
            rows.append(torch.cat([nan2 if out is None else out[0].to(device), nan2 if act is None else act[0].to(device)]))
        return torch.stack(rows)

    def _replay(self, x: torch.Tensor) -> None:
        """Run this step's forward pass again, with the parameters it used and copies of the
        buffers (batch-norm statistics stay untouched), collecting every layer's output."""
        state = {name: b.clone() for name, b in self.model.named_buffers()}
        if self._pre_step_params is not None:
            names = {id(p): n for n, p in self.model.named_parameters()}
            state.update({names[id(p)]: s for p, s in zip(self._plan.params, self._pre_step_params) if id(p) in names})
        self._replaying = True
        self._update_layer_hooks()
        try:
            with torch.no_grad():
                torch.func.functional_call(self.model, state, (x,))
        except Exception:  # noqa: BLE001 - a replay that fails leaves the coarser localization
            pass
        finally:
            self._replaying = False
            self._update_layer_hooks()

    def _step_dict(self, step, now, got, epoch, x, labels, label_kind) -> dict:
        # The learning rates the step used: a scheduler may have moved them since.
        lrs = self._step_lrs if self._stepped else [float(g["lr"]) for g in self.optimizer.param_groups]
        activations = None
        if "act" in got:
            activations = activation_columns(self._plan, got["act"], self._output_rows, self._act_rows, self._outputs)
        return step_record(step, now, got, epoch=epoch, lrs=lrs, stepped=self._stepped, activations=activations,
                           inputs=x, labels=labels, label_kind=label_kind)

    def _locate_nonfinite(self, step: int, now: float, got: dict, n_input: float) -> NonFiniteEvent:
        """The first non-finite tensor of this step in forward order (see ``_nonfinite.py``)."""
        if not n_input and not self._hold_outputs and self.activations and isinstance(self._input, torch.Tensor):
            # Replay with every module watched, parameter-free ones included: the first whose
            # output is non-finite while its inputs were finite is where the value was born.
            origins = watch_modules(self.model)
            try:
                self._outputs.clear(), self._act_outputs.clear()
                self._replay(self._input)
            finally:
                origins.stop()
            if origins.first is not None:
                return origins.event(step=step, time=now)
        elif not n_input and not self._outputs and self.activations and isinstance(self._input, torch.Tensor):
            self._replay(self._input)
        return first_nonfinite(self._plan, got, n_input, self._outputs, self._act_outputs, step=step, time=now)
