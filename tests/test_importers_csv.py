"""CSV logs: Lightning's CSVLogger in real short fits, Keras-style epoch logs, and bad CSV input."""

from __future__ import annotations

import csv
import os

import pytest

from tests.foreign_runs import EVAL_EVERY, assert_diagnosed_as, explain_json, run_cli

LIGHTNING_SCENARIOS = ("healthy", "diverging", "overfitting")


def lightning_fit(root, name: str):
    """A real Lightning fit of scenario ``name`` logged by CSVLogger; returns the version folder."""
    pytest.importorskip("lightning", reason="lightning is not installed (pip install 'diag[lightning]')")
    import lightning as L
    import torch
    import torch.nn.functional as F
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import CSVLogger
    from lightning.pytorch.utilities import grad_norm
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    torch.set_num_threads(1)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    if name == "overfitting":
        x, y = torch.randn(64, 20, generator=generator), torch.randint(0, 4, (64,), generator=generator)
        x_val, y_val = torch.randn(256, 20, generator=generator), torch.randint(0, 4, (256,), generator=generator)
        width, lr, steps = 128, 1e-2, 120
    else:
        w = torch.randn(20, 4, generator=generator)
        x = torch.randn(2048, 20, generator=generator)
        x_val = torch.randn(512, 20, generator=generator)
        y, y_val = (x @ w).argmax(1), (x_val @ w).argmax(1)
        width, lr, steps = 64, (0.05 if name == "healthy" else 3.0), 150

    class Classifier(L.LightningModule):
        def __init__(self, lr: float, width: int):
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(20, width), nn.ReLU(), nn.Linear(width, 4))

        def training_step(self, batch, _):
            inputs, labels = batch
            logits = self.net(inputs)
            loss = F.cross_entropy(logits, labels)
            self.log("train_loss", loss)
            self.log("train_acc", (logits.argmax(1) == labels).float().mean())
            return loss

        def on_before_optimizer_step(self, optimizer):
            # Lightning's own utility: one norm per parameter ('grad_2.0_norm/0.weight') and the total.
            self.log_dict(grad_norm(self.net, norm_type=2))

        def validation_step(self, batch, _):
            inputs, labels = batch
            logits = self.net(inputs)
            self.log("val_loss", F.cross_entropy(logits, labels))
            self.log("val_acc", (logits.argmax(1) == labels).float().mean())

        def configure_optimizers(self):
            if name == "overfitting":
                return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)

    train = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True, generator=generator)
    val = DataLoader(TensorDataset(x_val, y_val), batch_size=len(x_val))
    per_epoch = len(train)
    timing = ({"check_val_every_n_epoch": EVAL_EVERY} if per_epoch == 1
              else {"val_check_interval": EVAL_EVERY})
    logger = CSVLogger(str(root), name="lightning_logs")
    trainer = L.Trainer(max_steps=steps, logger=logger, log_every_n_steps=1, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[LearningRateMonitor()], accelerator="cpu", devices=1, **timing)
    trainer.fit(Classifier(lr, width), train, val)
    return root / "lightning_logs" / f"version_{logger.version}"


@pytest.fixture(scope="module")
def lightning_logs(tmp_path_factory):
    root = tmp_path_factory.mktemp("lightning")
    versions = {name: lightning_fit(root, name) for name in LIGHTNING_SCENARIOS}
    return root / "lightning_logs", versions


@pytest.mark.parametrize("name", LIGHTNING_SCENARIOS)
def test_explain_names_the_cause_of_each_real_lightning_fit(lightning_logs, name):
    _, versions = lightning_logs
    code, diagnosis, err = explain_json(versions[name])
    assert code == 0, err
    assert_diagnosed_as(diagnosis, name)


def test_lightning_versions_are_runs_and_hparams_reach_the_header(lightning_logs):
    folder, versions = lightning_logs
    code, out, err = run_cli("explain", folder)
    assert code == 2 and "holds 3 runs" in err
    for version in versions.values():
        assert f"  {version.name}  (lightning)" in err
    from diag.adapters.importers import open_run

    trace = open_run(folder, run=versions["diverging"].name)
    assert trace.header.framework == "lightning"
    assert trace.header.optimizer.hyperparameters["learning_rate"] == 3.0
    assert trace.header.recording["imported_from"] == "lightning"
    assert {"loss", "lr", "grad_norm", "eval.val.loss", "eval.val.metrics.accuracy", "metrics.accuracy"} <= set(
        trace.series_names())
    # The per-parameter norms are per-layer statistics, each layer the L2 norm over its parameters.
    assert trace.layer_names == ("0", "2") and "layers.grad_norm" in trace.series_names()
    with open(versions["diverging"] / "metrics.csv", newline="") as f:
        first = next(row for row in csv.DictReader(f) if row["grad_2.0_norm/0.weight"])
    expected = (float(first["grad_2.0_norm/0.weight"]) ** 2 + float(first["grad_2.0_norm/0.bias"]) ** 2) ** 0.5
    step = int(first["step"])
    series = trace.layer_series("layers.grad_norm", "0")
    assert series.values[list(series.steps).index(step)] == pytest.approx(expected, rel=1e-6)


