"""Hugging Face trainer states, MLflow file stores and W&B exports of real runs, explained by diag."""

from __future__ import annotations

import csv
import json
import os

import pytest

from tests.foreign_runs import SCENARIOS, assert_diagnosed_as, explain_json, run_cli, top_causes, training_curves

pytest.importorskip("torch")


# --------------------------------------------------------------------------- Hugging Face


def save_trainer_state(folder, name: str):
    """``TrainerState.save_to_json`` with the log history a Trainer keeps for this real run."""
    transformers = pytest.importorskip("transformers", reason="transformers is not installed")
    curves = training_curves(name)
    history = []
    val = {p["step"]: p for p in curves.val}
    for point in curves.train:
        step = point["step"] + 1  # the Trainer counts optimizer steps from 1
        history.append({"loss": point["loss"], "grad_norm": point["grad_norm"], "learning_rate": point["lr"],
                        "epoch": step / 32, "step": step})
        if point["step"] in val:
            history.append({"eval_loss": val[point["step"]]["loss"],
                            "eval_accuracy": val[point["step"]]["accuracy"], "eval_runtime": 0.01,
                            "epoch": step / 32, "step": step})
    last = len(curves.train)
    history.append({"train_runtime": 3.2, "train_loss": sum(p["loss"] for p in curves.train) / last,
                    "epoch": last / 32, "step": last})
    state = transformers.TrainerState(global_step=last, max_steps=last, log_history=history,
                                      train_batch_size=64, logging_steps=1)
    folder.mkdir(parents=True, exist_ok=True)
    state.save_to_json(str(folder / "trainer_state.json"))
    return folder / "trainer_state.json"


@pytest.mark.parametrize("name", SCENARIOS)
def test_explain_names_the_cause_of_each_trainer_state(tmp_path, name):
    path = save_trainer_state(tmp_path / name, name)
    code, diagnosis, err = explain_json(path)
    assert code == 0, err
    assert_diagnosed_as(diagnosis, name)


def test_a_checkpointed_hf_run_is_one_run_read_from_its_last_checkpoint(tmp_path):
    output = tmp_path / "output"
    save_trainer_state(output / "checkpoint-50", "healthy")
    last = save_trainer_state(output / "checkpoint-150", "healthy")
    from diag.adapters.importers import detect, open_run

    found = detect(output)
    assert [(r.name, r.source, r.path) for r in found.runs] == [("output", "huggingface", str(last))]
    trace = open_run(output)
    assert trace.num_steps == 150 and trace.header.batch_size == 64
    assert trace.last_step == 150  # the summary entry (train_runtime, mean train_loss) is not a step
    assert trace.series("loss").values[-1] == pytest.approx(training_curves("healthy").train[-1]["loss"])


def test_a_json_that_is_not_a_trainer_state_exits_2(tmp_path):
    path = tmp_path / "trainer_state.json"
    path.write_text(json.dumps({"global_step": 3}))
    code, out, err = run_cli("explain", path)
    assert code == 2 and out == ""
    assert err.splitlines()[0] == (f"diag explain: {path}: error: not a Hugging Face trainer state: no "
                                   "'log_history' list")


# --------------------------------------------------------------------------- MLflow


def log_to_mlflow(store, name: str) -> str:
    """``mlflow.log_metric`` / ``log_params`` of a real run into a file store; returns the run id."""
    mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'diag[mlflow]')")
    curves = training_curves(name)
    previous = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 keeps the file store behind this switch
    mlflow.set_tracking_uri(store.as_uri())
    try:
        with mlflow.start_run(run_name=name) as run:
            mlflow.log_params({"lr": curves.lr, "optimizer": curves.optimizer, "batch_size": 64})
            for point in curves.train:
                mlflow.log_metrics({"train_loss": point["loss"], "grad_norm": point["grad_norm"]},
                                   step=point["step"])
            for point in curves.val:
                mlflow.log_metrics({"val_loss": point["loss"], "val_accuracy": point["accuracy"]},
                                   step=point["step"])
    finally:
        mlflow.set_tracking_uri(None)
        if previous is None:
            del os.environ["MLFLOW_ALLOW_FILE_STORE"]
    return run.info.run_id


@pytest.fixture(scope="module")
def mlruns(tmp_path_factory):
    store = tmp_path_factory.mktemp("mlflow") / "mlruns"
    return store, {name: log_to_mlflow(store, name) for name in SCENARIOS}


@pytest.mark.parametrize("name", SCENARIOS)
def test_explain_names_the_cause_of_each_mlflow_run(mlruns, name):
    store, _ = mlruns
    code, diagnosis, err = explain_json(store, "--run", name)
    assert code == 0, err
    assert_diagnosed_as(diagnosis, name)


