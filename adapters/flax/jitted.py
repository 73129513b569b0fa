"""The recorder's two wrappers of the user's step: ``jit`` (a measuring and a light variant) and
``value_and_grad`` (layer outputs captured with ``nnx.capture`` on measuring steps).

Both run at trace time: a flag on the recorder says which variant is being traced, and the
``measure`` transformation and ``stats`` read it. A mixin of
:class:`~diag.adapters.flax.recorder.Recorder` (its state lives on the recorder).
"""

from __future__ import annotations

from typing import Callable

from flax import nnx

from diag.adapters.flax.forward import ForwardInfo, capture_calls, trace_forward
from diag.adapters.flax.origin import OriginFound, watch_modules


class JitVariants:
    """``rec.jit`` and ``rec.value_and_grad``."""

    def value_and_grad(self, fn: Callable, *, has_aux: bool = False) -> Callable:
        """Like ``nnx.value_and_grad(fn, has_aux=has_aux)``, also capturing layer outputs.

        ``fn(model, *args)`` is the user's loss function; the model is its first argument.
        On measuring steps each submodule's ``__call__`` output is captured with ``nnx.capture``
        (the model is not changed) for activation statistics.
        """

        def wrapped(model, *args, **kwargs):
            if self._forward is None:
                try:
                    self._forward = trace_forward(
                        (lambda m, *a, **k: fn(m, *a, **k)[0]) if has_aux else fn, model, args, kwargs)
                except Exception as e:  # an unusual model: record in tree order rather than fail
                    self._forward = ForwardInfo()
                    self._forward_error = f"{type(e).__name__}: {e}"
            if self._watching:
                # The eager re-run that looks for where a NaN was born (rerun.py): the forward
                # pass alone, with concrete values, then stop before the gradients and the update.
                with watch_modules(model) as watch:
                    fn(model, *args, **kwargs)
                raise OriginFound(watch.origin)
            if not self._full:
                self._captured = None
                return nnx.value_and_grad(fn, has_aux=has_aux)(model, *args, **kwargs)

            def captured(m, *a, **k):
                out, inter = capture_calls(fn)(m, *a, **k)
                if has_aux:
                    return out[0], (out[1], inter)
                return out, inter

            (loss, aux), grads = nnx.value_and_grad(captured, has_aux=True)(model, *args, **kwargs)
            if has_aux:
                user_aux, inter = aux
                self._captured = inter
                return (loss, user_aux), grads
            self._captured = aux
            return loss, grads

        return wrapped

    def jit(self, fn: Callable | None = None, **jit_kwargs):
        """``nnx.jit`` that compiles a measuring and a non-measuring variant of the step.

        Call ``k`` runs the measuring variant when ``k % every == 0``. Use it in place of
        ``nnx.jit`` on the training step (plain ``nnx.jit`` works too: it measures every step).
        """
        if fn is None:
            return lambda f: self.jit(f, **jit_kwargs)

        def variant(full: bool):
            def traced(*args, **kwargs):
                self._full = full
                self._captured = None  # never a value left over from another trace
                try:
                    return fn(*args, **kwargs)
                finally:
                    self._full = True
            traced.__name__ = getattr(fn, "__name__", "step") + ("_measured" if full else "")
            return nnx.jit(traced, **jit_kwargs)

        measured, light = variant(True), variant(False)

        def step(*args, **kwargs):
            k = self._calls
            self._calls += 1
            full = self.every > 0 and k % self.every == 0
            if self.localize:
                self._snapshot(k, args, kwargs, measured, fn)
            return (measured if full else light)(*args, **kwargs)

        step.measured, step.light = measured, light
        return step
