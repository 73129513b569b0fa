"""Regenerate examples/foreign/: the logs other tools write, of three real small PyTorch runs.

The runs (healthy, diverging, overfitting) are the importer tests' (``tests/foreign_runs.py``:
an MLP on generated data, nothing downloaded); each tool's own library writes them:

* ``tensorboard/<run>/``: torch's ``SummaryWriter``;
* ``lightning_logs/version_N/``: Lightning's ``CSVLogger`` (version 0 healthy, 1 diverging, 2 overfitting);
* ``hf_output/checkpoint-150/trainer_state.json``: ``transformers.TrainerState.save_to_json`` (diverging);
* ``mlruns/``: ``mlflow.log_metrics`` into a file store (one run per scenario, named after it);
* ``wandb_overfitting.csv``: a W&B run history as ``run.history().to_csv()`` writes it.

    python examples/make_foreign_logs.py      # needs the tensorboard, mlflow, lightning, transformers extras
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from tests.foreign_runs import SCENARIOS, training_curves  # noqa: E402

OUT = HERE / "foreign"


def tensorboard(name: str) -> None:
    from torch.utils.tensorboard import SummaryWriter

    curves = training_curves(name)
    writer = SummaryWriter(str(OUT / "tensorboard" / name))
    for p in curves.train:
        writer.add_scalar("Loss/train", p["loss"], p["step"])
        writer.add_scalar("grad_norm", p["grad_norm"], p["step"])
        writer.add_scalar("lr", p["lr"], p["step"])
    for p in curves.val:
        writer.add_scalar("Loss/val", p["loss"], p["step"])
        writer.add_scalar("Accuracy/val", p["accuracy"], p["step"])
    writer.close()


def lightning(name: str) -> None:
    from lightning.pytorch.loggers import CSVLogger

    curves = training_curves(name)
    logger = CSVLogger(str(OUT), name="lightning_logs")
    logger.log_hyperparams({"lr": curves.lr, "optimizer": curves.optimizer, "batch_size": 64})
    val = {p["step"]: p for p in curves.val}
    for p in curves.train:
        logger.log_metrics({"train_loss": p["loss"], "train_acc": p["accuracy"], "epoch": p["step"] // 32,
                            f"lr-{curves.optimizer}": p["lr"]}, step=p["step"])
        if p["step"] in val:
            logger.log_metrics({"val_loss": val[p["step"]]["loss"], "val_acc": val[p["step"]]["accuracy"],
                                "epoch": p["step"] // 32}, step=p["step"])
    logger.save()
    logger.finalize("success")


def huggingface(name: str) -> None:
    from transformers import TrainerState

    curves = training_curves(name)
    val = {p["step"]: p for p in curves.val}
    history = []
    for p in curves.train:
        step = p["step"] + 1
        history.append({"loss": p["loss"], "grad_norm": p["grad_norm"], "learning_rate": p["lr"],
                        "epoch": step / 32, "step": step})
        if p["step"] in val:
            history.append({"eval_loss": val[p["step"]]["loss"], "eval_accuracy": val[p["step"]]["accuracy"],
                            "epoch": step / 32, "step": step})
    folder = OUT / "hf_output" / f"checkpoint-{len(curves.train)}"
    folder.mkdir(parents=True)
    TrainerState(global_step=len(curves.train), max_steps=len(curves.train), log_history=history,
                 train_batch_size=64).save_to_json(str(folder / "trainer_state.json"))


def mlflow_run(name: str) -> None:
    import mlflow

    curves = training_curves(name)
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 keeps the file store behind this switch
    mlflow.set_tracking_uri((OUT / "mlruns").as_uri())
    with mlflow.start_run(run_name=name):
        mlflow.log_params({"lr": curves.lr, "optimizer": curves.optimizer, "batch_size": 64})
        for p in curves.train:
            mlflow.log_metrics({"train_loss": p["loss"], "grad_norm": p["grad_norm"]}, step=p["step"])
        for p in curves.val:
            mlflow.log_metrics({"val_loss": p["loss"], "val_accuracy": p["accuracy"]}, step=p["step"])


def wandb_history(name: str) -> None:
    curves = training_curves(name)
    val = {p["step"]: p for p in curves.val}
    with open(OUT / f"wandb_{name}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", "_step", "_runtime", "train/loss", "val/loss", "val/accuracy"])
        for i, p in enumerate(curves.train):
            v = val.get(p["step"], {})
            writer.writerow([i, p["step"], round(0.05 * i, 2), p["loss"], v.get("loss", ""), v.get("accuracy", "")])


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    for name in SCENARIOS:
        tensorboard(name)
        lightning(name)
        mlflow_run(name)
    huggingface("diverging")
    wandb_history("overfitting")
    for path in sorted(OUT.rglob("*")):
        if path.is_file() and path.suffix in (".yaml",) and "mlruns" in path.parts:
            # meta.yaml records the absolute artifact location of this machine; keep it relative.
            path.write_text(path.read_text().replace((OUT / "mlruns").as_uri(), "file:./mlruns"))
    print(f"wrote {sum(1 for p in OUT.rglob('*') if p.is_file())} files under {OUT}")


if __name__ == "__main__":
    main()
