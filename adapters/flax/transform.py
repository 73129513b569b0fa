"""An optax transformation that measures gradients, parameters and updates as they pass.

Modelled on ``optax.monitor``: the updates pass through unchanged and the measurements are kept
in the optimizer state, where the recorder reads them inside the same jitted step.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from diag.adapters.flax.stats import layer_groups, sumsq_by_layer_triple


class MeasureState(NamedTuple):
    """State of :func:`measure`.

    Attributes:
      inner: the wrapped transformation's state.
      count: updates applied so far (int32).
      lr: the learning rate the last update used (NaN when unknown).
      table: ``(n_layers, 3)`` float32 per-layer sums of squares of gradient, parameters (before
        the update) and update, in tree order; zeros on steps that did not measure.
    """

    inner: Any
    count: jax.Array
    lr: jax.Array
    table: jax.Array


def _find_learning_rate(state):
    """The ``learning_rate`` of an ``optax.inject_hyperparams`` state anywhere in ``state``."""
    found = []

    def visit(node):
        hp = getattr(node, "hyperparams", None)
        if isinstance(hp, dict) and "learning_rate" in hp and not found:
            found.append(hp["learning_rate"])
        return node

    jax.tree.map(visit, state, is_leaf=lambda n: hasattr(n, "hyperparams"))
    return found[0] if found else None


def find_state(tree, kind):
    """The first node of type ``kind`` in a pytree (an optimizer state), or None."""
    hits = [n for n in jax.tree.leaves(tree, is_leaf=lambda n: isinstance(n, kind)) if isinstance(n, kind)]
    return hits[0] if hits else None


def measure(
    inner: optax.GradientTransformation,
    *,
    learning_rate: float | Callable | None = None,
    enabled: Callable[[], bool] = lambda: True,
) -> optax.GradientTransformationExtraArgs:
    """Wrap ``inner`` so that every update also measures per-layer norms.

    Args:
      inner: the optimizer, e.g. ``optax.adam(1e-3)``.
      learning_rate: a float or an optax schedule to record as the learning rate. When None, the
        ``learning_rate`` of an ``optax.inject_hyperparams`` state is recorded if there is one.
      enabled: called at trace time; when it returns False the compiled update skips the
        measurements (the recorder compiles a measuring and a non-measuring variant of the step).

    Returns:
      A gradient transformation whose state is a :class:`MeasureState`.

    Example:
      >>> import jax.numpy as jnp
      >>> tx = measure(optax.sgd(0.1), learning_rate=0.1)
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.full(3, 2.0)}, state, params)
      >>> [round(float(v), 3) for v in state.table[0]]  # |g|^2, |p|^2, |u|^2
      [12.0, 3.0, 0.12]
    """

    def init_fn(params):
        n = len(layer_groups(params)[0])
        return MeasureState(
            inner=inner.init(params), count=jnp.zeros((), jnp.int32),
            lr=jnp.full((), jnp.nan, jnp.float32), table=jnp.zeros((n, 3), jnp.float32),
        )

    def update_fn(updates, state, params=None, **extra):
        if isinstance(inner, optax.GradientTransformationExtraArgs):
            new_updates, inner_state = inner.update(updates, state.inner, params, **extra)
        else:
            new_updates, inner_state = inner.update(updates, state.inner, params)
        if callable(learning_rate):
            lr = jnp.asarray(learning_rate(state.count), jnp.float32)
        elif learning_rate is not None:
            lr = jnp.asarray(learning_rate, jnp.float32)
        else:
            found = _find_learning_rate(inner_state)
            lr = jnp.asarray(found, jnp.float32) if found is not None else jnp.full((), jnp.nan, jnp.float32)
        if enabled():
            if params is None:
                raise ValueError("diag's measure() needs the parameters: nnx.Optimizer passes them.")
            table = sumsq_by_layer_triple(updates, params, new_updates)
        else:
            table = state.table
        return new_updates, MeasureState(inner_state, state.count + 1, lr, table)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
