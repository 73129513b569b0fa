"""An example target for ``diag gradcheck``: a two-layer network whose dense layer has a custom VJP.

The contract: a ``TARGET`` named ``module:function`` or ``path/to/file.py:function`` is a function
taking no arguments that returns ``(fn, args)``; diag checks the gradient of ``fn(*args)`` with
respect to ``args[0]`` (``--argnums`` picks others). ``fn`` may return a scalar or arrays.

    diag gradcheck examples/gradcheck_target.py:target            # passes
    diag gradcheck examples/gradcheck_target.py:target_with_bug   # names layer dense2, weight w
"""

import jax
import jax.numpy as jnp


def _make_dense(bug: bool):
    @jax.custom_vjp
    def dense_tanh(x, w, b):
        return jnp.tanh(x @ w + b)

    def fwd(x, w, b):
        y = dense_tanh(x, w, b)
        return y, (x, w, y)

    def bwd(res, g):
        x, w, y = res
        d = g * (1 - y**2)
        dw = x.T @ d
        if bug:
            # A planted bug: the first entry of the weight gradient is off by a factor of 2.
            dw = dw.at[0, 0].multiply(2.0)
        return d @ w.T, dw, d.sum(0)

    dense_tanh.defvjp(fwd, bwd)
    return dense_tanh


dense_tanh = _make_dense(bug=False)
dense_tanh_buggy = _make_dense(bug=True)


def _params(key):
    k1, k2 = jax.random.split(key)
    return {
        "dense1": {"w": jax.random.normal(k1, (8, 16)) / 8**0.5, "b": jnp.zeros(16)},
        "dense2": {"w": jax.random.normal(k2, (16, 4)) / 4.0, "b": jnp.zeros(4)},
    }


def _loss(second_layer):
    def loss(params, x, y):
        h = dense_tanh(x, params["dense1"]["w"], params["dense1"]["b"])
        out = second_layer(h, params["dense2"]["w"], params["dense2"]["b"])
        return jnp.mean((out - y) ** 2)

    return loss


def _batch():
    kx, ky = jax.random.split(jax.random.key(1))
    return jax.random.normal(kx, (32, 8)), jax.random.normal(ky, (32, 4))


def target():
    """A correct custom VJP: every check passes."""
    return _loss(dense_tanh), (_params(jax.random.key(0)), *_batch())


def target_with_bug():
    """The second layer's custom VJP scales one weight-gradient entry by 2."""
    return _loss(dense_tanh_buggy), (_params(jax.random.key(0)), *_batch())
