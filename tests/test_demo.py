"""``diag demo`` trains real runs whose traces show the fault each scenario plants."""

from __future__ import annotations

import numpy as np
import pytest

from diag.cli import main
from diag.demo import SCENARIOS, run_demo
from diag.trace import load_trace

REQUIRED = {"healthy", "lr_too_high", "vanishing_gradients", "dead_relu", "target_leakage", "fp16_overflow",
            "bf16_update_stagnation"}
STEPS = {"healthy": 150, "lr_too_high": 30, "vanishing_gradients": 30, "dead_relu": 30, "target_leakage": 40,
         "fp16_overflow": 15}


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    return {name: load_trace(run_demo(name, tmp / f"{name}.jsonl", steps=steps)) for name, steps in STEPS.items()}


def test_every_required_scenario_exists_and_plants_its_cause():
    assert REQUIRED <= set(SCENARIOS)
    for name in REQUIRED - {"healthy"}:
        assert SCENARIOS[name].expected_cause == name


def test_healthy_run_learns_and_stays_finite(traces):
    t = traces["healthy"]
    loss = t.series("loss").values
    assert loss[-10:].mean() < 0.5 * loss[:5].mean()
    assert t.series("eval.val.metrics.accuracy").values[-1] > 0.75
    assert t.events_of("nonfinite") == [] and t.events_of("run_end")[0].status == "completed"
    assert t.header.optimizer.name == "adam" and t.header.tags["demo"] == "healthy"
    assert [d.split for d in t.data] == ["train", "val"]


def test_lr_too_high_makes_updates_as_large_as_the_weights_and_the_loss_explode(traces):
    t = traces["lr_too_high"]
    assert np.nanmax(t.layer_matrix("layers.update_ratio").values) > 1.0
    assert np.nanmax(t.series("loss").values) > 100 * t.series("loss").values[0]


def test_vanishing_gradients_leave_the_first_layer_a_million_times_below_the_last(traces):
    g = traces["vanishing_gradients"].layer_matrix("layers.grad_norm").values[-1]
    assert g[0] < 1e-6 * g[-1]
    assert traces["vanishing_gradients"].header.layers[0].activation == "sigmoid"


def test_dead_relu_layers_output_zero_almost_everywhere(traces):
    t = traces["dead_relu"]
    zero = t.layer_matrix("activations.zero_fraction")
    hidden = [i for i, l in enumerate(t.header.layers) if l.activation == "relu"]
    assert hidden and (zero.values[-1, hidden] > 0.9).all()


def test_target_leakage_shows_in_the_data_probe_and_in_validation_accuracy(traces):
    t = traces["target_leakage"]
    val = next(d for d in t.data if d.split == "val")
    assert val.feature_scores[0].feature == "promo_code" and val.feature_scores[0].score > 0.95
    assert t.series("eval.val.metrics.accuracy").values[-1] > 0.95


def test_fp16_overflow_shows_infinite_activations_skipped_steps_and_a_collapsing_loss_scale(traces):
    t = traces["fp16_overflow"]
    (event,) = t.events_of("nonfinite")
    assert (event.step, event.tensor, event.layer) == (0, "activation", "layers/0")
    assert t.series("skipped").values.sum() >= 10
    scale = t.series("loss_scale").values
    assert scale[-1] <= scale[0] / 2**10
    assert t.header.compute_dtype == "float16" and t.header.loss_scaling == "dynamic"


def test_demo_list_names_every_scenario(capsys):
    assert main(["demo", "--list"]) == 0
    out = capsys.readouterr().out
    # One line per scenario, its name first (a name inside another line's description or tag is not a listing).
    assert [line.split()[0] for line in out.splitlines() if line.strip()] == list(SCENARIOS)


def test_unknown_scenario_is_a_clear_input_error(capsys):
    assert main(["demo", "dead_reul"]) == 2
    err = capsys.readouterr().err
    assert "unknown demo scenario 'dead_reul'" in err and "did you mean 'dead_relu'" in err


def test_demo_command_writes_the_trace_and_reports_on_it(tmp_path, capsys):
    out = tmp_path / "nan.jsonl"
    assert main(["demo", "nan_in_input_data", "--steps", "8", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert f"trace written to {out}" in captured.err and "step 8/8" in captured.err
    # The report is the explanation of this run: its planted cause first (any output was enough before).
    assert captured.out.startswith("diag: ") and "\n1. nan_in_input_data  likely" in captured.out
    trace = load_trace(out)
    assert trace.events_of("nonfinite")[0].tensor == "input"
