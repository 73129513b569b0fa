"""Layer order and the nonlinearity after each layer are read from one abstract forward pass."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from diag.adapters.flax.forward import trace_forward

ACTS = [
    (nnx.relu, "relu"), (jax.nn.sigmoid, "sigmoid"), (jnp.tanh, "tanh"), (nnx.gelu, "gelu"),
    (lambda z: jax.nn.gelu(z, approximate=False), "gelu"), (nnx.silu, "silu"),
    (nnx.leaky_relu, "leaky_relu"), (nnx.elu, "elu"), (lambda z: z, None),
]


@pytest.mark.parametrize("fn,name", ACTS, ids=[a[1] or "identity" for a in ACTS])
def test_the_nonlinearity_after_a_layer_is_recognised(fn, name):
    class M(nnx.Module):
        def __init__(self, rngs):
            self.zz_first = nnx.Linear(3, 4, rngs=rngs)  # alphabetically last, runs first
            self.aa_head = nnx.Linear(4, 2, rngs=rngs)

        def __call__(self, x):
            return self.aa_head(fn(self.zz_first(x)))

    info = trace_forward(lambda m, x: m(x).sum(), M(nnx.Rngs(0)), (jnp.ones((5, 3)),), {})
    assert info.order == ["zz_first", "aa_head", ""]
    assert info.activation.get("zz_first") == name and "aa_head" not in info.activation
    assert info.output == "aa_head"


def test_sequential_containers_and_norm_layers_keep_their_place():
    class Block(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
            self.norm = nnx.BatchNorm(4, rngs=rngs)

        def __call__(self, x):
            return nnx.relu(self.norm(self.conv(x)))

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.block = Block(rngs)
            self.mlp = nnx.Sequential(nnx.Linear(4, 8, rngs=rngs), jnp.tanh, nnx.Linear(8, 2, rngs=rngs))

        def __call__(self, x):
            return self.mlp(self.block(x).mean(axis=(1, 2)))

    model = Net(nnx.Rngs(0))
    info = trace_forward(lambda m, x: m(x).sum(), model, (jnp.ones((2, 6, 6, 3)),), {})
    layers = [p for p in info.order if p in {"block/conv", "block/norm", "mlp/layers/0", "mlp/layers/2"}]
    assert layers == ["block/conv", "block/norm", "mlp/layers/0", "mlp/layers/2"]
    assert info.activation == {"block/norm": "relu", "mlp/layers/0": "tanh"}
    assert info.output == "mlp/layers/2"
    # The model's own state is untouched by the abstract pass (batch statistics still zero).
    assert float(jnp.abs(model.block.norm.mean[...]).sum()) == 0.0
