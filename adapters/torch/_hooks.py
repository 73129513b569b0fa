"""The PyTorch recorder's hooks: the forward pass (layer order, layer outputs, activations) and
the optimizer step (gradient norms as the optimizer sees them, parameter and update norms), and
the replay that finds where a NaN was born.

A mixin of :class:`~diag.adapters.torch.recorder.TorchRecorder` (its state lives on the recorder).
"""

from __future__ import annotations

import math
import time

import torch

from diag.adapters.torch import _foreach
from diag.adapters.torch._layers import LayerPlan, activation_name, main_output
from diag.adapters.torch._nonfinite import first_nonfinite, watch_modules
from diag.adapters.torch._stats import grad_norms, norms_vector, sign_sum, sums
from diag.adapters.torch._replay import replay_step
from diag.trace.records import NonFiniteEvent, NonFiniteReplayEvent


class Hooks:
    """Forward, optimizer-step and GradScaler hooks of the recorder, and NaN localization."""

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
            # The first forward pass has shown the layer order: the header is complete, write it
            # now (a run killed before its first optimizer step still leaves a readable trace).
            self._ensure_header()
        if self._plan is not None:
            # Nothing left to do after the first forward pass: every later forward call skips it.
            self._root_end_hook.remove()

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
            key = id(module)
            self._last_layer = key
            total_sq = None
            if self.is_costly_step() and not self._replaying:
                # Measured now, before an in-place nonlinearity (ReLU(inplace=True)) overwrites it.
                total, total_sq = sums(output)
                self._output_rows[key] = (total, total_sq, output.numel())
            if self._keeps(total_sq):
                self._outputs[key] = output

    def _on_activation_output(self, module, args, output) -> None:
        key = self._last_layer
        if key is not None and (torch.is_grad_enabled() or self._replaying) and isinstance(output, torch.Tensor):
            count = None
            if self.is_costly_step() and not self._replaying:
                name = activation_name(module)
                count = sign_sum(output, name, self._scratch)
                self._act_rows[key] = (name, count, output.numel())
            # Where the activation has no count, a finite input (its layer's output) gave a
            # finite output: the layer's decision stands for both.
            if key in self._outputs or self._keeps(count):
                self._act_outputs[key] = output
        self._last_layer = None

    def _keeps(self, statistic: torch.Tensor | None) -> bool:
        """Whether a layer's (or its nonlinearity's) output is kept until ``record``.

        Always where outputs are held for localization, during a replay, and where reading a
        statistic would stall an accelerator. Otherwise (the CPU, where reading a number is
        free) only when ``statistic`` (the output's sum of squares, or its nonlinearity's sign
        count) is not finite: then ``record`` counts its non-finite entries and may localize with
        it; finite outputs are never looked at again. Keeping every output past its last use made
        the allocator fault in fresh pages for the backward pass and the optimizer step (~10% of
        a small CNN's step when every step is recorded).
        """
        if self._hold_outputs or self._replaying or not self._host_reads_free:
            return True
        return statistic is not None and not math.isfinite(statistic.item())

    def _before_step(self, optimizer, args, kwargs) -> None:
        plan = self._ensure_plan()
        self._stepped = True
        self._step_lrs = [float(g["lr"]) for g in optimizer.param_groups]
        if not self._measures_grads(self.step):
            return
        with torch.no_grad():
            norms = grad_norms(plan.params)
            if self._host_reads_free:
                # On the CPU reading the norms costs nothing: read them once, here, and record()
                # packs nothing more for them.
                norms = norms.tolist()
            self._pending["grad_norms"] = norms
            if not self._hold_outputs and not self._nonfinite_reported and not _all_finite(norms):
                # The step is about to write NaN into the parameters: keep them as they were, so
                # that record() can replay this step's forward pass to find where the NaN began.
                self._pre_step_params = _foreach.copies(plan.params)
            if self.is_costly_step():
                self._pending["param_norms"] = norms_vector(plan.params)
                self._meter.before_step()

    def _measures_grads(self, step: int) -> bool:
        return step % self.grad_every == 0 or self.is_costly_step(step)

    def _after_step(self, optimizer, args, kwargs) -> None:
        if self.is_costly_step() and "param_norms" in self._pending:
            with torch.no_grad():
                self._pending["update_norms"] = self._meter.after_step(self._pending["grad_norms"])
                self._update_scales = self._meter.scales

    def _wrap_scaler(self, scaler) -> None:
        original = scaler.scale

        def scale(outputs):
            # The scale this step's backward used; scaler.update() may change it before record().
            result = original(outputs)
            if scaler._scale is not None:
                self._scale_used = scaler._scale.detach().clone()
            return result

        scaler.scale = scale

    # ------------------------------------------------------------------ localization

    def _activation_values(self, plan: LayerPlan) -> tuple[torch.Tensor, list[tuple[int, str]]]:
        """This step's activation statistics as one vector, in layer order, and what each part is:
        ``(layer index, 'out')`` for the sum and sum of squares of its output (two entries),
        ``(layer index, 'act')`` for its nonlinearity's sign count (one entry), ``'act?'`` for a
        nonlinearity that has no count (no entry). See :func:`activation_columns`."""
        device = self._device
        parts, order = [], []
        for i, layer in enumerate(plan.layers):
            key = id(layer.module)
            out = self._output_rows.get(key)
            if out is not None:
                parts += out[:2]
                order.append((i, "out"))
            act = self._act_rows.get(key) if layer.activation else None
            if act is not None:
                if act[1] is None:
                    order.append((i, "act?"))
                else:
                    parts.append(act[1])
                    order.append((i, "act"))
        parts = [p if p.device == device else p.to(device) for p in parts]
        return torch.stack(parts), order

    def _replay(self, x: torch.Tensor) -> None:
        """Run this step's forward pass again, with the parameters it used and copies of the
        buffers (batch-norm statistics stay untouched), collecting every layer's output."""
        state = self._replay_state()
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

    def _replay_state(self, *, all_parameters: bool = False) -> dict:
        """Copies of the buffers (batch-norm statistics stay untouched) and the parameters this
        step started from (kept by the step hook when it saw a NaN gradient)."""
        state = {name: b.clone() for name, b in self.model.named_buffers()}
        if all_parameters:
            state.update(dict(self.model.named_parameters()))
        if self._pre_step_params is not None:
            names = {id(p): n for n, p in self.model.named_parameters()}
            state.update({names[id(p)]: s for p, s in zip(self._plan.params, self._pre_step_params) if id(p) in names})
        return state

    def _replay_under_debugger(self, step: int) -> NonFiniteReplayEvent | None:
        """Opt-in (``replay_nonfinite=True``): see ``_replay.py``."""
        if not isinstance(self._input, torch.Tensor):
            return None
        return replay_step(self.model, self._replay_state(all_parameters=True), self._input, step=step)

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


def _all_finite(norms) -> bool:
    """Whether the gradient norms (a list read to the host, or a tensor) are all finite."""
    if isinstance(norms, list):
        return all(map(math.isfinite, norms))
    return math.isfinite(norms.sum().item())
