"""Train one PyTorch scenario for real, recorded by diag's PyTorch bridge (``TorchRecorder``).

Models: ``mlp`` (optional BatchNorm1d with ``track_running_stats``, Dropout), ``cnn``, ``rnn``
(``nn.RNN``). Loop faults a PyTorch user writes: no ``optimizer.zero_grad()`` (gradients add up
over steps), an encoder output ``.detach()``-ed, evaluation in small label-sorted batches with a
BatchNorm that keeps no running statistics (``track_running_stats=False``), evaluation without
``model.eval()``, float16 autocast with a ``GradScaler``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from diagbench import losses
from diagbench.data import Batches, Dataset
from diagbench.probe import write_data_facts

ACT = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}


class MLP(nn.Module):
    def __init__(self, cfg, in_dim, out_dim):
        super().__init__()
        widths = list(cfg.get("widths", [64, 64]))
        layers: list[nn.Module] = []
        dims = [in_dim] + widths
        for a, b in zip(dims[:-1], dims[1:]):
            lin = nn.Linear(a, b)
            if cfg.get("bias_init") is not None:
                nn.init.constant_(lin.bias, cfg["bias_init"])
            if cfg.get("init_scale"):
                with torch.no_grad():
                    lin.weight.mul_(cfg["init_scale"])
            layers.append(lin)
            if cfg.get("batchnorm"):
                layers.append(nn.BatchNorm1d(b, track_running_stats=cfg.get("running_stats", True)))
            layers.append(ACT[cfg.get("activation", "relu")]())
            if cfg.get("dropout"):
                layers.append(nn.Dropout(cfg["dropout"]))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(dims[-1], out_dim)
        self.detach = cfg.get("detach_features", False)

    def forward(self, x):
        h = self.body(x.flatten(1))
        if self.detach:
            h = h.detach()  # copied from a feature-extraction snippet: the body never learns
        return self.head(h)


class CNN(nn.Module):
    def __init__(self, cfg, in_shape, out_dim):
        super().__init__()
        h, w, c = in_shape
        chans = list(cfg.get("channels", [8, 16]))
        layers: list[nn.Module] = []
        for a, b in zip([c] + chans[:-1], chans):
            layers.append(nn.Conv2d(a, b, 3, padding=1))
            if cfg.get("batchnorm"):
                layers.append(nn.BatchNorm2d(b, track_running_stats=cfg.get("running_stats", True)))
            layers += [ACT[cfg.get("activation", "relu")](), nn.MaxPool2d(2)]
        self.body = nn.Sequential(*layers)
        flat = (h // 2 ** len(chans)) * (w // 2 ** len(chans)) * chans[-1]
        self.fc = nn.Linear(flat, cfg.get("hidden", 32))
        self.act = ACT[cfg.get("activation", "relu")]()
        self.head = nn.Linear(cfg.get("hidden", 32), out_dim)

    def forward(self, x):
        h = self.body(x.permute(0, 3, 1, 2)).flatten(1)
        return self.head(self.act(self.fc(h)))


class RNN(nn.Module):
    def __init__(self, cfg, in_shape, out_dim):
        super().__init__()
        t, f = in_shape
        self.rnn = nn.RNN(f, cfg.get("hidden", 32), batch_first=True, nonlinearity=cfg.get("activation", "tanh"))
        self.head = nn.Linear(cfg.get("hidden", 32), out_dim)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def build_model(cfg, in_shape, out_dim) -> nn.Module:
    kind = cfg.get("kind", "mlp")
    if kind == "mlp":
        return MLP(cfg, int(np.prod(in_shape)), out_dim)
    if kind == "cnn":
        return CNN(cfg, in_shape, out_dim)
    if kind == "rnn":
        return RNN(cfg, in_shape, out_dim)
    raise ValueError(f"unknown torch model kind {kind!r}")


def torch_loss(name: str, reduction: str = "mean"):
    def ce(out, y):
        return nn.functional.cross_entropy(out.float(), y, reduction=reduction)

    def mse(out, y):
        return nn.functional.mse_loss(out[:, 0].float(), y.float(), reduction=reduction)

    def bce(out, y):
        return nn.functional.binary_cross_entropy_with_logits(out[:, 0].float(), y.float(), reduction=reduction)

    return {"ce": ce, "mse": mse, "mse_class_id": mse, "bce": bce}[name]


def train_torch(sc: dict, ds: Dataset, path: str) -> None:
    """Train scenario ``sc`` on ``ds`` with PyTorch and write its trace to ``path``."""
    from diag.adapters.torch import TorchRecorder

    torch.manual_seed(int(sc["seed"]))
    torch.set_num_threads(1)
    model_cfg, train, fault = sc["model"], sc["train"], sc.get("fault") or {}
    steps, seed = int(sc["steps"]), int(sc["seed"])
    classification = ds.task == "classification"
    loss_name = train.get("loss", "ce" if classification else "mse")
    model = build_model(model_cfg, ds.x_train.shape[1:], losses.output_dim(loss_name, ds.num_classes))
    lr = float(train.get("lr", 1e-3))
    name = train.get("optimizer", "adam")
    if name == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=float(train.get("momentum") or 0.0),
                              weight_decay=float(train.get("weight_decay") or 0.0))
    elif name == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=float(train.get("weight_decay") or 1e-2))
    else:
        opt = torch.optim.Adam(model.parameters(), lr=lr)
    amp = train.get("amp")  # "float16" / "bfloat16"
    scaler = torch.amp.GradScaler("cpu", init_scale=float(train.get("init_scale", 2.0 ** 16))) if amp == "float16" else None
    loss_fn = torch_loss(loss_name, train.get("reduction", "mean"))
    batch = int(train.get("batch", 64))
    rec = TorchRecorder(model, opt, path, scaler=scaler, costly_every=int(sc.get("every", 10)),
                        capture_crashes=False, run_id=sc["id"].replace("/", "."), task=ds.task,
                        num_classes=ds.num_classes if classification else None, loss_kind=losses.LOSS_KIND[loss_name],
                        batch_size=batch, steps_planned=steps, seed=seed, tags={"scenario": sc["id"]})
    batches = Batches(ds, batch, seed)
    eval_every = int(sc.get("eval_every", 25))
    sub = np.random.default_rng(seed).choice(len(ds.x_train), min(512, len(ds.x_train)), replace=False)
    x_val, y_val = torch.as_tensor(ds.x_val), torch.as_tensor(ds.y_val)
    y_val = y_val.long() if classification else y_val
    if fault.get("val_sorted"):  # the validation file is stored class by class and read in order
        order = torch.argsort(y_val, stable=True)
        x_val, y_val = x_val[order], y_val[order]
    x_sub, y_sub = torch.as_tensor(ds.x_train[sub]), torch.as_tensor(ds.y_train[sub])
    y_sub = y_sub.long() if classification else y_sub
    if fault.get("val_sorted"):
        order = torch.argsort(y_sub, stable=True)
        x_sub, y_sub = x_sub[order], y_sub[order]
    eval_bs = int(fault.get("eval_batch", 256))
    n_eval = int(sc.get("eval_examples", 512))
    mode = "train" if fault.get("eval_train_mode") else "eval"

    def chunks(x, y):
        return [(x[i:i + eval_bs], y[i:i + eval_bs]) for i in range(0, min(len(x), n_eval), eval_bs)]

    model.train()
    try:
        for step in range(steps):
            xb, yb = batches.next()
            x, y = torch.as_tensor(xb), torch.as_tensor(yb)
            if classification:
                y = y.long()
            if not fault.get("no_zero_grad"):
                opt.zero_grad(set_to_none=True)
            if amp:
                with torch.autocast("cpu", dtype=getattr(torch, amp)):
                    out = model(x)
                loss = loss_fn(out, y)
            else:
                loss = loss_fn(model(x), y)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            rec.record(loss, inputs=x, labels=y if classification else None, epoch=batches.epoch)
            if (step + 1) % eval_every == 0 or step == steps - 1:
                acc = classification and loss_name == "ce"
                rec.evaluate("val", chunks(x_val, y_val), loss_fn, mode=mode, accuracy=acc)
                rec.evaluate("train_eval", chunks(x_sub, y_sub), loss_fn, mode=mode, accuracy=acc)
        write_data_facts(rec.writer.write, ds)
    finally:
        rec.close()
