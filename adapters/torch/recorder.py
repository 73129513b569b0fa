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
import uuid
from datetime import datetime, timezone
from typing import Mapping

import torch
from torch import nn

from diag.adapters.torch._clip import ClipWatch
from diag.adapters.torch._encode import encode_line, jfloat
from diag.adapters.torch._evaluation import Evaluations
from diag.adapters.torch._header import build_header, recording_settings
from diag.adapters.torch._hooks import Hooks
from diag.adapters.torch._layers import LayerPlan, find_layers, plan_layers
from diag.adapters.torch._lifecycle import CrashCapture, CrashEvents
from diag.adapters.torch._packed import PackedStep
from diag.adapters.torch._stats import Scratch, batch_stats, grad_norms, label_stats, layer_sums
from diag.adapters.torch._steprecord import activation_columns, step_record
from diag.adapters.torch._updates import UpdateMeter
from diag.adapters._guard import GuardHook, ended_on_purpose
from diag.guard import Guard
from diag.trace.records import Header
from diag.trace.writer import TraceWriter

# Largest parameter copy (bytes) the recorder keeps between recording steps on the CPU.
KEEP_SNAPSHOT_BYTES_ON_CPU = 256 * 2**20


class TorchRecorder(Evaluations, Hooks, CrashEvents, GuardHook):
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
      replay_nonfinite: at the first NaN/Inf, also replay the step's forward pass operation by
        operation and its backward pass under ``torch.autograd.detect_anomaly`` and write a
        ``nonfinite_replay`` event naming the operation and the line of your code that called it
        (``_replay.py``). Opt-in: slow, and it runs once; without it nothing is added.
      capture_crashes: record uncaught exceptions and SIGINT/SIGTERM and flush the trace on exit.
      run_id, task, num_classes, loss_kind, batch_size, steps_planned, seed, tags: header fields.
      flush_every: records buffered before the file is written (also flushed every second, from
        a background thread, so that ``diag tui --follow`` sees a stalled run's last steps).
      guard: ``True`` or a :class:`diag.guard.Guard`: ``record`` raises
        :class:`diag.TrainingDoomed` once the run cannot recover (see ``diag/guard.py``).

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
        replay_nonfinite: bool = False,
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
        guard: "Guard | bool | None" = None,
    ):
        self.model = model
        self._set_guard(guard)
        self.optimizer = optimizer
        self.scaler = scaler if scaler is not None and scaler.is_enabled() else None
        self.costly_every = max(1, int(costly_every))
        self.grad_every = max(1, int(grad_every))
        self.activations = activations
        if localize not in ("auto", "replay", "hold"):
            raise ValueError(f"localize must be 'auto', 'replay' or 'hold', not {localize!r}")
        self.localize = localize
        self.replay_nonfinite = bool(replay_nonfinite)
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
        self._device: torch.device | None = None  # where the statistics are stacked: the parameters' device
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
        # On recording steps, per layer: (sum, sum of squares, number of entries) of its output and
        # (activation name, sign count or None, number of entries) of its nonlinearity's.
        self._output_rows: dict[int, tuple[torch.Tensor, torch.Tensor, int]] = {}
        self._act_rows: dict[int, tuple[str | None, torch.Tensor | None, int]] = {}
        self._act_order: list[tuple[int, str]] = []
        self._last_layer: int | None = None
        self._output_elements: dict[int, str] = {}  # id(module) -> which element of a structured output
        self._call_order: list[nn.Module] | None = None
        self._trace_handles: list = []

        self._step_pre_hook = optimizer.register_step_pre_hook(self._before_step)
        self._root_end_hook = model.register_forward_hook(self._on_root_end)
        self._handles = [
            model.register_forward_pre_hook(self._on_root_start),
            self._root_end_hook,
            self._step_pre_hook,
            optimizer.register_step_post_hook(self._after_step),
        ]
        self._layer_hooks: list = []
        # Where a host sync is free (CPU), a NaN is caught at the optimizer step and the forward
        # pass replayed to find it; elsewhere the layer outputs are held until record() instead
        # (memory, no sync). Holding them on the CPU costs ~4% of an MLP step in allocator churn.
        self._hold_outputs = False
        self._replaying = False
        self._pre_step_params: list[torch.Tensor] | None = None
        self._update_scales: list[float] | None = None
        self._host_reads_free = False
        self._scratch: Scratch | None = None
        self._update_layer_hooks()
        if self.scaler is not None:
            self._wrap_scaler(self.scaler)
        # clip_grad_norm_ on the model's parameters: the raw norm and the bound (see _clip.py).
        self._clip_max: float | None = None
        self._clip = ClipWatch(model.parameters(), self._on_clip)
        self._clip.install()
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

    def measure_after_closure(self) -> Callable[[], None]:
        """For an optimizer stepped with a closure that runs forward and backward inside ``step``
        (Lightning's automatic optimization): the step pre-hook would see the last step's
        gradients. It is removed; call the returned function once the gradients are final."""
        self._handles.remove(self._step_pre_hook)
        self._step_pre_hook.remove()
        return lambda: self._before_step(self.optimizer, (), {})

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

        Raises:
          TrainingDoomed: with ``guard`` on, when the run cannot recover.
        """
        if self._crash is None:
            self._record(loss, inputs, labels, metrics, epoch)
        else:
            with self._crash.deferring_signals():  # a signal mid-record waits until the record is whole
                self._record(loss, inputs, labels, metrics, epoch)
        self._check_guard(self.step - 1, finite=self.last_good_step == self.step - 1)  # may raise TrainingDoomed

    def _record(self, loss, inputs, labels, metrics, epoch) -> None:
        plan = self._ensure_plan()
        self._ensure_header()
        step, costly = self.step, self.is_costly_step()
        now = time.time()
        perf = time.perf_counter()
        L = len(plan.layers)
        packed = PackedStep(self._device)
        add = packed.add
        fetched: dict[str, list[float]] = {}  # parts already on the host (grad norms on the CPU)

        def put(name, value):
            if isinstance(value, list):
                fetched[name] = value
            else:
                add(name, value)

        with torch.no_grad():
            loss_t = loss if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
            add("loss", loss_t)
            norms = self._pending.pop("grad_norms", None)
            if norms is None and not self._stepped and self._measures_grads(step):
                # The optimizer did not step (a GradScaler skip): the gradients as they are now.
                norms = grad_norms(plan.params)
            if norms is not None:
                put("grad_norms", norms)
            if "param_norms" in self._pending:
                add("param_norms", self._pending.pop("param_norms"))
            if "update_norms" in self._pending:
                put("update_norms", self._pending.pop("update_norms"))
            if "clip_norm" in self._pending:
                add("clip_norm", self._pending.pop("clip_norm"))
            if costly and self.activations and self._output_rows:
                act_values, self._act_order = self._activation_values(plan)
                add("act", act_values)
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
            got, metric_values = packed.unpack()  # the one host transfer of this step
            got.update(fetched)

        for name in ("grad", "param", "update"):  # per-parameter norms -> per-layer sums of squares
            if f"{name}_norms" in got:
                scales = self._update_scales if name == "update" else None
                got[f"{name}_sq"] = layer_sums(got.pop(f"{name}_norms"), plan.param_layer, L, scales)

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
            if self.replay_nonfinite and not input_nonfinite:
                replay = self._replay_under_debugger(step)
                if replay is not None:
                    self.writer.write(replay)

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
        self._clip.uninstall()
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
            status = ended_on_purpose(exc_type)  # a guard stop is no crash: the run was stopped
            if status is not None:
                self._end(status)
            else:
                self._write_exception(exc_type, exc, tb)
                self._end("crashed")
        self.close()

    # ------------------------------------------------------------------ internals

    def _default_step(self, step: int | None) -> int:
        return step if step is not None else max(self.step - 1, 0)

    def _ensure_plan(self) -> LayerPlan:
        if self._plan is None:
            self._plan = plan_layers(self._layers, self._call_order)
            self._call_order = None
            device = self._plan.params[0].device if self._plan.params else torch.device("cpu")
            self._device = device
            # The update snapshot's copy is kept between recording steps where it is in use every
            # step, and on the CPU, where a fresh copy's pages are faulted in again each time: on
            # the MLP of benchmarks/torch_overhead.py that cost 1.3-1.6 ms of a recording step
            # (about 0.4% of every step at the default costly_every=25), for one copy of the
            # parameters held in memory (Adam already holds two). Not for a model whose copy is
            # large: there memory counts for more than 0.4%.
            param_bytes = sum(p.numel() * p.element_size() for p in self._plan.params)
            self._meter = UpdateMeter(self.optimizer, self._plan.params, keep_snapshot=self.costly_every == 1 or (
                device.type == "cpu" and param_bytes <= KEEP_SNAPSHOT_BYTES_ON_CPU))
            self._hold_outputs = self.localize == "hold" or (self.localize == "auto" and device.type != "cpu")
            self._host_reads_free = device.type == "cpu"
            self._scratch = Scratch() if device.type == "cpu" else None
            self._update_layer_hooks()
        return self._plan

    def _ensure_header(self) -> None:
        if not self._header_written:
            self._header_written = True
            self.writer.write(self._header())

    def _on_clip(self, total_norm: torch.Tensor, max_norm) -> None:
        self._pending["clip_norm"] = total_norm.detach().reshape(1)
        max_norm = float(max_norm)
        if max_norm != self._clip_max:
            self._clip_max = max_norm
            if self._header_written:  # restated with the bound (same run id: it replaces the first)
                self.writer.write(self._header())

    def _header(self) -> Header:
        header = build_header(
            self.model, self.optimizer, self._ensure_plan(), self._header_fields,
            created_at=self._created_at,
            autocast_dtype=self._autocast_dtype,
            loss_scaling="dynamic" if self.scaler is not None else None,
            recording=recording_settings(self.grad_every, self.costly_every, self._meter.method,
                                         activations=self.activations, hold_outputs=self._hold_outputs),
        )
        if self._clip_max is not None and header.optimizer is not None:
            header.optimizer.hyperparameters["grad_clip"] = self._clip_max
        for info, layer in zip(header.layers, self._plan.layers):
            info.output_element = self._output_elements.get(id(layer.module))
        return header

    def _step_dict(self, step, now, got, epoch, x, labels, label_kind) -> dict:
        # The learning rates the step used: a scheduler may have moved them since.
        lrs = self._step_lrs if self._stepped else [float(g["lr"]) for g in self.optimizer.param_groups]
        activations = None
        if "act" in got:
            activations = activation_columns(self._plan, got["act"], self._act_order, self._output_rows, self._act_rows,
                                             self._outputs)
        return step_record(step, now, got, epoch=epoch, lrs=lrs, stepped=self._stepped, activations=activations,
                           inputs=x, labels=labels, label_kind=label_kind)
