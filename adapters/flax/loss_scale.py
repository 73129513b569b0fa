"""A dynamic loss scale for float16 training, as an optax transformation the recorder reads.

The supported loss-scaling helper is this one (``dynamic_loss_scale``); its state carries the
current scale, and a step whose unscaled gradients hold a NaN/Inf is skipped (no update, the
scale halves), the way ``jmp.DynamicLossScale`` and PyTorch's ``GradScaler`` behave. The recorder
writes ``loss_scale`` and ``skipped`` for every step. Multiply the loss by
``current_scale(optimizer)`` inside the loss function.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx


WRONG_ORDER = """\
dynamic_loss_scale() wraps a diag recorder's measuring transformation: the wrong order.

Inside dynamic_loss_scale(rec.wrap(tx)) the recorder sees gradients already unscaled and zeroed
on an overflow, and the loss scaler rolls its state back on a skipped step, so the recorded
gradient norms, loss scale and skipped flag would describe the wrong step. Wrap the loss scaler
instead; the recorder then reads the scale each step's gradients were scaled by:

    wrong: nnx.Optimizer(model, dynamic_loss_scale(rec.wrap(optax.adam(1e-3))), wrt=nnx.Param)
    right: nnx.Optimizer(model, rec.wrap(dynamic_loss_scale(optax.adam(1e-3))), wrt=nnx.Param)
"""


class LossScaleState(NamedTuple):
    inner: Any
    scale: jax.Array
    good_steps: jax.Array
    last_finite: jax.Array


def dynamic_loss_scale(inner: optax.GradientTransformation, *, init_scale: float = 2.0**15,
                       period: int = 2000, factor: float = 2.0, min_scale: float = 1.0):
    """Unscale gradients, skip non-finite steps, and adapt the scale.

    Args:
      inner: the optimizer.
      init_scale: the starting scale.
      period: finite steps in a row before the scale grows by ``factor``.
      factor: growth and shrink factor.
      min_scale: the scale never drops below this.

    Returns:
      A gradient transformation whose state is a :class:`LossScaleState`.

    Example:
      >>> tx = dynamic_loss_scale(optax.sgd(0.1), init_scale=8.0)
      >>> p = {"w": jnp.ones(2)}
      >>> s = tx.init(p)
      >>> u, s = tx.update({"w": jnp.array([jnp.inf, 1.0])}, s, p)
      >>> float(s.scale), bool(s.last_finite), u["w"].tolist()
      (4.0, False, [0.0, 0.0])
    """

    def init_fn(params):
        from diag.adapters.flax.transform import MeasureState, find_state

        inner_state = inner.init(params)
        if find_state(inner_state, MeasureState) is not None:
            raise ValueError(WRONG_ORDER)
        return LossScaleState(inner_state, jnp.asarray(init_scale, jnp.float32),
                              jnp.zeros((), jnp.int32), jnp.ones((), jnp.bool_))

    def update_fn(grads, state, params=None):
        grads = jax.tree.map(lambda g: (g / state.scale.astype(g.dtype)), grads)
        finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        safe = jax.tree.map(lambda g: jnp.where(finite, g, jnp.zeros_like(g)), grads)
        updates, inner_state = inner.update(safe, state.inner, params)
        updates = jax.tree.map(lambda u: jnp.where(finite, u, jnp.zeros_like(u)), updates)
        inner_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), inner_state, state.inner)
        good = jnp.where(finite, state.good_steps + 1, 0)
        grow = good >= period
        scale = jnp.where(finite, jnp.where(grow, state.scale * factor, state.scale),
                          jnp.maximum(state.scale / factor, min_scale))
        return updates, LossScaleState(inner_state, scale, jnp.where(grow, 0, good), finite)

    return optax.GradientTransformation(init_fn, update_fn)


def current_scale(optimizer: nnx.Optimizer) -> jax.Array:
    """The loss scale to multiply the loss by in this step (inside the jitted step)."""
    from diag.adapters.flax.transform import find_state

    state = find_state(nnx.as_pure(optimizer.opt_state), LossScaleState)
    if state is None:
        raise ValueError("current_scale: the optimizer has no dynamic_loss_scale() in its transformation")
    return state.scale


def skipped_flag(optimizer):
    """1.0 when an ``optax.apply_if_finite`` wrapper skipped this step, else None (not in use)."""
    if optimizer is None:
        return None
    from diag.adapters.flax.transform import find_state

    pure = nnx.as_pure(optimizer.opt_state)
    st = find_state(pure, LossScaleState) or find_state(pure, optax.ApplyIfFiniteState)
    if st is None:
        return None
    return 1.0 - jnp.asarray(st.last_finite, jnp.float32)


def uses_loss_scale(optimizer) -> bool:
    """Whether the optimizer's transformation holds a ``dynamic_loss_scale``."""
    from diag.adapters.flax.transform import find_state

    return find_state(nnx.as_pure(optimizer.opt_state), LossScaleState) is not None