KERAS_EPOCHS = {"healthy": 15, "diverging": 15, "overfitting": 120}


def keras_csvlogger_fit(path, name: str):
    """A real Keras 3 fit (JAX backend) logged by ``keras.callbacks.CSVLogger``: one row per epoch.

    The scenarios of tests/foreign_runs.py in Keras: SGD at a sound learning rate and at 20x it (the
    loss climbs 400x in 5 epochs), and a wide net memorising 64 random labels (one step per epoch).
    A ``LearningRateScheduler`` puts the learning rate into the logs, as it does in real scripts.
    """
    os.environ.setdefault("KERAS_BACKEND", "jax")  # before keras is first imported; JAX comes with diag
    keras = pytest.importorskip("keras", reason="keras is not installed (pip install 'diag[keras]')")
    import numpy as np

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    if name == "overfitting":
        x, y = rng.normal(size=(64, 20)).astype("float32"), rng.integers(0, 4, 64)
        x_val, y_val = rng.normal(size=(256, 20)).astype("float32"), rng.integers(0, 4, 256)
        width, optimizer = 128, keras.optimizers.Adam(1e-2)
    else:
        w = rng.normal(size=(20, 4))
        x, x_val = rng.normal(size=(2048, 20)).astype("float32"), rng.normal(size=(512, 20)).astype("float32")
        y, y_val = (x @ w).argmax(1), (x_val @ w).argmax(1)
        width, optimizer = 64, keras.optimizers.SGD(0.05 if name == "healthy" else 1.0, momentum=0.9)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(width, activation="relu"), keras.layers.Dense(4)])
    model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=KERAS_EPOCHS[name], validation_data=(x_val, y_val), verbose=0,
              callbacks=[keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr),
                         keras.callbacks.CSVLogger(str(path))])
    return path


@pytest.mark.parametrize("name", LIGHTNING_SCENARIOS)
def test_explain_names_the_cause_of_each_real_keras_csvlogger_file(tmp_path, name):
    path = keras_csvlogger_fit(tmp_path / f"{name}.csv", name)
    assert path.read_text().splitlines()[0] == "epoch,accuracy,learning_rate,loss,val_accuracy,val_loss"
    code, diagnosis, err = explain_json(path)
    assert code == 0, err
    assert_diagnosed_as(diagnosis, name)


def test_a_keras_csv_counts_epochs_as_steps_and_says_so(tmp_path):
    path = keras_csvlogger_fit(tmp_path / "training.log.csv", "overfitting")
    code, out, err = run_cli("explain", path)
    assert code == 0, err
    assert out.splitlines()[1] == f"imported from Keras CSVLogger: {path} (run training.log) (its steps are epochs)"
    from diag.adapters.importers import open_run

    trace = open_run(path)
    assert trace.header.framework == "keras"
    assert trace.num_steps == KERAS_EPOCHS["overfitting"]
    assert trace.series("epoch").values.tolist() == list(range(trace.num_steps))


def test_a_csv_without_step_or_epoch_column_exits_2_naming_it(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("loss,accuracy\n2.3,0.1\n1.9,0.3\n")
    code, out, err = run_cli("import", path, "-o", tmp_path / "t.jsonl")
    assert code == 2 and out == ""
    assert err.splitlines()[0] == (f"diag import: {path}:1: error: no step or epoch column (columns: loss, "
                                   "accuracy)")
    lightning = tmp_path / "version_0"
    lightning.mkdir()
    (lightning / "metrics.csv").write_text("epoch,step,train_loss\n0,0,2.3\n0,1,oops\n0,2")
    code, out, err = run_cli("summary", lightning / "metrics.csv")
    assert code == 0, err
    assert "1 cell(s) that are not numbers were skipped, the first 'oops'" in err
    assert "the last row is cut short" in err
