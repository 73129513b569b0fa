"""PyTorch training loops written the way people write them (held-out sets 4 and 5).

Different in style from ``torch_train.py`` on purpose: ``nn.GRU``/``nn.LSTM``/``nn.RNN`` sequence
models, a small pre-norm transformer encoder, a CNN with ``nn.Sequential``, an MLP regressor;
AdamW, RMSprop, SGD with momentum, Adagrad; ``clip_grad_norm_``; ``lr_scheduler`` cosine, warmup
and step schedules; odd batch sizes. Planted faults are options of the program (see ``FAULTS``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from diagbench.data import Dataset
from diagbench.probe import write_data_facts

# Faults this program plants when its ``fault`` section names them.
FAULTS = ("constant_init", "no_zero_grad", "amp_fp16", "output", "crash", "recurrent_gain", "loss",
          "init_gain", "bias_init")


class SeqNet(nn.Module):
    def __init__(self, cell, n_in, hidden, n_out, layers=1, nonlinearity="tanh"):
        super().__init__()
        if cell == "rnn":
            self.rnn = nn.RNN(n_in, hidden, num_layers=layers, batch_first=True, nonlinearity=nonlinearity)
        else:
            self.rnn = {"gru": nn.GRU, "lstm": nn.LSTM}[cell](n_in, hidden, num_layers=layers, batch_first=True)
        self.out = nn.Linear(hidden, n_out)

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.out(h[:, -1])


class PreNormBlock(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))

    def forward(self, x):
        a = self.ln1(x)
        x = x + self.attn(a, a, a, need_weights=False)[0]
        return x + self.ff(self.ln2(x))


class TinyTransformer(nn.Module):
    def __init__(self, n_in, d, n_out, blocks=2, heads=2, length=32):
        super().__init__()
        self.embed = nn.Linear(n_in, d)
        self.pos = nn.Parameter(torch.randn(1, length, d) * 0.02)
        self.blocks = nn.Sequential(*[PreNormBlock(d, heads) for _ in range(blocks)])
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, n_out)

    def forward(self, x):
        h = self.embed(x) + self.pos[:, :x.shape[1]]
        return self.out(self.norm(self.blocks(h)).mean(1))


class ChannelsFirst(nn.Module):
    """The images are stored height x width x channels (as numpy loaders give them)."""

    def forward(self, x):
        return x.permute(0, 3, 1, 2)


def conv_net(channels, n_out, size, hidden=32, act=nn.ReLU):
    c1, c2 = channels
    return nn.Sequential(
        ChannelsFirst(), nn.Conv2d(1, c1, 3, padding=1), act(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), act(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(c2 * (size // 4) ** 2, hidden), act(), nn.Linear(hidden, n_out))


class RMSNorm(nn.Module):
    """Hand-written RMS normalisation (computed in the activations' dtype)."""

    def __init__(self, d):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(d))

    def forward(self, x):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6) * self.scale


def mlp(n_in, widths, n_out, act=nn.ReLU, rmsnorm=False):
    layers, prev = [], n_in
    for w in widths:
        layers += [nn.Linear(prev, w)] + ([RMSNorm(w)] if rmsnorm else []) + [act()]
        prev = w
    layers.append(nn.Linear(prev, n_out))
    return nn.Sequential(*layers)


ACTS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


class WithOutput(nn.Module):
    """A model whose last layer is followed by an output activation (softmax / sigmoid / relu)."""

    def __init__(self, body, kind):
        super().__init__()
        self.body, self.kind = body, kind

    def forward(self, x):
        z = self.body(x)
        if self.kind == "softmax":
            return torch.softmax(z, dim=-1)
        if self.kind == "sigmoid":
            return torch.sigmoid(z)
        return torch.relu(z)


def build(model_cfg, ds: Dataset, n_out):
    kind = model_cfg["kind"]
    act = ACTS[model_cfg.get("activation", "relu")]
    shape = ds.x_train.shape[1:]
    if kind in ("gru", "lstm", "rnn"):
        net = SeqNet(kind, shape[-1], model_cfg.get("hidden", 32), n_out, model_cfg.get("layers", 1),
                     model_cfg.get("activation", "tanh"))
    elif kind == "transformer":
        net = TinyTransformer(shape[-1], model_cfg.get("dim", 32), n_out, model_cfg.get("blocks", 2),
                              model_cfg.get("heads", 2), shape[0])
    elif kind == "cnn":
        net = conv_net(model_cfg.get("channels", [8, 16]), n_out, shape[0], model_cfg.get("hidden", 32), act)
    else:
        net = mlp(int(np.prod(shape)), model_cfg.get("widths", [64, 64]), n_out, act, model_cfg.get("rmsnorm", False))
        if len(shape) > 1:  # images or sequences into an MLP: flatten first
            net = nn.Sequential(nn.Flatten(), net)
    return net


def make_optimizer(params, train):
    name, lr = train.get("optimizer", "adamw"), float(train.get("lr", 1e-3))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=float(train.get("weight_decay", 0.01)))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=float(train.get("momentum", 0.9)),
                           nesterov=bool(train.get("nesterov", False)))


def make_schedule(opt, train, steps):
    kind = train.get("schedule")
    if kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    if kind == "warmup_cosine":
        warm = int(train.get("warmup", steps // 10))
        return torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (steps - warm))))
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, steps // 3), gamma=0.3)
    return None