def test_mlflow_client_and_file_layout_read_the_same_run(mlruns):
    store, ids = mlruns
    from diag.adapters.importers import NameMap
    from diag.adapters.importers.assemble import assemble, to_trace
    from diag.adapters.importers.mlflow_store import read_mlflow_run

    run_dir = next(store.glob(f"*/{ids['diverging']}"))
    names = NameMap.load()
    by_client = to_trace(assemble(read_mlflow_run(run_dir, "diverging", use_client=True), names))
    by_layout = to_trace(assemble(read_mlflow_run(run_dir, "diverging", use_client=False), names))
    assert by_client.series_names() == by_layout.series_names()
    for series in by_client.series_names():
        assert by_client.series(series).values.tolist() == by_layout.series(series).values.tolist()
    assert by_client.header.optimizer.name == by_layout.header.optimizer.name == "sgd"
    assert by_client.header.optimizer.hyperparameters["learning_rate"] == 3.0
    assert [e.status for e in by_client.events] == [e.status for e in by_layout.events] == ["completed"]


def test_an_mlflow_run_is_found_by_its_id_too(mlruns):
    store, ids = mlruns
    code, diagnosis, _ = explain_json(store, "--run", ids["overfitting"])
    assert code == 0 and top_causes(diagnosis)[0] == "overfitting"


# --------------------------------------------------------------------------- W&B


def write_wandb_history(path, name: str):
    """A run's history as ``run.history().to_csv()`` writes it (pandas index column first)."""
    curves = training_curves(name)
    val = {p["step"]: p for p in curves.val}
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["", "_step", "_runtime", "_timestamp", "train/loss", "train/grad_norm", "val/loss",
                         "val/accuracy"])
        for i, point in enumerate(curves.train):
            v = val.get(point["step"], {})
            writer.writerow([i, point["step"], 0.1 * i, 1.7e9 + i, point["loss"], point["grad_norm"],
                             v.get("loss", ""), v.get("accuracy", "")])
    return path


@pytest.mark.parametrize("name", SCENARIOS)
def test_explain_names_the_cause_of_each_wandb_history_export(tmp_path, name):
    code, diagnosis, err = explain_json(write_wandb_history(tmp_path / f"{name}.csv", name))
    assert code == 0, err
    assert_diagnosed_as(diagnosis, name)


def test_a_wandb_chart_export_holds_one_run_per_column_prefix(tmp_path):
    path = tmp_path / "chart.csv"
    runs = ("healthy", "diverging")
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        header = ["Step"]
        for run in runs:
            header += [f"{run} - train/loss", f"{run} - train/loss__MIN", f"{run} - train/loss__MAX"]
        writer.writerow(header)
        for step in range(150):
            row = [step]
            for run in runs:
                loss = training_curves(run).train[step]["loss"]
                row += [loss, loss, loss]
            writer.writerow(row)
    code, _, err = run_cli("explain", path)
    assert code == 2 and "holds 2 runs; pick one with --run NAME" in err
    from diag.adapters.importers import open_run

    trace = open_run(path, run="diverging")
    assert trace.series_names() == ["loss"]
    assert trace.series("loss").values.tolist() == [p["loss"] for p in training_curves("diverging").train]


def test_a_wandb_json_history_reads_like_its_csv(tmp_path):
    curves = training_curves("overfitting")
    rows = [{"_step": p["step"], "train/loss": p["loss"], "_runtime": 1.0} for p in curves.train]
    rows += [{"_step": p["step"], "val/loss": p["loss"], "media": {"_type": "histogram"}} for p in curves.val]
    path = tmp_path / "wandb-history.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    code, diagnosis, err = explain_json(path)
    assert code == 0, err
    assert top_causes(diagnosis)[0] == "overfitting"


def test_a_wandb_history_saved_under_any_name_is_found_beside_diag_traces(tmp_path):
    """``run.history()`` saved as JSON lines gets the user's own file name; the first line tells."""
    from diag.sweep import discover_runs
    from tests.numpy_training import train_softmax_regression

    folder = tmp_path / "runs"
    folder.mkdir()
    curves = training_curves("diverging")
    rows = [{"_step": p["step"], "_runtime": 0.1 * p["step"], "train/loss": p["loss"],
             "train/grad_norm": p["grad_norm"]} for p in curves.train]
    history = folder / "sweep-7-lr3.jsonl"
    history.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    train_softmax_regression(folder / "ours.jsonl", steps=40, lr=0.1, seed=0)

    code, diagnosis, err = explain_json(history)
    assert code == 0, err
    assert_diagnosed_as(diagnosis, "diverging")
    from diag.adapters.importers import detect

    assert [(r.name, r.source) for r in detect(folder).runs] == [("sweep-7-lr3", "wandb")]
    found = {os.path.basename(r.path): r.kind for r in discover_runs(folder)}
    assert found == {"sweep-7-lr3.jsonl": "foreign", "ours.jsonl": "trace"}
