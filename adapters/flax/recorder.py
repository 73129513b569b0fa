"""Record a Flax NNX + optax training run into a diag trace, from inside the jitted step.

Four additions to an ordinary training loop::

    rec = Recorder("run.jsonl", model, task="classification", num_classes=10,
                   loss_kind="softmax_cross_entropy", seed=0)
    optimizer = nnx.Optimizer(model, rec.wrap(optax.adam(1e-3)), wrt=nnx.Param)   # 1

    @rec.jit                                                                       # 2 (was nnx.jit)
    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()
        loss, grads = rec.value_and_grad(loss_fn)(model)                           # 3 (was nnx.value_and_grad)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss, batch=x, labels=y)                       # 4: one packed array

    with rec:
        for step, (x, y) in enumerate(batches):
            rec.record(step, train_step(model, optimizer, x, y))

How it stays cheap: every statistic is computed on the device inside the step and packed into one
float32 vector; ``record`` starts its copy to the host and decodes the vector of the step two
calls earlier, which the device has finished by then, so the loop never waits for a transfer.
Decoding a step takes a few microseconds on the loop's thread (a background thread cost more in
thread hand-offs than it saved); the trace file is written in batches and flushed by the writer's
own thread every ``flush_seconds``, and steps a loop left pending when it went idle are written by
a thread of their own (idle.py). ``rec.jit`` compiles two variants of the step: the measuring one (per-layer gradient/parameter/update norms, activation and batch
statistics) runs every ``every`` steps (default 25), the other records only the loss and the
learning rate and costs nothing measurable. ``every=1`` records everything every step.

Non-finite values: when a step's loss (or any measured value) is NaN/Inf, the recorder finds the
first non-finite tensor in computation order and writes a ``nonfinite`` event. On a non-measuring
step it re-runs the measuring variant on the inputs of that step (kept by reference, no copy)
without touching the model, so the event names the layer even between measuring steps.
"""

from __future__ import annotations

import atexit
import functools
import time
import uuid
import weakref
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diag.adapters._guard import GuardHook
from diag.adapters.flax import crash, stats as S
from diag.adapters.flax.decode import decode_step, vector_is_finite
from diag.adapters.flax.forward import ForwardInfo, captured_outputs, recurrent_paths, recurrent_units
from diag.adapters.flax.header import HeaderLifecycle, describe_optimizer, describe_schedule
from diag.adapters.flax.idle import IdleDrain, _ready
from diag.adapters.flax.loss_scale import skipped_flag, uses_loss_scale
from diag.adapters.flax.jitted import JitVariants
from diag.adapters.flax.rerun import Rerun
from diag.adapters.flax.transform import MeasureState, find_state, measure
from diag.guard import Guard
from diag.trace.records import Header, NoteEvent, OptimizerInfo, Step, _Record
from diag.trace.writer import TraceWriter

DEFAULT_EVERY = 25


