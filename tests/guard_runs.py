"""Small real training runs, healthy or doomed, for the guard's and the callbacks' tests and benchmark.

Every framework fits the same problem: 4 classes from a fixed random linear map of 20 Gaussian
features (nothing downloaded). Faults:

* ``healthy``     Adam (or AdamW) at a sensible learning rate;
* ``lr_too_high`` plain SGD at a learning rate far too high (``HIGH_LR``);
* ``nan_data``    healthy, but every input batch from step ``NAN_ONSET`` holds NaN.
"""

from __future__ import annotations

import numpy as np

CLASSES = 4
FEATURES = 20
BATCH = 32
NAN_ONSET = 100
HIGH_LR = 50.0
FAULTS = ("healthy", "lr_too_high", "nan_data")


def assert_no_cause_and_twins_checked(trace) -> None:
    """A healthy run's diagnosis: no cause, and it was checked for what stops the doomed twins.

    "No cause" alone also holds when the rules that would have fired were skipped for missing
    inputs: the causes ``lr_too_high`` and ``nan_data`` runs are stopped for must have been run.
    """
    from diag.engine.api import diagnose

    diagnosis = diagnose(trace)
    assert diagnosis.causes == [], [c.id for c in diagnosis.causes]
    checked = set(diagnosis.checks_run)
    for twin in ({"lr_too_high", "exploding_gradients"}, {"nan_in_input_data", "nonfinite_values"}):
        assert checked & twin, f"none of {sorted(twin)} was checked; checked: {sorted(checked)}"


def make_data(n: int = 1024, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)``: float32 inputs, int64 labels of a learnable 4-class problem."""
    w = np.random.default_rng(1234).standard_normal((FEATURES, CLASSES))
    x = np.random.default_rng(seed).standard_normal((n, FEATURES)).astype(np.float32)
    return x, (x @ w).argmax(1).astype(np.int64)


def batch_indices(steps: int, n: int, seed: int = 1) -> np.ndarray:
    """``(steps, BATCH)`` example indices, one row per optimizer step."""
    return np.random.default_rng(seed).integers(0, n, size=(steps, BATCH))


def poison(x: np.ndarray, step: int, fault: str) -> np.ndarray:
    """The batch as the loader hands it over: NaN in one feature from ``NAN_ONSET`` for ``nan_data``."""
    if fault == "nan_data" and step >= NAN_ONSET:
        x = x.copy()
        x[:, 3] = np.nan
    return x


def learning_rate(fault: str) -> float:
    return HIGH_LR if fault == "lr_too_high" else 3e-3


# ---------------------------------------------------------------------------- plain PyTorch loop


def torch_mlp(seed: int = 0):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(FEATURES, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, CLASSES))


def torch_optimizer(model, fault: str):
    import torch

    if fault == "lr_too_high":
        return torch.optim.SGD(model.parameters(), lr=HIGH_LR)
    return torch.optim.Adam(model.parameters(), lr=learning_rate(fault))


def fit_torch(path, fault: str, steps: int = 200, *, guard=True, recorder: bool = True, seed: int = 0,
              on_step=None) -> int:
    """A plain PyTorch loop recorded with ``TorchRecorder(guard=...)``; returns the steps run.

    ``recorder=False`` runs the same loop without diag (the overhead baseline); ``seed`` draws
    the initialization and the batch order; ``on_step()`` is called after each step (timing). A
    guard stop surfaces as ``diag.TrainingDoomed`` from ``rec.record``, as in a user's loop.
    """
    import torch
    from torch.nn import functional as F

    from diag.adapters.torch import TorchRecorder

    x, y = make_data()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model = torch_mlp(seed)
    opt = torch_optimizer(model, fault)
    rows = batch_indices(steps, len(x), seed=seed + 1)
    rec = TorchRecorder(model, opt, path, task="classification", num_classes=CLASSES,
                        loss_kind="softmax_cross_entropy", batch_size=BATCH, capture_crashes=False,
                        guard=guard) if recorder else None
    ran = 0
    try:
        for step in range(steps):
            xb = torch.from_numpy(poison(x[rows[step]], step, fault))
            yb = yt[rows[step]]
            opt.zero_grad()
            loss = F.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            ran = step + 1
            if rec is not None:
                rec.record(loss, labels=yb)
            if on_step is not None:
                on_step()
    finally:
        if rec is not None:
            rec.close()
    del xt
    return ran


# ---------------------------------------------------------------------------- PyTorch Lightning


class _StepBatches:
    """A map-style dataset whose item ``i`` is the whole batch of optimizer step ``i`` (poisoned
    from ``NAN_ONSET`` for ``nan_data``): every framework sees the same batches in the same order."""

    def __init__(self, x, y, steps: int, fault: str):
        self.x, self.y, self.rows, self.fault = x, y, batch_indices(steps, len(x)), fault

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, step: int):
        import torch

        rows = self.rows[step]
        return torch.from_numpy(poison(self.x[rows], step, self.fault)), torch.from_numpy(self.y[rows])


def _lightning_module(fault: str):
    import lightning.pytorch as pl
    import torch
    from torch.nn import functional as F

    class Classifier(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch_mlp()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            logits = self(x)
            self.log("val_loss", F.cross_entropy(logits, y))
            self.log("val_acc", (logits.argmax(-1) == y).float().mean())

        def configure_optimizers(self):
            return torch_optimizer(self, fault)

    return Classifier()


def fit_lightning(path, fault: str, steps: int = 200, *, guard=True, callback: bool = True, extra_callbacks=()):
    """Lightning ``Trainer.fit`` with ``DiagCallback(path, guard=guard)``; returns the trainer."""
    import lightning.pytorch as pl
    import torch

    from diag.adapters.lightning import DiagCallback

    x, y = make_data()
    vx, vy = make_data(256, seed=7)
    train = torch.utils.data.DataLoader(_StepBatches(x, y, steps, fault), batch_size=None, shuffle=False)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.from_numpy(vx), torch.from_numpy(vy)),
                                      batch_size=128)
    callbacks = [DiagCallback(path, guard=guard, task="classification", num_classes=CLASSES,
                              loss_kind="softmax_cross_entropy")] if callback else []
    callbacks += list(extra_callbacks)
    trainer = pl.Trainer(max_steps=steps, max_epochs=1, val_check_interval=50, callbacks=callbacks,
                         accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(_lightning_module(fault), train, val)
    return trainer


# ---------------------------------------------------------------------------- Hugging Face Trainer


class _Examples:
    """Map-style dataset of ``{"x": features, "labels": class}`` examples."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        import torch

        return {"x": torch.from_numpy(self.x[i]), "labels": torch.tensor(self.y[i])}


