"""Metric names as data: the built-in names.yaml, --map, --names files, clashes, and import lightness."""

from __future__ import annotations

import subprocess
import sys

import pytest

from diag.adapters.importers import NameMap, detect
from diag.errors import DiagInputError
from tests.foreign_runs import run_cli


@pytest.mark.parametrize("name, field", [
    ("train/loss", "loss"), ("Loss/train", "loss"), ("train_loss_step", "loss"), ("loss", "loss"),
    ("learning_rate", "lr"), ("lr-Adam", "lr"), ("lr-AdamW/pg1", "lr"), ("grad_norm", "grad_norm"),
    ("grad_2.0_norm_total", "grad_norm"), ("eval_loss", "eval.val.loss"), ("val_loss", "eval.val.loss"),
    ("val_acc", "eval.val.metrics.accuracy"), ("eval_f1", "eval.val.metrics.f1"),
    ("test/loss", "eval.test.loss"), ("train_acc", "metrics.accuracy"), ("epoch", "epoch"),
    ("my/custom.metric", "metrics.my_custom_metric"), ("grad_norm/layer1", "layers.grad_norm.layer1"),
    ("grad_2.0_norm/net.0.weight", "layers.grad_norm.net.0.weight"), ("weight_norm/fc1", "layers.param_norm.fc1"),
])
def test_builtin_names_map_common_metric_names(name, field):
    assert NameMap.load().field_for(name) == field


@pytest.mark.parametrize("name", ["hp_metric", "_runtime", "eval_runtime", "train_samples_per_second",
                                  "lr-Adam/pg2", "total_flos"])
def test_bookkeeping_names_are_ignored(name):
    assert NameMap.load().field_for(name) is None


def test_user_maps_win_over_files_and_files_over_builtin(tmp_path):
    names_file = tmp_path / "names.yaml"
    names_file.write_text("names:\n  score: eval.val.metrics.accuracy\n  loss: metrics.raw_loss\n")
    names = NameMap.load(extra=["objective=loss", "acc/*=eval.holdout.metrics.{1}"], files=[names_file])
    assert names.field_for("objective") == "loss"
    assert names.field_for("acc/top5") == "eval.holdout.metrics.top5"
    assert names.field_for("score") == "eval.val.metrics.accuracy"
    assert names.field_for("loss") == "metrics.raw_loss"


@pytest.mark.parametrize("entry, reason", [
    ("objective", "is not NAME=FIELD"),
    ("objective=losss", "unknown field 'losss'"),
    ("objective=eval.val", "unknown field 'eval.val'"),
    ("g/*=layers.grad_nrom.{1}", "unknown field 'layers.grad_nrom.x'"),
])
def test_a_bad_map_is_a_clear_error(entry, reason):
    with pytest.raises(DiagInputError, match=reason):
        NameMap.load(extra=[entry])


def test_a_mapped_tag_becomes_the_loss_and_a_clash_keeps_both(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,objective,loss\n0,2.0,9\n1,1.5,8\n2,1.0,7\n")
    code, out, err = run_cli("summary", path, "--map", "objective=loss", "--format", "json")
    assert code == 0, err
    import json

    document = json.loads(out)
    assert "loss" in document["series"] and "metrics.loss" in document["series"]
    assert "'loss' and 'objective' both map to loss; 'objective' is used, 'loss' is kept as metrics.loss" in err


def test_a_bad_names_file_exits_2_naming_it(tmp_path):
    bad = tmp_path / "names.yaml"
    bad.write_text("names: [loss]\n")
    path = tmp_path / "log.csv"
    path.write_text("step,loss\n0,2.0\n")
    code, out, err = run_cli("explain", path, "--names", bad)
    assert code == 2 and out == ""
    assert err.startswith(f"diag explain: {bad}: error: expected a mapping 'names:'")


def test_a_folder_with_no_known_log_is_not_foreign_and_explain_exits_2(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert detect(tmp_path) is None
    code, out, err = run_cli("explain", tmp_path)
    assert code == 2 and out == ""
    assert err.splitlines()[0] == f"diag explain: {tmp_path}: error: holds no diag trace and no log diag knows"


def test_diag_traces_are_not_mistaken_for_foreign_logs(real_trace):
    assert detect(real_trace) is None and detect(real_trace.parent) is None


def test_reading_a_diag_trace_imports_no_reader_library(real_trace):
    code = ("import sys; from diag.cli import main; main(['summary', %r]);"
            "print(sorted(m for m in ('tensorboard', 'mlflow', 'lightning', 'transformers', 'torch') "
            "if m in sys.modules), file=sys.stderr)" % str(real_trace))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines()[-1] == "[]"