class Recorder(JitVariants, Rerun, HeaderLifecycle, GuardHook, IdleDrain):
    """Writes a diag trace of a Flax NNX training loop.

    Args:
      path: the ``.jsonl`` trace to write (appended to; parent folders are created). In a
        multi-process run give a folder: each process writes ``run.p{index}.jsonl``.
      model: the NNX model being trained (read for the header; never modified).
      task: 'classification', 'regression', 'language_modeling' or 'other'.
      num_classes: number of classes (classification); enables label histograms.
      loss_kind: e.g. 'softmax_cross_entropy', 'mse', 'binary_cross_entropy_with_logits'.
      seed: the run's random seed.
      every: record the per-layer statistics every this many steps (1: every step; 0: never).
      localize: re-run a non-measuring step that produced a NaN/Inf with measurements on, to name
        the first non-finite tensor. Keeps references (no copies) to the inputs of the steps not
        yet decoded, usually one or two and at most ``max_snapshots`` (8): the device memory of
        that many older versions of the model and optimizer state stays allocated. Turn it off
        for a model whose state fills the device. A step decoded more than ``max_snapshots``
        steps after it ran is localized at the next measuring step instead.
        The first NaN/Inf in a layer's output or the loss is then traced further by re-running
        that step's forward pass once, eagerly, with every module call watched: the event names
        the innermost module (parameter-free ones included) whose output went non-finite from
        finite inputs, and ``after`` the last submodule that returned finite outputs when the
        value was made by a plain function in that module's own code.
      replay_nonfinite: also replay the first non-finite step eagerly under ``jax.debug_nans``
        and ``jax.debug_infs`` (forward and backward) and write a ``nonfinite_replay`` event with
        the primitive that produced the value and the line of your code that called it. Opt-in:
        an eager step is slow (it runs once, after the first NaN; nothing is added before).
      handle_signals: turn SIGTERM/SIGINT into a flushed trace inside ``with recorder:``.
      flush_seconds: the longest a record waits in memory (what ``kill -9`` can lose).
      global_norms: which global norms every step records: 'grad' (the gradient norm; the
        parameter and update norms on measuring steps, as the PyTorch recorder does) or 'all'
        (gradient, parameter and update norms; on a CPU the two more cost about 2% of the
        README's MLP step: each is a pass over memory XLA cannot fuse into the optimizer's). The
        update is the change the step made to the parameters (``transform.applied_change``).
      guard: ``True`` or a :class:`diag.guard.Guard`: ``record`` raises :class:`diag.TrainingDoomed`
        once the run cannot recover, as the PyTorch recorder does (steps are judged as they are
        decoded, a call or two after they ran); the reason is written into the trace once.
      **header: more Header fields (batch_size, steps_planned, model_name, tags, ...).

    Example:
      See the module docstring; ``diag demo`` runs a complete loop.
    """

    def __init__(
        self,
        path,
        model: nnx.Module,
        *,
        task: str | None = None,
        num_classes: int | None = None,
        loss_kind: str | None = None,
        seed: int | None = None,
        every: int = DEFAULT_EVERY,
        localize: bool = True,
        replay_nonfinite: bool = False,
        handle_signals: bool = True,
        flush_seconds: float = 1.0,
        guard: "Guard | bool | None" = None,
        global_norms: str = "grad",
        **header: Any,
    ):
        self.model = model
        self.every = int(every)
        self._set_guard(guard)
        if global_norms not in ("grad", "all"):
            raise ValueError(f"global_norms must be 'grad' or 'all', not {global_norms!r}")
        self._every_step_norms = ("grad",) if global_norms == "grad" else ("grad", "param", "update")
        # Steps are decoded once the device has finished them, never waiting on one: a blocking
        # fetch cost 4-9% of a CPU step (the waiting thread spins on cores the step needs).
        # JAX's dispatch already keeps the loop from running far ahead; this bound is a backstop.
        self.max_pending = 64
        # Inputs kept for re-running a step that turned out non-finite (see ``localize``).
        self.max_snapshots = 8
        # On the CPU the "copy" is the array itself; elsewhere start the transfer now.
        self._async_copy = jax.default_backend() != "cpu"
        self.localize = localize
        self.replay_nonfinite = bool(replay_nonfinite) and localize
        self._watching = False  # trace-free flag: an eager re-run watching module calls (rerun.py)
        self.num_classes = num_classes
        self._header_fields = dict(task=task, num_classes=num_classes, loss_kind=loss_kind, seed=seed, **header)
        process = jax.process_index()
        if jax.process_count() > 1 and not str(path).endswith(".jsonl"):
            self.writer = TraceWriter.for_process(path, process, flush_seconds=flush_seconds, background=True)
        else:
            self.writer = TraceWriter(path, flush_seconds=flush_seconds, background=True)
        self.path = self.writer.path
        # Global statistics are identical on every process: only process 0 writes steps.
        self._writes_steps = process == 0
        self._optimizer: OptimizerInfo | None = None
        self._forward: ForwardInfo | None = None
        self._header: Header | None = None
        self._layer_names: list[str] = []
        self._perm: dict[int, list[int]] = {}
        self._layouts: dict[int, S.Layout] = {}
        self._recurrent = recurrent_paths(model)  # their outputs are (carry, output)
        self._output_elements: dict[str, str] = {}  # layer -> element of a structured output measured
        self._units = recurrent_units(model)
        self._param_layers = S.layer_groups(nnx.as_pure(nnx.state(model, nnx.Param)), self._units)[0]
        self._full = True  # trace-time flag: does the variant being traced measure?
        self._captured = None  # trace-time: activations captured by value_and_grad
        self._pending: list = []
        self._followers: dict[int, list] = {}  # call -> records written after it, before it was decoded
        self._snapshots: dict[int, tuple] = {}
        self._call_steps: dict[int, int] = {}
        self._early: list = []
        self._variables_key: tuple | None = None
        self._variables: list = []
        self._last_wall: float | None = None
        self._calls = 0
        self._steps_written = 0
        self._last_step: int | None = None
        self._last_good: int | None = None
        self._nonfinite_reported = False
        self._signals: list = []
        self._guard = crash.SignalGuard(self._on_signal) if handle_signals else None
        self._closed = False
        # A header now, so that a run killed before its first step still leaves a trace that says
        # what ran. Layers are in tree order until the first step has been traced; then the
        # complete header (forward order, optimizer) restates it under the same run id.
        self._header_fields.setdefault("run_id", uuid.uuid4().hex[:12])
        self._emit(self._opening_header())
        self.writer.flush()
        # The exit hook holds the recorder weakly: registering a bound method would keep the
        # model, the optimizer and the compiled steps alive until the interpreter exits.
        self._exit_hook = functools.partial(_close_at_exit, weakref.ref(self))
        atexit.register(self._exit_hook)
        self._start_idle_drain(flush_seconds)

    # ------------------------------------------------------------------ inside the jitted step

    def wrap(self, tx, *, learning_rate: float | Callable | None = None):
        """The optimizer ``tx`` with per-layer gradient, parameter and update measurements.

        Args:
          tx: an optax GradientTransformation.
          learning_rate: float or schedule to record as the LR (read from an
            ``optax.inject_hyperparams`` state when not given).

        Returns:
          A GradientTransformation to give to ``nnx.Optimizer``.
        """
        self._optimizer = describe_optimizer(tx)
        if callable(learning_rate):
            self._optimizer.hyperparameters.update(describe_schedule(learning_rate))
        elif learning_rate is not None:
            self._optimizer.hyperparameters["learning_rate"] = float(learning_rate)
        lr = learning_rate
        if lr is None and isinstance(self._optimizer.hyperparameters.get("learning_rate"), float):
            lr = self._optimizer.hyperparameters["learning_rate"]  # a constant LR read from optax's closure
        return measure(tx, learning_rate=lr, enabled=lambda: self._full, units=self._units,
                       every_step=self._every_step_norms)

    def stats(self, optimizer: nnx.Optimizer | None, loss, *, batch=None, labels=None) -> jax.Array:
        """Pack this step's statistics into one float32 vector (call inside the jitted step).

        Args:
          optimizer: the ``nnx.Optimizer`` built with ``rec.wrap(tx)`` (after ``update``).
          loss: the scalar training loss.
          batch: the input batch (input statistics, non-finite inputs); optional.
          labels: integer (or one-hot) labels, for the label histogram; optional.

        Returns:
          A 1-D float32 array for ``rec.record``.
        """
        full = self._full
        ms = find_state(nnx.as_pure(optimizer.opt_state), MeasureState) if optimizer is not None else None
        nan = jnp.full((), jnp.nan, jnp.float32)
        skipped = skipped_flag(optimizer)
        if ms is not None and optimizer is not None and uses_loss_scale(optimizer):
            self._header_fields.setdefault("loss_scaling", "dynamic")
        scalars = jnp.concatenate([
            jnp.stack([
                jnp.asarray(loss, jnp.float32).reshape(()),
                ms.lr if ms is not None else nan,
                skipped if skipped is not None else nan,
                ms.loss_scale if ms is not None else nan,
            ]),
            ms.totals if ms is not None else jnp.full((3,), jnp.nan, jnp.float32),
        ])
        layout = S.Layout(parts=[("scalars", S.SCALARS)], full=full)
        pieces = [scalars]
        if full:
            if ms is not None:
                layout.param_layers = self._param_layers
                layout.parts.append(("table", ms.layers.size))
                pieces.append(ms.layers.T.reshape(-1))
            if self._captured is not None:
                outputs, kinds, act_names = [], [], []
                layers = set(self._param_layers)
                for path, z, element in captured_outputs(self._captured, self._recurrent):
                    if element is not None:
                        self._output_elements.setdefault(path, element)
                    if path in layers:
                        act_names.append(path)
                        outputs.append(z)
                        kinds.append(self._forward.activation.get(path) if self._forward else None)
                layout.act_layers, layout.act_kinds = act_names, kinds
                layout.parts.append(("acts", 6 * len(outputs)))
                pieces.append(S.activation_block(outputs, kinds).reshape(-1))
                self._captured = None
            if batch is not None:
                layout.parts.append(("input", 5))
                pieces.append(S.batch_block(batch))
            if labels is not None and self.num_classes:
                layout.parts.append(("labels", self.num_classes))
                pieces.append(S.label_histogram(labels, self.num_classes))
        vector = jnp.concatenate(pieces)
        self._layouts[layout.size] = layout
        if self._header is None:
            # The first trace has shown the forward order and the optimizer: write the header now,
            # before XLA compiles the step, so a run killed while compiling leaves a readable trace.
            self._ensure_header()
        return vector

    # ------------------------------------------------------------------ on the host

    def record(self, step: int, stats: jax.Array, *, epoch: int | None = None,
               metrics: dict[str, float] | None = None, **fields: Any) -> None:
        """Hand one step's packed statistics to the recorder (does not wait for the device).

        Args:
          step: the optimizer step number.
          stats: the array returned by ``rec.stats`` (or a tuple whose last element is it).
          epoch, metrics, fields: more Step fields (host values), e.g. ``data_wait_time``.
        """
        if isinstance(stats, (tuple, list)):
            stats = stats[-1]
        if self._header is None:
            self._ensure_header()  # the step has been traced: the forward order is known
        if self._async_copy and hasattr(stats, "copy_to_host_async"):
            stats.copy_to_host_async()
        call = self._calls - 1
        self._call_steps[call] = step
        self._call_steps.pop(call - 2 * self.max_pending - 2, None)
        extra = {k: v for k, v in dict(epoch=epoch, metrics=metrics, **fields).items() if v is not None}
        now = time.time()
        if self._last_wall is not None:
            # Wall time between two record() calls: the loop's pace, data loading included.
            extra.setdefault("step_time", now - self._last_wall)
        self._last_wall = now
        with self._lock:
            self._pending.append((step, stats, call, now, extra))
            decoded, self._drained_in_background = self._drained_in_background, False
            while self._pending and (len(self._pending) > self.max_pending or _ready(self._pending[0][1])):
                self._process(self._pending.pop(0))
                decoded = True
        if decoded:  # may raise TrainingDoomed once the run cannot recover
            self._check_guard(self._last_step, finite=self._last_good == self._last_step)

    def write(self, record: _Record) -> None:
        """Write any trace record from your own code (an ``Eval``, ``Data`` from the data probe, a
        ``NoteEvent``), in order: after the steps recorded before this call.

        Steps are decoded a call or two late (the device is never waited on), so a record written
        while steps are still pending waits behind them.
        """
        with self._lock:
            if self._header is None:
                # The final header waits for the first step: its layer order comes from tracing it.
                self._early.append(record)
            elif self._pending:
                self._followers.setdefault(self._pending[-1][2], []).append(record)
            else:
                self._emit(record)

    def eval(self, step: int, split: str, *, loss: float | None = None, metrics: dict | None = None, **fields) -> None:
        """Write an evaluation record (host values)."""
        from diag.trace.records import Eval

        self.write(Eval(step=step, split=split, loss=None if loss is None else float(loss),
                        metrics={k: float(v) for k, v in (metrics or {}).items()}, **fields))

    def flush(self) -> None:
        """Decode everything pending and write it out (blocks on the device)."""
        with self._lock:
            while self._pending:
                self._process(self._pending.pop(0))
            self.writer.flush()

    def close(self, status_exc=(None, None, None)) -> None:
        """Write the closing events and flush (``with recorder:`` does this)."""
        if self._closed:
            return
        self._stop_idle_drain()
        with self._lock:
            self._close_locked(status_exc)

    def _close_locked(self, status_exc) -> None:
        exc_type, exc, tb = status_exc
        try:
            while self._pending:
                self._process(self._pending.pop(0))
        except Exception as e:  # the device died with the step: keep what we have
            self._pending.clear()
            for records in self._followers.values():
                for record in records:
                    self._emit(record)
            self._followers.clear()
            self.write(NoteEvent(level="warning", message=f"last steps lost: {type(e).__name__}: {e}"))
        self._ensure_header()
        for event in self._signals:  # noted by the signal handler, written here (see _on_signal)
            self._emit(event)
        self._signals.clear()
        site = crash.crash_site(self.model, tb) if tb is not None else None
        for event in crash.exit_events(exc_type, exc, tb, step=self._last_step,
                                       last_good_step=self._last_good, steps=self._steps_written, site=site):
            self._emit(event)
        self.writer.close()
        self._closed = True
        if self._guard:
            self._guard.uninstall()
        atexit.unregister(self._exit_hook)
        # Hold nothing of the run after it ended (see test_nothing_of_the_run_is_held_after_close).
        self.model = None
        self._snapshots.clear()
        self._variables, self._variables_key = [], None
        self._captured = None
        self._pending.clear()

    def __enter__(self) -> "Recorder":
        if self._guard:
            self._guard.install()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close((exc_type, exc, tb))
        return False

    # ------------------------------------------------------------------ internals

    def _process(self, item) -> None:
        step, stats, call, wall, extra = item
        # Inputs of earlier steps are no longer needed (the one before this may be: a NaN found
        # in this step's parameters is traced back to it).
        # (list() first: the loop's thread adds snapshots while the idle thread may be here.)
        for old in [c for c in list(self._snapshots) if c < call - 1]:
            self._snapshots.pop(old, None)
        vector = np.asarray(stats, dtype=np.float32)
        layout = self._layouts.get(vector.size)
        self._ensure_header()
        self._last_step = step
        if vector_is_finite(vector, layout):
            self._last_good = step
        elif not self._nonfinite_reported:
            self._nonfinite_reported = True
            for event in self._localize(step, call, vector, layout):
                self._emit(event)
        self._steps_written += 1
        if self._writes_steps:
            try:
                record = self._decode(step, vector, layout, wall, extra)
            except Exception as e:  # never stop the training loop over a record
                record = NoteEvent(step=step, level="error", message=f"diag recorder: {type(e).__name__}: {e}")
            self._emit(record)
        for record in self._followers.pop(call, ()):
            self._emit(record)

    def _on_signal(self, event) -> None:
        # Runs between two bytecodes of the main thread, possibly inside a write holding the
        # writer's lock: only note the event here; close() writes it as the exception unwinds.
        last = self._pending[-1:]  # one read: the idle thread may empty the list meanwhile
        event.step = last[0][0] if last else self._last_step  # where the loop was
        self._signals.append(event)


    def _emit(self, record) -> None:
        try:
            self.writer.write(record)
        except ValueError:  # written after close (an atexit race): nothing left to do
            pass

    def _decode(self, step, vector, layout, wall, extra) -> Step:
        clip = self._optimizer.hyperparameters.get("grad_clip") if self._optimizer else None
        return decode_step(step, vector, layout, self._layer_names, self._perm, wall, extra, grad_clip=clip)


def _close_at_exit(recorder_ref) -> None:
    recorder = recorder_ref()
    if recorder is not None and not recorder._closed:
        try:
            recorder.close()
        except Exception:  # noqa: BLE001 - the interpreter is exiting; nothing to report to
            pass
