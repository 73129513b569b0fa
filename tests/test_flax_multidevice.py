"""Data-parallel training over 4 simulated CPU devices records global statistics once.

The simulated devices need ``XLA_FLAGS`` before JAX starts, so the run happens in a subprocess;
it trains the same model twice, sharded over 4 devices and on one device, and writes both traces.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

from diag.trace import load_trace

CHILD = textwrap.dedent('''
    import sys
    import jax, jax.numpy as jnp, numpy as np, optax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    from flax import nnx
    from diag.adapters.flax import Recorder

    assert jax.device_count() == 4, jax.devices()

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(6, 16, rngs=rngs)
            self.head = nnx.Linear(16, 3, rngs=rngs)
        def __call__(self, x):
            return self.head(nnx.relu(self.l1(x)))

    def train(path, sharded):
        model = MLP(nnx.Rngs(0))
        rec = Recorder(path, model, task="classification", num_classes=3, every=1)
        optimizer = nnx.Optimizer(model, rec.wrap(optax.adam(1e-2)), wrt=nnx.Param)
        mesh = Mesh(np.array(jax.devices()), ("data",))
        if sharded:  # replicate the model and optimizer state, split the batch
            state = nnx.state((model, optimizer))
            nnx.update((model, optimizer), jax.device_put(state, NamedSharding(mesh, P())))

        @rec.jit
        def step(model, optimizer, x, y):
            loss, grads = rec.value_and_grad(
                lambda m: optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean())(model)
            optimizer.update(model, grads)
            return rec.stats(optimizer, loss, batch=x, labels=y)

        rng = np.random.default_rng(0)
        with rec:
            for i in range(4):
                x = jnp.asarray(rng.normal(size=(32, 6)), jnp.float32)
                y = jnp.asarray(rng.integers(0, 3, size=32))
                if sharded:
                    x = jax.device_put(x, NamedSharding(mesh, P("data")))
                    y = jax.device_put(y, NamedSharding(mesh, P("data")))
                rec.record(i, step(model, optimizer, x, y))

    train(sys.argv[1], sharded=True)
    train(sys.argv[2], sharded=False)
''')


def test_data_parallel_run_records_the_same_global_statistics_once(tmp_path):
    script = tmp_path / "dp.py"
    script.write_text(CHILD)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    sharded, single = tmp_path / "dp.jsonl", tmp_path / "single.jsonl"
    proc = subprocess.run([sys.executable, str(script), str(sharded), str(single)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dp, one = load_trace(sharded), load_trace(single)
    assert len(dp.headers) == 1 and dp.header.device_count == 4
    assert list(dp.series("loss").steps) == [0, 1, 2, 3]  # one record per step, not one per device
    np.testing.assert_allclose(dp.series("loss").values, one.series("loss").values, rtol=1e-5)
    np.testing.assert_allclose(dp.layer_matrix("layers.grad_norm").values,
                               one.layer_matrix("layers.grad_norm").values, rtol=1e-4)
    np.testing.assert_allclose(dp.layer_matrix("activations.zero_fraction").values,
                               one.layer_matrix("activations.zero_fraction").values, rtol=1e-6)
    np.testing.assert_allclose(dp.series("input.mean").values, one.series("input.mean").values, rtol=1e-5)