class _PoisoningCollator:
    """Stacks examples into a batch; for ``nan_data`` the batches from ``NAN_ONSET`` hold NaN
    (called once per training batch, in order: the data loader turning bad mid-run)."""

    def __init__(self, fault: str):
        self.fault, self.calls = fault, 0

    def __call__(self, examples):
        import torch

        x = torch.stack([e["x"] for e in examples])
        y = torch.stack([e["labels"] for e in examples])
        if len(examples) == BATCH:  # training batches (evaluation batches are larger)
            x = torch.from_numpy(poison(x.numpy(), self.calls, self.fault))
            self.calls += 1
        return {"x": x, "labels": y}


def _hf_model():
    import torch
    from torch.nn import functional as F

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch_mlp()

        def forward(self, x, labels=None):
            logits = self.net(x)
            out = {"logits": logits}
            if labels is not None:
                out["loss"] = F.cross_entropy(logits, labels)
            return out

    return Classifier()


def fit_huggingface(path, fault: str, steps: int = 200, *, guard=True, callback: bool = True, out_dir=None,
                    extra_callbacks=()):
    """Hugging Face ``Trainer.train`` with ``DiagCallback(path, guard=guard)``; returns the trainer."""
    import tempfile

    from transformers import Trainer, TrainingArguments

    from diag.adapters.huggingface import DiagCallback

    x, y = make_data()
    vx, vy = make_data(256, seed=7)
    args = TrainingArguments(
        output_dir=out_dir or tempfile.mkdtemp(), max_steps=steps, per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=128, learning_rate=learning_rate(fault),
        optim="sgd" if fault == "lr_too_high" else "adamw_torch", weight_decay=0.0, lr_scheduler_type="constant",
        max_grad_norm=0.0, eval_strategy="steps", eval_steps=50, save_strategy="no", logging_strategy="no",
        report_to="none", use_cpu=True, disable_tqdm=True, dataloader_num_workers=0, seed=0,
        remove_unused_columns=False,
    )

    def accuracy(prediction):
        return {"accuracy": float((prediction.predictions.argmax(-1) == prediction.label_ids).mean())}

    callbacks = [DiagCallback(path, guard=guard, task="classification", num_classes=CLASSES,
                              loss_kind="softmax_cross_entropy")] if callback else []
    callbacks += list(extra_callbacks)
    trainer = Trainer(model=_hf_model(), args=args, train_dataset=_Examples(x, y), eval_dataset=_Examples(vx, vy),
                      data_collator=_PoisoningCollator(fault), compute_metrics=accuracy, callbacks=callbacks)
    trainer.train()
    return trainer


# ---------------------------------------------------------------------------- Keras 3 (JAX backend)


def fit_keras(path, fault: str, steps: int = 200, *, guard=True, callback: bool = True, epoch_steps: int = 50,
              extra_callbacks=()):
    """Keras ``fit`` (the JAX backend unless KERAS_BACKEND says otherwise) with ``DiagCallback``;
    ``epoch_steps`` batches per epoch, validation at each epoch's end. Returns the History."""
    os_environ_default_backend()
    import keras

    from diag.adapters.keras import DiagCallback

    x, y = make_data()
    vx, vy = make_data(256, seed=7)
    rows = batch_indices(steps, len(x))

    def batches():
        for step in range(steps):
            yield poison(x[rows[step]], step, fault), y[rows[step]]

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(32, activation="relu"),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(CLASSES)])
    opt = keras.optimizers.SGD(HIGH_LR) if fault == "lr_too_high" else keras.optimizers.Adam(learning_rate(fault))
    model.compile(opt, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    callbacks = [DiagCallback(path, guard=guard, task="classification", num_classes=CLASSES,
                              loss_kind="softmax_cross_entropy", batch_size=BATCH, seed=0)] if callback else []
    callbacks += list(extra_callbacks)
    return model.fit(batches(), steps_per_epoch=epoch_steps, epochs=steps // epoch_steps, validation_data=(vx, vy),
                     callbacks=callbacks, verbose=0)


def os_environ_default_backend() -> None:
    """Keras reads its backend once, at import: JAX (installed with diag) unless the user chose."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
