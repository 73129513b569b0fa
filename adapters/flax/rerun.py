"""Name the first non-finite tensor of a step that was not measured, by running it again.

Steps between measuring steps record only the loss, the learning rate and global norms. When
one of them turns out non-finite, the recorder re-runs the measuring variant of the step on that
step's inputs (kept by reference, no copy) without touching the model, so the ``nonfinite`` event
names the layer even between measuring steps. A mixin of
:class:`~diag.adapters.flax.recorder.Recorder` (its state lives on the recorder).
"""

from __future__ import annotations

import jax
import numpy as np
from flax import nnx

from diag.adapters.flax.nonfinite import locate_nonfinite, origin_event
from diag.adapters.flax.origin import Origin, OriginFound
from diag.adapters.replay import replay_event
from diag.trace.records import NonFiniteEvent, NonFiniteReplayEvent, NoteEvent, Step


class Rerun:
    """Input snapshots of recent steps and the re-run that localizes a NaN/Inf."""

    def _snapshot(self, call, args, kwargs, measured, raw) -> None:
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
        self._snapshots[call] = (list(args), graph_at, values, kwargs, measured, raw)
        # Bounded even when record() is not called for every step.
        self._snapshots.pop(call - self.max_snapshots, None)

    def _inputs_of(self, call):
        """The arguments step ``call`` ran with, its model and optimizer replaced by copies of
        their state at that step (the live ones are never touched), or None."""
        snap = self._snapshots.get(call)
        if snap is None:
            return None
        args, graph_at, values, kwargs, measured, raw = snap
        graphdef, state = nnx.split(tuple(args[i] for i in graph_at))
        flat = nnx.to_flat_state(state)
        if len(flat) != len(values):
            return None  # the model changed structure since: nothing to re-run
        # A new state of plain arrays: the split state holds the live Variables, which must not change.
        clones = nnx.merge(graphdef, nnx.from_flat_state([(path, value) for (path, _), value in zip(flat, values)]))
        args = list(args)
        for i, clone in zip(graph_at, clones):
            args[i] = clone
        return args, kwargs, measured, raw

    def _rerun(self, call):
        inputs = self._inputs_of(call)
        if inputs is None:
            return None
        args, kwargs, measured, _ = inputs
        out = measured(*args, **kwargs)
        return out[-1] if isinstance(out, (tuple, list)) else out

    def _find_origin(self, call) -> Origin | None:
        """Re-run step ``call``'s forward pass eagerly with every module watched (origin.py)."""
        inputs = self._inputs_of(call)
        if inputs is None:
            return None
        args, kwargs, _, raw = inputs
        self._watching = True
        try:
            raw(*args, **kwargs)
        except OriginFound as found:
            return found.origin
        except Exception:  # noqa: BLE001 - a step that cannot run eagerly keeps the layer-level event
            return None
        finally:
            self._watching = False
        return None  # the step does not use rec.value_and_grad: no forward pass to watch

    def _replay_under_debug_nans(self, step, call) -> NonFiniteReplayEvent | None:
        """Opt-in (``replay_nonfinite=True``): run step ``call`` again, eagerly, on copies, under
        ``jax.debug_nans``/``jax.debug_infs``; the first primitive that produces a NaN/Inf raises,
        and its name and the user's line that called it go into the trace."""
        inputs = self._inputs_of(call)
        if inputs is None:
            return None
        args, kwargs, _, raw = inputs
        try:
            with jax.disable_jit(), jax.debug_nans(True), jax.debug_infs(True):
                raw(*args, **kwargs)
        except FloatingPointError as e:
            return replay_event(e, step=step, tool="jax.debug_nans")
        except Exception as e:  # noqa: BLE001 - say why the replay did not name an operation
            return NonFiniteReplayEvent(step=step, tool="jax.debug_nans",
                                        message=f"replay failed: {type(e).__name__}: {str(e)[:300]}")
        return NonFiniteReplayEvent(step=step, tool="jax.debug_nans",
                                    message="the replayed step produced no NaN/Inf (not reproducible from its inputs)")

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
                event, step, call = earlier, earlier.step, call - 1
        if event is None:
            # The step's own record: the loss and the global norms measured every step.
            try:
                record = self._decode(step, vector, layout, None, {})
            except Exception:  # never stop the training loop over a record
                record = Step(step=step, loss=float(vector[0]))
            event = locate_nonfinite(record, self._layer_names)
        if event is None:  # nothing measured names it (e.g. only a global norm of the update)
            event = NonFiniteEvent(step=step, tensor="update",
                                   message=f"first non-finite value at step {step}: a global norm of the step")
        if event.tensor in ("activation", "loss") and self.localize:
            # The measured layers have parameters; the value may have been born before them, in a
            # parameter-free module or a plain function: watch every module call.
            origin = self._find_origin(call)
            if origin is not None:
                event = origin_event(origin, step)
        events = [event]
        if self.replay_nonfinite:
            replay = self._replay_under_debug_nans(step, call)
            if replay is not None:
                events.append(replay)
        return events

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
