"""Each planted-fault PyTorch scenario leaves the signature of its fault in the trace."""

import numpy as np
import pytest

pytest.importorskip("torch")

from tests.torch_scenarios import SCENARIOS  # noqa: E402
from diag.trace import load_trace  # noqa: E402


def _run(tmp_path, name, steps):
    path = tmp_path / f"{name}.jsonl"
    SCENARIOS[name].run(path, steps=steps)
    return load_trace(path)


def test_every_scenario_names_a_cause_of_the_catalog():
    from diag.engine.kb import load_knowledge_base

    causes = {s.cause for s in SCENARIOS.values()}
    assert causes == {"healthy", "missing_zero_grad", "fp16_overflow", "train_eval_mode_mismatch"}
    catalog = load_knowledge_base(use_env=False).causes  # the cause ids diag can conclude
    assert sorted(causes - {"healthy"} - set(catalog)) == []


def test_missing_zero_grad_scenario_grows_the_gradient_norm_step_after_step(tmp_path):
    trace = _run(tmp_path, "torch_missing_zero_grad", 40)
    grad = trace.series("grad_norm").values
    assert grad[-1] > 20 * grad[0]
    assert np.mean(np.diff(grad) > 0) > 0.9


def test_fp16_overflow_scenario_skips_steps_while_the_scale_backs_off(tmp_path):
    trace = _run(tmp_path, "torch_fp16_overflow", 30)
    assert trace.header.compute_dtype == "float16" and trace.header.loss_scaling == "dynamic"
    skipped = trace.series("skipped").values.astype(bool)
    scale = trace.series("loss_scale").values
    assert skipped[:5].all() and not skipped[-5:].any()
    assert (scale[1:][skipped[:-1]] == scale[:-1][skipped[:-1]] / 2).all()
    assert trace.events_of("nonfinite")[0].step == 0


def test_batchnorm_without_running_stats_is_bad_in_eval_mode_even_on_train_data(tmp_path):
    trace = _run(tmp_path, "torch_batchnorm_without_running_stats", 60)
    train_loss = trace.series("loss").values[-10:].mean()
    train_eval = trace.series("eval.train_eval.loss").values[-1]
    val = trace.series("eval.val.loss").values[-1]
    assert {e.model_mode for e in trace.evals} == {"eval"}
    assert train_eval > 3 * train_loss and val > 3 * train_loss
    assert train_eval == pytest.approx(val, rel=0.5)


def test_healthy_scenario_learns_and_generalizes(tmp_path):
    trace = _run(tmp_path, "torch_healthy", 100)
    assert trace.series("eval.val.metrics.accuracy").values[-1] > 0.85
    skipped = trace.series("skipped")
    assert len(skipped) == 100  # every step says whether it was skipped: none was (not "no record")
    assert not trace.events_of("nonfinite") and not skipped.values.any()
