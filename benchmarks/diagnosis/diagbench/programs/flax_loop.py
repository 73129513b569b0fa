"""Flax NNX training loops written the way people write them (held-out sets 4 and 5).

Different in style from ``flax_train.py`` on purpose: ``nnx.RNN`` over ``nnx.GRUCell`` /
``nnx.LSTMCell`` / ``nnx.SimpleCell``, a small pre-norm transformer with
``nnx.MultiHeadAttention``, a CNN, an MLP regressor; optax AdamW, RMSprop, SGD with momentum,
Adagrad; ``optax.clip_by_global_norm`` in a chain; cosine, warmup-cosine and step schedules; odd
batch sizes. Planted faults are options of the program's ``fault`` section.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diagbench.data import Dataset
from diagbench.probe import write_data_facts

ACTS = {"relu": nnx.relu, "tanh": jnp.tanh, "sigmoid": nnx.sigmoid, "gelu": nnx.gelu}


class SeqNet(nnx.Module):
    def __init__(self, cell, n_in, hidden, n_out, rngs, activation=jnp.tanh):
        if cell == "rnn":
            core = nnx.SimpleCell(n_in, hidden, activation_fn=activation, rngs=rngs)
        else:
            core = {"gru": nnx.GRUCell, "lstm": nnx.LSTMCell}[cell](n_in, hidden, rngs=rngs)
        self.cell, self.kind, self.hidden = core, cell, hidden
        self.out = nnx.Linear(hidden, n_out, rngs=rngs)

    def __call__(self, x):
        # Unrolled over time (sequences are short); nnx.RNN's scan did not survive the recorder.
        h = jnp.zeros((x.shape[0], self.hidden), x.dtype)
        carry = (h, h) if self.kind == "lstm" else h
        for t in range(x.shape[1]):
            carry, y = self.cell(carry, x[:, t])
        return self.out(y)


class RMSNorm(nnx.Module):
    """Hand-written RMS normalisation (computed in the activations' dtype)."""

    def __init__(self, d, rngs):
        self.scale = nnx.Param(jnp.ones((d,)))

    def __call__(self, x):
        return x / jnp.sqrt(jnp.mean(x * x, axis=-1, keepdims=True) + 1e-6) * self.scale.astype(x.dtype)


class PreNormBlock(nnx.Module):
    def __init__(self, d, heads, rngs, dtype=None):
        self.ln1, self.ln2 = nnx.LayerNorm(d, rngs=rngs), nnx.LayerNorm(d, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=d, decode=False, dtype=dtype, rngs=rngs)
        self.ff1 = nnx.Linear(d, 2 * d, dtype=dtype, rngs=rngs)
        self.ff2 = nnx.Linear(2 * d, d, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.ff2(nnx.gelu(self.ff1(self.ln2(x))))


class TinyTransformer(nnx.Module):
    def __init__(self, n_in, d, n_out, blocks, heads, length, rngs):
        self.embed = nnx.Linear(n_in, d, rngs=rngs)
        self.pos = nnx.Param(jax.random.normal(rngs.params(), (1, length, d)) * 0.02)
        self.blocks = nnx.List([PreNormBlock(d, heads, rngs) for _ in range(blocks)])
        self.norm = nnx.LayerNorm(d, rngs=rngs)
        self.out = nnx.Linear(d, n_out, rngs=rngs)

    def __call__(self, x):
        h = self.embed(x) + self.pos[:, :x.shape[1]]
        for b in self.blocks:
            h = b(h)
        return self.out(self.norm(h).mean(1))


class ConvNet(nnx.Module):
    def __init__(self, channels, n_out, size, hidden, act, rngs):
        c1, c2 = channels
        self.c1 = nnx.Conv(1, c1, (3, 3), rngs=rngs)
        self.c2 = nnx.Conv(c1, c2, (3, 3), rngs=rngs)
        self.fc = nnx.Linear(c2 * (size // 4) ** 2, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, n_out, rngs=rngs)
        self.act = act

    def __call__(self, x):
        h = nnx.max_pool(self.act(self.c1(x)), (2, 2), strides=(2, 2))
        h = nnx.max_pool(self.act(self.c2(h)), (2, 2), strides=(2, 2))
        return self.out(self.act(self.fc(h.reshape(h.shape[0], -1))))


class MLP(nnx.Module):
    def __init__(self, n_in, widths, n_out, act, rngs, dtype=None, rmsnorm=False):
        dims = [n_in] + list(widths)
        self.hidden = nnx.List([nnx.Linear(a, b, dtype=dtype, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
        self.norms = nnx.List([RMSNorm(b, rngs) for b in widths]) if rmsnorm else None
        self.out = nnx.Linear(dims[-1], n_out, dtype=dtype, rngs=rngs)
        self.act = act

    def __call__(self, x):
        h = x.reshape(x.shape[0], -1)
        for i, layer in enumerate(self.hidden):
            h = layer(h)
            if self.norms is not None:
                h = self.norms[i](h)
            h = self.act(h)
        return self.out(h)


class WithOutput(nnx.Module):
    def __init__(self, body, kind):
        self.body, self.kind = body, kind

    def __call__(self, x):
        z = self.body(x)
        if self.kind == "softmax":
            return nnx.softmax(z, axis=-1)
        if self.kind == "sigmoid":
            return nnx.sigmoid(z)
        return nnx.relu(z)


def build(cfg, ds: Dataset, n_out, rngs):
    kind = cfg["kind"]
    act = ACTS[cfg.get("activation", "relu")]
    shape = ds.x_train.shape[1:]
    dtype = jnp.float16 if cfg.get("dtype") == "float16" else None
    if kind in ("gru", "lstm", "rnn"):
        return SeqNet(kind, shape[-1], cfg.get("hidden", 32), n_out, rngs, ACTS[cfg.get("activation", "tanh")])
    if kind == "transformer":
        return TinyTransformer(shape[-1], cfg.get("dim", 32), n_out, cfg.get("blocks", 2), cfg.get("heads", 2),
                               shape[0], rngs)
    if kind == "cnn":
        return ConvNet(cfg.get("channels", [8, 16]), n_out, shape[0], cfg.get("hidden", 32), act, rngs)
    return MLP(int(np.prod(shape)), cfg.get("widths", [64, 64]), n_out, act, rngs, dtype=dtype,
               rmsnorm=cfg.get("rmsnorm", False))


def schedule(train, steps):
    lr = float(train.get("lr", 1e-3))
    kind = train.get("schedule")
    if kind == "cosine":
        return optax.cosine_decay_schedule(lr, steps)
    if kind == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, int(train.get("warmup", steps // 10)), steps)
    if kind == "step":
        return optax.exponential_decay(lr, transition_steps=max(1, steps // 3), decay_rate=0.3, staircase=True)
    return lr


def optimizer(train, steps):
    sched = schedule(train, steps)
    name = train.get("optimizer", "adamw")
    if name == "adamw":
        tx = optax.adamw(sched, weight_decay=float(train.get("weight_decay", 1e-4)))
    elif name == "adam":
        tx = optax.adam(sched)
    elif name == "rmsprop":
        tx = optax.rmsprop(sched)
    elif name == "adagrad":
        tx = optax.adagrad(sched)
    else:
        tx = optax.sgd(sched, momentum=float(train.get("momentum", 0.9)), nesterov=bool(train.get("nesterov")))
    if train.get("clip"):
        tx = optax.chain(optax.clip_by_global_norm(float(train["clip"])), tx)
    return tx, sched


def make_loss(name):
    if name == "cross_entropy":
        return lambda out, y: optax.softmax_cross_entropy_with_integer_labels(out.astype(jnp.float32), y).mean()
    if name == "mse_on_class_id":  # regress the class index with one output
        return lambda out, y: jnp.mean((out[:, 0].astype(jnp.float32) - y.astype(jnp.float32)) ** 2)
    if name == "l1":
        return lambda out, y: jnp.mean(jnp.abs(out[:, 0].astype(jnp.float32) - y))
    if name == "huber":
        return lambda out, y: optax.huber_loss(out[:, 0].astype(jnp.float32), y).mean()
    if name == "bce":
        return lambda out, y: optax.sigmoid_binary_cross_entropy(out[:, 0].astype(jnp.float32),
                                                                 y.astype(jnp.float32)).mean()
    return lambda out, y: jnp.mean((out[:, 0].astype(jnp.float32) - y) ** 2)


LOSS_KIND = {"cross_entropy": "softmax_cross_entropy", "mse_on_class_id": "mse", "l1": "mae", "huber": "huber",
             "bce": "binary_cross_entropy_with_logits", "mse": "mse"}


def run(sc: dict, ds: Dataset, path: str) -> None:
    from diag.adapters.flax import Recorder, current_scale, dynamic_loss_scale

    seed, steps = int(sc["seed"]), int(sc["steps"])
    cfg, train, fault = sc["model"], sc["train"], sc.get("fault") or {}
    classification = ds.task == "classification"
    loss_name = fault.get("loss") or train.get("loss") or ("cross_entropy" if classification else "mse")
    n_out = ds.num_classes if classification and loss_name == "cross_entropy" else 1
    if fault.get("output_units"):
        n_out = int(fault["output_units"])
    model = build(cfg, ds, n_out, nnx.Rngs(seed))
    if fault.get("constant_init") is not None:
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        params = jax.tree.map(lambda p: jnp.full_like(p, float(fault["constant_init"])), params)
        model = nnx.merge(graphdef, params, rest)
    if fault.get("init_gain"):
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        params = jax.tree.map(lambda p: p * float(fault["init_gain"]) if p.ndim >= 2 else p, params)
        model = nnx.merge(graphdef, params, rest)
    if fault.get("recurrent_gain"):
        k = model.cell.dense_h.kernel
        k.value = nnx.initializers.orthogonal(scale=float(fault["recurrent_gain"]))(
            jax.random.key(seed), k.value.shape)
    if fault.get("output"):
        model = WithOutput(model, fault["output"])
    batch = int(train.get("batch", 32))
    scaled = bool(train.get("loss_scale"))
    rec = Recorder(path, model, task=ds.task, num_classes=ds.num_classes if classification else None,
                   loss_kind=LOSS_KIND[loss_name], seed=seed, every=int(sc.get("every", 10)), batch_size=batch,
                   steps_planned=steps, model_name=cfg["kind"], handle_signals=False,
                   loss_scaling="dynamic" if scaled else None,
                   run_id=sc["id"].replace("/", "."), tags={"scenario": sc["id"]})
    tx, sched = optimizer(train, steps)
    if scaled:
        tx = dynamic_loss_scale(tx, init_scale=2.0 ** 15)
    opt = nnx.Optimizer(model, rec.wrap(tx, learning_rate=sched), wrt=nnx.Param)
    loss_fn = make_loss(loss_name)

    @rec.jit
    def train_step(model, opt, x, y):
        def objective(m):
            loss = loss_fn(m(x), y)
            return (loss * current_scale(opt), loss) if scaled else (loss, loss)

        (_, loss), grads = rec.value_and_grad(objective, has_aux=True)(model)
        opt.update(model, grads)
        return rec.stats(opt, loss, batch=x, labels=y if classification else None)

    @nnx.jit
    def eval_step(model, x, y):
        out = model(x)
        acc = jnp.mean(jnp.argmax(out, -1) == y) if classification and n_out > 1 else jnp.zeros(())
        return loss_fn(out, y), acc

    x_tr, y_tr, x_va, y_va = ds.x_train, ds.y_train, ds.x_val, ds.y_val
    crash = fault.get("crash")
    if crash == "shape":  # the first layer was sized for the old feature set
        x_tr = np.concatenate([x_tr, x_tr[..., :3]], axis=-1) if x_tr.ndim == 2 else x_tr[..., :-1]
    if crash == "labels_float":  # class ids read back from a CSV as floats
        y_tr = y_tr.astype(np.float32)
    rng = np.random.default_rng(seed)
    sub = rng.choice(len(x_tr), min(384, len(x_tr)), replace=False)
    eval_every = int(sc.get("eval_every", 25))
    order, pos, epoch = rng.permutation(len(x_tr)), 0, 0
    model.train()
    try:
        with rec:
            for step in range(steps):
                if pos + batch > len(order):
                    order, pos, epoch = rng.permutation(len(x_tr)), 0, epoch + 1
                idx = order[pos:pos + batch]
                pos += batch
                rec.record(step, train_step(model, opt, jnp.asarray(x_tr[idx]), jnp.asarray(y_tr[idx])), epoch=epoch)
                if (step + 1) % eval_every == 0 or step == steps - 1:
                    model.eval()
                    for split, xs, ys in (("val", x_va, y_va), ("train_eval", x_tr[sub], y_tr[sub])):
                        lv, acc = eval_step(model, jnp.asarray(xs), jnp.asarray(ys))
                        rec.eval(step, split, loss=float(lv),
                                 metrics={"accuracy": float(acc)} if classification and n_out > 1 else None,
                                 model_mode="eval", examples=len(xs))
                    model.train()
            rec.flush()
            write_data_facts(rec.write, ds)
    except Exception as e:  # the recorder wrote the exception event; a planted crash is the scenario
        if not crash:
            raise RuntimeError(f"unplanted crash: {e}") from e
