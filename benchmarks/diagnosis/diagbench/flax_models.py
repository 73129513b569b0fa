"""Small Flax NNX models with the knobs that plant model-side faults.

Models: ``mlp`` (optionally with BatchNorm/LayerNorm/Dropout), ``cnn`` (two conv layers),
``rnn`` (an Elman recurrent net over a sequence), ``attention`` (one self-attention block).

Knobs (all optional, in the scenario's ``model`` section):
  activation: relu, sigmoid, tanh, gelu, leaky_relu, or a custom-VJP activation (``swish_vjp``,
    ``swish_vjp_bug``, ``softclip_vjp``, ``softclip_vjp_bug``) whose hand-written backward may be wrong.
  init_scale: multiplies every kernel's default (LeCun) initialisation.
  init: ``lecun`` (default) or ``unit`` (std 1, no fan-in scaling: a typical from-scratch mistake).
  bias_init: constant for hidden-layer biases.
  output_scale: multiplies the output layer's initial kernel (the initial logits' scale).
  output_bias: constant for the output layer's bias.
  output: ``logits`` (default) or ``softmax`` (the model ends with a softmax).
  unused_layer: define a layer the forward pass never calls.
  stop_gradient_after: index of the hidden layer whose output is cut from the gradient.
  batchnorm / layernorm / dropout: normalisation and dropout after each hidden layer.
  batch_standardize: standardise each input feature over the batch with no epsilon.
  dtype / param_dtype: compute and storage dtype (float16, bfloat16).
  recurrent_scale (rnn): scale of the recurrent matrix (orthogonal init times this).
  attn_scale (attention): divide scores by sqrt(d) (true) or not.

Example:
  >>> from flax import nnx
  >>> m = build({"kind": "mlp", "widths": [8]}, in_shape=(4,), out_dim=3, rngs=nnx.Rngs(0))
  >>> m(__import__("jax").numpy.ones((2, 4))).shape
  (2, 3)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

DTYPES = {None: None, "float32": jnp.float32, "float16": jnp.float16, "bfloat16": jnp.bfloat16}


# --------------------------------------------------------------------------- custom-VJP activations


@jax.custom_vjp
def swish_vjp(x):
    return x * jax.nn.sigmoid(x)


def _swish_fwd(x):
    return swish_vjp(x), x


def _swish_bwd(x, g):
    s = jax.nn.sigmoid(x)
    return (g * (s + x * s * (1 - s)),)


swish_vjp.defvjp(_swish_fwd, _swish_bwd)


@jax.custom_vjp
def swish_vjp_bug(x):
    return x * jax.nn.sigmoid(x)


def _swish_bug_bwd(x, g):
    s = jax.nn.sigmoid(x)
    return (g * s,)  # the bug: forgets the x * s * (1 - s) term of the product rule


swish_vjp_bug.defvjp(lambda x: (swish_vjp_bug(x), x), _swish_bug_bwd)


@jax.custom_vjp
def softclip_vjp(x):
    return 3.0 * jnp.tanh(x / 3.0)


softclip_vjp.defvjp(lambda x: (softclip_vjp(x), x), lambda x, g: (g * (1 - jnp.tanh(x / 3.0) ** 2),))


@jax.custom_vjp
def softclip_vjp_bug(x):
    return 3.0 * jnp.tanh(x / 3.0)


# the bug: derivative of tanh written as 1 - tanh (a missing square), wrong for every non-zero input
softclip_vjp_bug.defvjp(lambda x: (softclip_vjp_bug(x), x), lambda x, g: (g * (1 - jnp.tanh(x / 3.0)),))

ACTIVATIONS = {
    "relu": nnx.relu, "sigmoid": nnx.sigmoid, "tanh": jnp.tanh, "gelu": nnx.gelu,
    "leaky_relu": nnx.leaky_relu, "linear": lambda x: x,
    "swish_vjp": swish_vjp, "swish_vjp_bug": swish_vjp_bug,
    "softclip_vjp": softclip_vjp, "softclip_vjp_bug": softclip_vjp_bug,
}


def _kernel_init(cfg, scale=1.0):
    base = nnx.initializers.normal(1.0) if cfg.get("init") == "unit" else nnx.initializers.lecun_normal()
    s = cfg.get("init_scale", 1.0) * scale

    def init(key, shape, dtype=jnp.float32):
        return (base(key, shape, jnp.float32) * s).astype(dtype)

    return init


def _linear(cfg, fan_in, fan_out, rngs, *, scale=1.0, bias=None, use_bias=True):
    return nnx.Linear(fan_in, fan_out, use_bias=use_bias, kernel_init=_kernel_init(cfg, scale),
                      bias_init=nnx.initializers.constant(bias if bias is not None else 0.0),
                      dtype=DTYPES[cfg.get("dtype")], param_dtype=DTYPES[cfg.get("param_dtype")] or jnp.float32,
                      rngs=rngs)


def _finish(softmax_output, logits):
    if softmax_output:
        return jax.nn.softmax(logits.astype(jnp.float32))
    return logits


class MLP(nnx.Module):
    def __init__(self, cfg, in_dim, out_dim, rngs):
        widths = list(cfg.get("widths", [64, 64]))
        dims = [in_dim] + widths
        self.softmax_output = cfg.get("output") == "softmax"
        self.batch_standardize = bool(cfg.get("batch_standardize"))
        self.cut = cfg.get("stop_gradient_after")
        self.act = ACTIVATIONS[cfg.get("activation", "relu")]
        pdt = DTYPES[cfg.get("param_dtype")] or jnp.float32
        self.layers = nnx.List([_linear(cfg, a, b, rngs, bias=cfg.get("bias_init")) for a, b in zip(dims[:-1], dims[1:])])
        self.norms = nnx.List([nnx.BatchNorm(w, momentum=0.9, param_dtype=pdt, rngs=rngs) for w in widths]) \
            if cfg.get("batchnorm") else None
        self.lns = nnx.List([nnx.LayerNorm(w, param_dtype=pdt, rngs=rngs) for w in widths]) if cfg.get("layernorm") else None
        self.drop = nnx.Dropout(cfg["dropout"], rngs=rngs) if cfg.get("dropout") else None
        self.head = _linear(cfg, dims[-1], out_dim, rngs, scale=cfg.get("output_scale", 1.0), bias=cfg.get("output_bias"))
        if cfg.get("unused_layer"):
            # Defined, initialised, handed to the optimizer, never called (a leftover of a refactor).
            self.skip_proj = _linear(cfg, in_dim, widths[-1], rngs)

    def __call__(self, x):
        if self.batch_standardize:
            x = (x - x.mean(0)) / x.std(0)  # no epsilon: a feature constant in the batch divides by zero
        h = x.reshape(x.shape[0], -1)
        cut = self.cut
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if self.norms is not None:
                h = self.norms[i](h)
            if self.lns is not None:
                h = self.lns[i](h)
            h = self.act(h)
            if self.drop is not None:
                h = self.drop(h)
            if cut is not None and i == cut:
                h = jax.lax.stop_gradient(h)  # e.g. meant to freeze a pretrained encoder, placed one layer too late
        return _finish(self.softmax_output, self.head(h))


class CNN(nnx.Module):
    def __init__(self, cfg, in_shape, out_dim, rngs):
        h, w, c = in_shape
        chans = list(cfg.get("channels", [8, 16]))
        self.softmax_output = cfg.get("output") == "softmax"
        self.cut = cfg.get("stop_gradient_after")
        self.act = ACTIVATIONS[cfg.get("activation", "relu")]
        dt, pdt = DTYPES[cfg.get("dtype")], DTYPES[cfg.get("param_dtype")] or jnp.float32
        dims = [c] + chans
        self.convs = nnx.List([
            nnx.Conv(a, b, kernel_size=(3, 3), kernel_init=_kernel_init(cfg),
                     bias_init=nnx.initializers.constant(cfg.get("bias_init") or 0.0), dtype=dt, param_dtype=pdt,
                     rngs=rngs)
            for a, b in zip(dims[:-1], dims[1:])])
        self.norms = nnx.List([nnx.BatchNorm(b, momentum=0.9, param_dtype=pdt, rngs=rngs) for b in chans]) \
            if cfg.get("batchnorm") else None
        flat = (h // 2 ** len(chans)) * (w // 2 ** len(chans)) * chans[-1]
        self.dense = _linear(cfg, flat, cfg.get("hidden", 32), rngs, bias=cfg.get("bias_init"))
        self.drop = nnx.Dropout(cfg["dropout"], rngs=rngs) if cfg.get("dropout") else None
        self.head = _linear(cfg, cfg.get("hidden", 32), out_dim, rngs, scale=cfg.get("output_scale", 1.0),
                            bias=cfg.get("output_bias"))
        if cfg.get("unused_layer"):
            self.aux_head = _linear(cfg, flat, out_dim, rngs)

    def __call__(self, x):
        h = x
        cut = self.cut
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if self.norms is not None:
                h = self.norms[i](h)
            h = self.act(h)
            h = nnx.max_pool(h, (2, 2), strides=(2, 2))
            if cut is not None and i == cut:
                h = jax.lax.stop_gradient(h)
        h = self.act(self.dense(h.reshape(h.shape[0], -1)))
        if self.drop is not None:
            h = self.drop(h)
        return _finish(self.softmax_output, self.head(h))


class RNN(nnx.Module):
    """An Elman network: h_t = act(W_x x_t + W_h h_{t-1} + b); the last state is classified."""

    def __init__(self, cfg, in_shape, out_dim, rngs):
        t, f = in_shape
        hdim = cfg.get("hidden", 32)
        self.softmax_output = cfg.get("output") == "softmax"
        self.act = ACTIVATIONS[cfg.get("activation", "tanh")]
        self.inp = _linear(cfg, f, hdim, rngs)
        scale = cfg.get("recurrent_scale", 1.0)
        orth = nnx.initializers.orthogonal(scale=scale)
        self.rec = nnx.Linear(hdim, hdim, use_bias=False, kernel_init=orth, dtype=DTYPES[cfg.get("dtype")], rngs=rngs)
        self.head = _linear(cfg, hdim, out_dim, rngs, scale=cfg.get("output_scale", 1.0))

    def __call__(self, x):
        xs = self.inp(x.reshape(-1, x.shape[-1])).reshape(x.shape[0], x.shape[1], -1)
        h = jnp.zeros((x.shape[0], xs.shape[-1]), xs.dtype)
        for t in range(x.shape[1]):  # unrolled: sequences here are short
            h = self.act(xs[:, t] + self.rec(h))
        return _finish(self.softmax_output, self.head(h))


class Attention(nnx.Module):
    """Embedding, one single-head self-attention block with a residual, mean pool, linear head."""

    def __init__(self, cfg, in_shape, out_dim, rngs):
        t, f = in_shape
        d = cfg.get("dim", 32)
        self.d = d
        self.softmax_output = cfg.get("output") == "softmax"
        self.attn_scale = cfg.get("attn_scale", True)
        self.embed = _linear(cfg, f, d, rngs)
        self.q, self.k, self.v = (_linear(cfg, d, d, rngs) for _ in range(3))
        self.ln = nnx.LayerNorm(d, rngs=rngs) if cfg.get("layernorm", True) else None
        self.mlp = _linear(cfg, d, d, rngs)
        self.head = _linear(cfg, d, out_dim, rngs, scale=cfg.get("output_scale", 1.0))

    def __call__(self, x):
        h = self.embed(x)
        scores = jnp.einsum("btd,bsd->bts", self.q(h), self.k(h))
        if self.attn_scale:
            scores = scores / jnp.sqrt(jnp.asarray(self.d, scores.dtype))
        h = h + jnp.einsum("bts,bsd->btd", jax.nn.softmax(scores, axis=-1), self.v(h))
        if self.ln is not None:
            h = self.ln(h)
        h = h + nnx.relu(self.mlp(h))
        return _finish(self.softmax_output, self.head(h.mean(1)))


def build(cfg: dict, in_shape: tuple, out_dim: int, rngs: nnx.Rngs) -> nnx.Module:
    """The model of a scenario's ``model`` section for inputs of ``in_shape`` (no batch axis)."""
    kind = cfg.get("kind", "mlp")
    if kind == "mlp":
        in_dim = 1
        for s in in_shape:
            in_dim *= s
        return MLP(cfg, in_dim, out_dim, rngs)
    if kind == "cnn":
        return CNN(cfg, in_shape, out_dim, rngs)
    if kind == "rnn":
        return RNN(cfg, in_shape, out_dim, rngs)
    if kind == "attention":
        return Attention(cfg, in_shape, out_dim, rngs)
    raise ValueError(f"unknown model kind {kind!r}")
