"""The diagnosis benchmark's scenarios still train, plant visible faults, and get scored end to end.

A handful of scenarios from ``benchmarks/diagnosis/scenarios.yaml`` train for real (Flax and
PyTorch) exactly as ``run.py`` trains them. The tests assert on the recorded numbers, not on
diag's answers (the knowledge base is still growing): the planted fault must be visible in the
trace, where a rule can find it, and the healthy twin must look healthy.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "diagnosis"
sys.path.insert(0, str(BENCH))

import run as R  # noqa: E402
import score as S  # noqa: E402
from diagbench import spec as SP  # noqa: E402

from diag.trace import load_trace  # noqa: E402

IDS = [
    "healthy/mlp-blobs-adam",
    "lr_too_high/mlp-blobs-sgd3",
    "nan_in_input_data/mlp-blobs-1pct-nan",
    "train_val_overlap/mlp-30pct-val-copied",
    "missing_zero_grad/torch-mlp-sgd",
    "incorrect_gradient/mlp-swish-vjp-missing-term",
]


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    runs = tmp_path_factory.mktemp("diagnosis_runs")
    by_id = {s["id"]: s for s in SP.load()}
    scenarios = [by_id[i] for i in IDS]
    for sc in scenarios:
        sc["steps"] = min(sc["steps"], 100)  # enough for every fault here to show
    results = R.run_all(scenarios, jobs=1, runs=runs, keep=True)
    traces = {sc["id"]: load_trace(runs / SP.trace_name(sc)) for sc in scenarios}
    return {"results": {r["scenario"]: r for r in results}, "traces": traces, "runs": runs, "scenarios": scenarios}


def test_every_scenario_trains_and_is_diagnosed_without_error(bench):
    for sid, r in bench["results"].items():
        assert r["error"] is None, f"{sid}: {r['error']}\n{r.get('traceback')}"
        assert bench["traces"][sid].num_steps > 0


def test_healthy_run_converges_and_generalizes(bench):
    t = bench["traces"]["healthy/mlp-blobs-adam"]
    loss = t.series("loss").values
    assert loss[-10:].mean() < 0.3 * loss[:5].mean()
    assert t.series("eval.val.metrics.accuracy").values[-1] > 0.9


def test_too_high_learning_rate_keeps_the_loss_far_above_the_healthy_run(bench):
    healthy = bench["traces"]["healthy/mlp-blobs-adam"].series("loss").values
    high = bench["traces"]["lr_too_high/mlp-blobs-sgd3"].series("loss").values
    late = high[-20:]
    assert not np.all(np.isfinite(late)) or late.mean() > 10 * healthy[-20:].mean()
    assert np.nanmax(high[:20]) > 2 * high[0] or not np.isfinite(high).all()  # the first steps overshoot


def test_nan_rows_in_the_data_are_recorded_as_nonfinite_inputs(bench):
    t = bench["traces"]["nan_in_input_data/mlp-blobs-1pct-nan"]
    assert np.nansum(t.series("input.nonfinite").values) > 0
    first = [e for e in t.events if getattr(e, "event", None) == "nonfinite"]
    assert first and first[0].tensor == "input"
    train = [d for d in t.data if d.split == "train"][0]
    assert train.input_nonfinite >= 20  # 1% of 2048 rows


def test_copied_validation_rows_show_as_overlap_in_the_data_facts(bench):
    t = bench["traces"]["train_val_overlap/mlp-30pct-val-copied"]
    val = [d for d in t.data if d.split == "val"][0]
    assert val.overlap_fraction == pytest.approx(0.3, abs=0.02)
    healthy_val = [d for d in bench["traces"]["healthy/mlp-blobs-adam"].data if d.split == "val"][0]
    assert healthy_val.overlap_fraction == 0.0


def test_missing_zero_grad_makes_the_gradient_norm_grow_with_the_step(bench):
    g = bench["traces"]["missing_zero_grad/torch-mlp-sgd"].series("grad_norm").values
    g = g[np.isfinite(g)]
    assert np.median(g[-20:]) > 5 * g[0]  # summed over ~100 steps instead of one
    healthy = bench["traces"]["healthy/mlp-blobs-adam"].series("grad_norm").values
    assert np.median(healthy[-5:]) < np.median(healthy[:2])


def test_custom_vjp_bug_fails_the_gradient_check_recorded_in_the_trace(bench):
    checks = bench["traces"]["incorrect_gradient/mlp-swish-vjp-missing-term"].checks
    assert checks and any(not c.passed and c.error > c.threshold for c in checks)


def test_scorer_counts_hits_misses_and_false_alarms_from_real_diagnoses(bench):
    results = list(bench["results"].values())
    outcomes = R.outcomes(results)
    scored = S.score(outcomes)
    assert scored.faulty == len(IDS) - 1 and scored.healthy == 1
    hits = sum(o.first == o.expected for o in outcomes if o.expected != S.HEALTHY)
    assert scored.top1 == pytest.approx(hits / scored.faulty)
    assert set(scored.confusion) == {o.expected for o in outcomes}
    text = S.render_text(scored)
    assert "top-1 accuracy" in text and "confusion" in text


def test_command_line_reuses_kept_traces_and_prints_json_figures(bench, capsys, tmp_path):
    import yaml

    healthy = [s for s in bench["scenarios"] if s["id"] == "healthy/mlp-blobs-adam"]
    listing = tmp_path / "scenarios.yaml"
    listing.write_text(yaml.safe_dump({"scenarios": healthy}))
    code = R.main(["--scenarios", str(listing), "--runs", str(bench["runs"]), "--reuse",
                   "--format", "json", "--quiet"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert doc["healthy"] == 1 and doc["faulty"] == 0
    assert doc["results"][0]["trained"] is False  # diagnosed from the kept trace, not retrained


def test_a_malformed_scenario_entry_is_reported_with_its_field(tmp_path, capsys):
    bad = tmp_path / "s.yaml"
    bad.write_text("scenarios:\n- id: x/y\n  expect: healthy\n  model: {kind: mlp}\n  data: {kind: blobs}\n  stepz: 3\n")
    assert R.main(["--scenarios", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "x/y" in err and "stepz" in err


def test_reliability_counts_each_reported_cause_in_its_certainty_band():
    outcomes = [
        S.Outcome("a", "lr_too_low", ["lr_too_low"], ["lr_too_low"], certainty={"lr_too_low": 0.7}),
        S.Outcome("b", "dead_relu", ["lr_too_high", "dead_relu"], ["lr_too_high"],
                  certainty={"lr_too_high": 0.65, "dead_relu": 0.4}),
        S.Outcome("c", S.HEALTHY, ["overfitting"], ["overfitting"], framework="torch", certainty={"overfitting": 0.9}),
        S.Outcome("d", S.HEALTHY, [], [], framework="flax"),
    ]
    scored = S.score(outcomes)
    bands = {r["band"]: (r["right"], r["reported"]) for r in scored.reliability}
    assert bands["0.60-0.80"] == (1, 2)  # lr_too_low right, lr_too_high wrong
    assert bands["0.30-0.45"] == (1, 1)  # dead_relu, the planted cause, reported at 0.4
    assert bands["0.80-1.00"] == (0, 1)  # any cause on a healthy run is wrong
    assert scored.false_alarm_by_framework == {"flax": [0, 1], "torch": [1, 1]}
    assert ">= 0.60" in "\n".join(S.render_reliability(scored.reliability))


@pytest.mark.parametrize("crash", ["shape", "dtype"])
def test_program_style_pytorch_crash_leaves_its_exception_in_the_trace(tmp_path, crash):
    sc = {"id": f"x/torch-{crash}", "expect": f"{crash}_mismatch", "style": "program", "framework": "torch",
          "seed": 0, "steps": 5, "every": 5, "eval_every": 5, "model": {"kind": "mlp", "widths": [8]},
          "data": {"task": "churn", "n_train": 64, "n_val": 16}, "train": {"batch": 8}, "fault": {"crash": crash}}
    R.run_all([sc], jobs=1, runs=tmp_path, keep=True)
    trace = load_trace(tmp_path / SP.trace_name(sc))
    events = [e for e in trace.events if e.event == "exception"]
    assert events and ("shape" if crash == "shape" else "dtype") in events[0].message


def test_program_style_pytorch_gru_with_clipping_trains_and_evaluates(tmp_path):
    sc = {"id": "healthy/torch-gru-clip", "expect": "healthy", "style": "program", "framework": "torch",
          "seed": 0, "steps": 40, "every": 10, "eval_every": 20, "model": {"kind": "gru", "hidden": 16},
          "data": {"task": "sensor", "n_train": 256, "n_val": 64, "length": 10},
          "train": {"optimizer": "adamw", "lr": 0.01, "clip": 1.0, "schedule": "cosine", "batch": 16}, "fault": {}}
    (result,) = R.run_all([sc], jobs=1, runs=tmp_path, keep=True)
    assert result["error"] is None
    trace = load_trace(tmp_path / SP.trace_name(sc))
    loss = trace.series("loss").values
    assert loss[-10:].mean() < loss[:5].mean()
    assert trace.series("grad_norm").values.max() <= 1.0 + 1e-5  # recorded after clip_grad_norm_
    assert {e.split for e in trace.evals} == {"val", "train_eval"}