def run(sc: dict, ds: Dataset, path: str) -> None:
    from diag.adapters.torch import TorchRecorder

    seed, steps = int(sc["seed"]), int(sc["steps"])
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    model_cfg, train, fault = sc["model"], sc["train"], sc.get("fault") or {}
    classification = ds.task == "classification"
    loss_name = fault.get("loss") or train.get("loss") or ("cross_entropy" if classification else "mse")
    n_out = ds.num_classes if classification and loss_name == "cross_entropy" else 1
    if fault.get("output_units"):
        n_out = int(fault["output_units"])
    model = build(model_cfg, ds, n_out)
    if fault.get("constant_init") is not None:  # "deterministic" init copied from a blog post
        for p in model.parameters():
            nn.init.constant_(p, float(fault["constant_init"]))
    if fault.get("recurrent_gain"):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "weight_hh" in name:
                    nn.init.orthogonal_(p, gain=float(fault["recurrent_gain"]))
    if fault.get("init_gain"):
        with torch.no_grad():
            for name, p in model.named_parameters():
                if p.dim() >= 2:
                    p.mul_(float(fault["init_gain"]))
    if fault.get("output"):
        model = WithOutput(model, fault["output"])
    opt = make_optimizer(model.parameters(), train)
    sched = make_schedule(opt, train, steps)
    clip = train.get("clip")
    batch = int(train.get("batch", 32))
    amp = fault.get("amp_fp16") or train.get("amp_fp16")
    scaler = torch.amp.GradScaler("cpu") if amp else None
    if loss_name == "cross_entropy":
        crit = nn.CrossEntropyLoss()
    elif loss_name == "bce":
        crit = nn.BCEWithLogitsLoss()
    elif loss_name == "l1":
        crit = nn.L1Loss()
    elif loss_name == "huber":
        crit = nn.HuberLoss(delta=float(train.get("huber_delta", 1.0)))
    else:
        crit = nn.MSELoss()
    loss_kind = {"cross_entropy": "softmax_cross_entropy", "bce": "binary_cross_entropy_with_logits",
                 "l1": "mae", "huber": "huber", "mse": "mse"}[loss_name]

    def loss_of(out, y):
        out = out.float()
        if loss_name == "cross_entropy":
            return crit(out, y)
        return crit(out[:, 0], y.float())

    rec = TorchRecorder(model, opt, path, scaler=scaler, costly_every=int(sc.get("every", 10)),
                        capture_crashes=True, run_id=sc["id"].replace("/", "."), task=ds.task,
                        num_classes=ds.num_classes if classification else None, loss_kind=loss_kind,
                        batch_size=batch, steps_planned=steps, seed=seed, tags={"scenario": sc["id"]})
    x_tr = torch.tensor(ds.x_train)
    y_tr = torch.tensor(ds.y_train).long() if classification else torch.tensor(ds.y_train)
    x_va = torch.tensor(ds.x_val)
    y_va = torch.tensor(ds.y_val).long() if classification else torch.tensor(ds.y_val)
    crash = fault.get("crash")
    if crash == "dtype":  # the arrays came from pandas as float64; the model is float32
        x_tr = torch.tensor(ds.x_train.astype(np.float64))
    if crash == "labels_float":  # class ids stored as floats in the CSV
        y_tr = y_tr.float()
    if crash == "shape":  # the first layer was sized for the old feature set
        first = next(m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.GRU, nn.LSTM, nn.RNN)))
        if isinstance(first, nn.Linear):
            x_tr = torch.cat([x_tr, x_tr[:, :3]], dim=1)
        else:
            x_tr = x_tr[..., :-1]
    gen = torch.Generator().manual_seed(seed)
    eval_every = int(sc.get("eval_every", 25))
    sub = torch.randperm(len(x_tr), generator=gen)[:384]

    def evaluate(xs, ys):
        model.eval()
        with torch.no_grad():
            out = model(xs)
            loss = loss_of(out, ys).item()
            metrics = {}
            if classification and n_out > 1:
                metrics["accuracy"] = (out.argmax(-1) == ys).float().mean().item()
        model.train()
        return loss, metrics

    model.train()
    order, pos, epoch = torch.randperm(len(x_tr), generator=gen), 0, 0
    try:
        with rec:  # an exception inside becomes the trace's exception event, then propagates
            for step in range(steps):
                if pos + batch > len(order):
                    order, pos, epoch = torch.randperm(len(x_tr), generator=gen), 0, epoch + 1
                idx = order[pos:pos + batch]
                pos += batch
                xb, yb = x_tr[idx], y_tr[idx]
                if not fault.get("no_zero_grad"):
                    opt.zero_grad()
                if amp:
                    with torch.autocast("cpu", dtype=torch.float16):
                        out = model(xb)
                    loss = loss_of(out, yb)
                    scaler.scale(loss).backward()
                    scaler.unscale_(opt)
                    if clip:
                        nn.utils.clip_grad_norm_(model.parameters(), float(clip))
                    scaler.step(opt)
                    scaler.update()
                else:
                    loss = loss_of(model(xb), yb)
                    loss.backward()
                    if clip:
                        nn.utils.clip_grad_norm_(model.parameters(), float(clip))
                    opt.step()
                if sched is not None:
                    sched.step()
                rec.record(loss, inputs=xb, labels=yb if classification else None, epoch=epoch)
                if (step + 1) % eval_every == 0 or step == steps - 1:
                    for split, xs, ys in (("val", x_va, y_va), ("train_eval", x_tr[sub], y_tr[sub])):
                        lv, m = evaluate(xs, ys)
                        rec.log_eval(split, lv, m, examples=len(xs), step=step, model_mode="eval")
            write_data_facts(rec.writer.write, ds)
    except (RuntimeError, TypeError, ValueError) as e:
        if not fault.get("crash"):
            raise RuntimeError(f"unplanted crash: {e}") from e
