"""Name the first non-finite tensor of a step that was not measured, by running it again.

Steps between measuring steps record only the loss, the learning rate and global norms. When
one of them turns out non-finite, the recorder re-runs the measuring variant of the step on that
step's inputs (kept by reference, no copy) without touching the model, so the ``nonfinite`` event
names the layer even between measuring steps. A mixin of
:class:`~diag.adapters.flax.recorder.Recorder` (its state lives on the recorder).
"""

from __future__ import annotations

import numpy as np
from flax import nnx

from diag.adapters.flax.nonfinite import locate_nonfinite
from diag.trace.records import NoteEvent, Step


class Rerun:
    """Input snapshots of recent steps and the re-run that localizes a NaN/Inf."""

    def _snapshot(self, call, args, kwargs, measured) -> None:
        # The arrays this step starts from (references, no copy), to re-run it with measurements
        # if its loss turns out non-finite. NNX updates Variables in place, so the Variable
        # objects are found once and only their current arrays are read each step (a full
        # graph traversal per step cost more than the step of a small model).
        graph_at = [i for i, a in enumerate(args) if isinstance(a, nnx.Pytree)]
        nodes = tuple(args[i] for i in graph_at)
        key = tuple(id(n) for n in nodes)
        if self._variables_key != key:
            self._variables_key = key
            self._variables = [v for _, v in nnx.to_flat_state(nnx.state(nodes))]
        values = [v.get_raw_value() for v in self._variables]  # get_value() costs ~14 us each
        self._snapshots[call] = (list(args), graph_at, values, kwargs, measured)
        # Bounded even when record() is not called for every step.
        self._snapshots.pop(call - self.max_snapshots, None)

    def _rerun(self, call):
        snap = self._snapshots.get(call)
        if snap is None:
            return None
        args, graph_at, values, kwargs, measured = snap
        graphdef, state = nnx.split(tuple(args[i] for i in graph_at))
        flat = nnx.to_flat_state(state)
        if len(flat) != len(values):
            return None  # the model changed structure since: nothing to re-run
        # A new state of plain arrays: the split state holds the live Variables, which must not change.
        clones = nnx.merge(graphdef, nnx.from_flat_state([(path, value) for (path, _), value in zip(flat, values)]))
        args = list(args)
        for i, clone in zip(graph_at, clones):
            args[i] = clone
        out = measured(*args, **kwargs)
        return out[-1] if isinstance(out, (tuple, list)) else out

    def _localize(self, step, call, vector, layout):
        """The NonFiniteEvent for the first non-finite step (runs once, on the main thread)."""
        self._ensure_header()
        event = None
        if layout is not None and layout.full:
            event = locate_nonfinite(self._decode(step, vector, layout, None, {}), self._layer_names)
        elif self.localize:
            event = self._locate_by_rerun(step, call)
        # Parameters already non-finite: the previous step (unmeasured) wrote them. Look there.
        if (event is None or event.tensor == "parameter") and self.localize and call - 1 in self._snapshots:
            earlier = self._locate_by_rerun(self._call_steps.get(call - 1, step - 1), call - 1)
            if earlier is not None:
                event = earlier
        if event is None:
            event = locate_nonfinite(Step(step=step, loss=float(vector[0])), self._layer_names)
        return event

    def _locate_by_rerun(self, step, call):
        try:
            again = self._rerun(call)
        except Exception as e:
            self._emit(NoteEvent(step=step, level="warning",
                                 message=f"could not re-run step {step} to localize NaN: {e}"))
            return None
        if again is None:
            return None
        v = np.asarray(again, dtype=np.float32)
        return locate_nonfinite(self._decode(step, v, self._layouts.get(v.size), None, {}), self._layer_names)
