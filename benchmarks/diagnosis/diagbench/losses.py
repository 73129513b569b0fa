"""Loss functions of the scenarios, including the wrong ones users write.

``ce`` is the correct cross-entropy on logits. The faulty ones are what a trace of a real bug
contains: ``naive_ce`` takes ``log(softmax(z))`` (log of an underflowed probability is -inf),
``naive_bce`` writes binary cross-entropy by hand with ``log(sigmoid(z))`` and ``log(1-sigmoid(z))``
(``0 * log(0)`` is NaN once a logit passes ~17 in float32), ``mse_class_id`` regresses the class
index with one output, ``ce`` on a model that already ends with a softmax is a double softmax.

Example:
  >>> import jax.numpy as jnp
  >>> float(flax_loss("ce")(jnp.zeros((2, 4)), jnp.array([0, 1])))  # doctest: +ELLIPSIS
  1.386...
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

# What the user declares to the recorder (they believe their loss is this).
LOSS_KIND = {
    "ce": "softmax_cross_entropy", "naive_ce": "softmax_cross_entropy", "naive_ce_smooth": "softmax_cross_entropy",
    "bce": "binary_cross_entropy_with_logits", "naive_bce": "binary_cross_entropy",
    "mse": "mse", "mse_class_id": "mse",
}


def output_dim(loss: str, num_classes: int | None) -> int:
    if loss in ("bce", "naive_bce", "mse", "mse_class_id"):
        return 1
    return int(num_classes)


def _reduce(v, reduction):
    return v.sum() if reduction == "sum" else v.mean()


def flax_loss(name: str, reduction: str = "mean"):
    """``loss(outputs, labels) -> scalar`` (float32 whatever the compute dtype)."""

    def ce(out, y):
        return _reduce(optax.softmax_cross_entropy_with_integer_labels(out.astype(jnp.float32), y), reduction)

    def naive_ce(out, y):
        p = jax.nn.softmax(out.astype(jnp.float32))
        return _reduce(-jnp.log(jnp.take_along_axis(p, y[:, None], 1))[:, 0], reduction)

    def naive_ce_smooth(out, y, eps=0.1):
        p = jax.nn.softmax(out.astype(jnp.float32))
        q = jax.nn.one_hot(y, out.shape[-1]) * (1 - eps) + eps / out.shape[-1]
        return _reduce(-(q * jnp.log(p)).sum(-1), reduction)

    def bce(out, y):
        return _reduce(optax.sigmoid_binary_cross_entropy(out[:, 0].astype(jnp.float32), y.astype(jnp.float32)), reduction)

    def naive_bce(out, y):
        p = jax.nn.sigmoid(out[:, 0].astype(jnp.float32))
        y = y.astype(jnp.float32)
        return _reduce(-(y * jnp.log(p) + (1 - y) * jnp.log(1 - p)), reduction)

    def mse(out, y):
        return _reduce((out[:, 0].astype(jnp.float32) - y.astype(jnp.float32)) ** 2, reduction)

    table = {"ce": ce, "naive_ce": naive_ce, "naive_ce_smooth": naive_ce_smooth, "bce": bce,
             "naive_bce": naive_bce, "mse": mse, "mse_class_id": mse}
    return table[name]


def accuracy(name: str, out, y):
    if name in ("bce", "naive_bce"):
        return jnp.mean((out[:, 0] > 0) == (y > 0))
    if name == "mse_class_id":
        return jnp.mean(jnp.round(out[:, 0]) == y)
    return jnp.mean(jnp.argmax(out, -1) == y)
