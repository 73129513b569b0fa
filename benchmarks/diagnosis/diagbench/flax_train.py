"""Train one Flax NNX scenario for real, recorded by diag's Flax adapter, the way a user would.

The loop is an ordinary NNX + optax loop with the recorder's four additions; the scenario's
``train`` and ``fault`` sections choose the loss, optimizer, schedule, precision and evaluation
(the faults a user's own loop would contain: a loss fed probabilities, a naive log-softmax, a
learning rate of 0, an evaluation that forgot ``model.eval()``...).

After training, like a careful user: the data probe's facts about the splits are written into the
trace, and a model with a hand-written VJP gets a gradient check whose records go into the trace.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from diagbench import flax_models, losses
from diagbench.data import Batches, Dataset
from diagbench.probe import write_data_facts


def _schedule(train: dict, steps: int):
    lr = float(train.get("lr", 1e-3))
    kind = train.get("schedule", "constant")
    if kind == "constant":
        return lr
    if kind == "warmup_cosine":
        warm = int(train.get("warmup", steps // 10))
        return optax.warmup_cosine_decay_schedule(0.0, lr, warm, steps, end_value=lr * 0.01)
    if kind == "step":
        return optax.piecewise_constant_schedule(lr, {int(steps * 0.5): 0.1, int(steps * 0.75): 0.1})
    if kind == "linear_warmup_broken":
        # A hand-written warmup: lr * step / warmup_steps, with warmup_steps read as 0 from a config.
        warm = float(train.get("warmup", 0))
        return lambda count: lr * count / warm
    raise ValueError(f"unknown schedule {kind!r}")


def make_optimizer(train: dict, fault: dict, steps: int, model_params=None):
    """The optax transformation of the scenario (with its planted optimizer faults)."""
    sched = _schedule(train, steps)
    name = train.get("optimizer", "adam")
    wd = train.get("weight_decay")
    if name == "sgd":
        tx = optax.sgd(sched, momentum=train.get("momentum"))
    elif name == "adam":
        tx = optax.adam(sched)
    elif name == "adamw":
        tx = optax.adamw(sched, weight_decay=wd or 1e-4)
    else:
        raise ValueError(f"unknown optimizer {name!r}")
    chain = []
    if train.get("clip"):
        chain.append(optax.clip_by_global_norm(float(train["clip"])))
    if wd and name != "adamw":
        chain.append(optax.add_decayed_weights(wd))
    chain.append(tx)
    tx = optax.chain(*chain) if len(chain) > 1 else tx
    if fault.get("freeze_all"):
        # Meant to freeze only the first layer; the label function matches every parameter path.
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()},
                                   lambda params: jax.tree.map(lambda _: "frozen", params))
    if fault.get("accumulate_every"):
        # Gradient accumulation over k micro-batches; k larger than the run: never applies an update.
        tx = optax.MultiSteps(tx, every_k_schedule=int(fault["accumulate_every"]))
    if train.get("loss_scale"):
        from diag.adapters.flax import dynamic_loss_scale

        ls = train["loss_scale"]
        tx = dynamic_loss_scale(tx, init_scale=float(ls.get("init", 2.0 ** 15)), period=int(ls.get("period", 2000)),
                                min_scale=float(ls.get("min", 1.0)))
    return tx, (sched if not callable(sched) else sched)


def train_flax(sc: dict, ds: Dataset, path: str) -> None:
    """Train scenario ``sc`` on ``ds`` and write its trace to ``path``."""
    from diag.adapters.flax import Recorder, current_scale
    from diag.trace.records import NoteEvent

    model_cfg, train, fault = sc["model"], sc["train"], sc.get("fault") or {}
    seed, steps = int(sc["seed"]), int(sc["steps"])
    classification = ds.task == "classification"
    loss_name = train.get("loss", "ce" if classification else "mse")
    out_dim = losses.output_dim(loss_name, ds.num_classes)
    model = flax_models.build(model_cfg, ds.x_train.shape[1:], out_dim, nnx.Rngs(seed))
    if fault.get("corrupt_param"):
        _corrupt(model, fault["corrupt_param"])
    rec = Recorder(path, model, task=ds.task, num_classes=ds.num_classes if classification else None,
                   loss_kind=losses.LOSS_KIND[loss_name], seed=seed, every=int(sc.get("every", 10)),
                   batch_size=int(train.get("batch", 64)), steps_planned=steps, model_name=model_cfg.get("kind"),
                   loss_scaling="dynamic" if train.get("loss_scale") else None, handle_signals=False,
                   run_id=sc["id"].replace("/", "."), tags={"scenario": sc["id"]})
    tx, _ = make_optimizer(train, fault, steps)
    scaled = bool(train.get("loss_scale"))
    optimizer = nnx.Optimizer(model, rec.wrap(tx, learning_rate=_recorded_lr(train, steps)), wrt=nnx.Param)
    loss_fn = losses.flax_loss(loss_name, reduction=train.get("reduction", "mean"))

    @rec.jit
    def train_step(model, optimizer, x, y):
        def objective(m):
            loss = loss_fn(m(x), y)
            return (loss * current_scale(optimizer), loss) if scaled else (loss, loss)

        (_, loss), grads = rec.value_and_grad(objective, has_aux=True)(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss, batch=x, labels=y if classification else None)

    @nnx.jit
    def eval_batch(model, x, y):
        out = model(x)
        loss = loss_fn(out, y)
        if not classification:
            return loss, jnp.zeros(())
        return loss, losses.accuracy(loss_name, out, y)

    def evaluate(step, split, x, y):
        bs = int(fault.get("eval_batch", 256))
        n = min(len(x), int(sc.get("eval_examples", 512)))
        if fault.get("eval_train_mode"):
            model.train()  # the fault: evaluation forgot model.eval()
        else:
            model.eval()
        tot_l = tot_a = 0.0
        for i in range(0, n, bs):
            xb, yb = x[i:i + bs], y[i:i + bs]
            l_, a_ = eval_batch(model, xb, yb)
            tot_l += float(l_) * len(xb)
            tot_a += float(a_) * len(xb)
        mode = "train" if fault.get("eval_train_mode") else "eval"
        model.train()
        rec.eval(step, split, loss=tot_l / n, metrics={"accuracy": tot_a / n} if classification else None,
                 model_mode=mode, examples=n)

    batches = Batches(ds, int(train.get("batch", 64)), seed)
    eval_every = int(sc.get("eval_every", 25))
    sub = np.random.default_rng(seed).choice(len(ds.x_train), min(512, len(ds.x_train)), replace=False)
    model.train()
    with rec:
        for step in range(steps):
            x, y = batches.next()
            rec.record(step, train_step(model, optimizer, x, y), epoch=batches.epoch)
            if (step + 1) % eval_every == 0 or step == steps - 1:
                evaluate(step, "val", ds.x_val, ds.y_val)
                evaluate(step, "train_eval", ds.x_train[sub], ds.y_train[sub])
        rec.flush()
        write_data_facts(rec.write, ds)
        if model_cfg.get("activation", "").endswith("_vjp") or model_cfg.get("activation", "").endswith("_vjp_bug"):
            _gradient_check(rec, model, loss_fn, ds, steps)
        for note in ds.notes:
            rec.write(NoteEvent(level="info", message=note))


def _corrupt(model, spec: dict) -> None:
    """A checkpoint saved after an overflow: one entry of one kernel holds NaN/Inf when loaded."""
    layer = model
    for part in spec["layer"].split("/"):
        layer = layer[int(part)] if part.isdigit() else getattr(layer, part)
    k = layer.kernel.value
    idx = (0,) * k.ndim
    layer.kernel.value = k.at[idx].set(float(spec.get("value", "nan")))


def _recorded_lr(train, steps):
    sched = _schedule(train, steps)
    return sched


def _gradient_check(rec, model, loss_fn, ds, step) -> None:
    """What a user of a custom VJP does: check the model's gradient in float64, record the result."""
    from diag.gradcheck import check_model, to_check_records

    x, y = jnp.asarray(ds.x_train[:8]), jnp.asarray(ds.y_train[:8])
    model.eval()
    report = check_model(model, lambda m, x, y: loss_fn(m(x), y), x, y, directions=4, localize=False)
    for record in to_check_records(report, step=step):
        rec.write(record)
