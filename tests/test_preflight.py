"""diag.preflight on real small models, in PyTorch and Flax NNX: one table of planted faults, each
probe's broken case and its healthy twin, driven over both frameworks."""

from __future__ import annotations

import numpy as np
import pytest

from diag.preflight import PROBES, preflight
from tests.preflight_setups import flax_setup, torch_setup

FRAMEWORKS = ("torch", "flax")


def setup_for(framework: str, **bug) -> dict:
    if framework == "torch":
        pytest.importorskip("torch")
        return torch_setup(**bug)
    return flax_setup(**bug)


def run(setup: dict, only=None, budget_s=30.0):
    return preflight(setup["model"], setup["loss_fn"], setup["optimizer"], setup["train_batches"],
                     setup.get("val_batches"), budget_s=budget_s, only=only)


def reported(report) -> set[str]:
    return {f.id for f in report.findings if f.bucket}


# probe, the fault planted (setup knobs), the cause the probe must report, frameworks
BROKEN = [
    ("data", {"nan_inputs": True}, "nan_in_input_data", FRAMEWORKS),
    ("data", {"label_offset": 1}, "loss_output_mismatch", FRAMEWORKS),
    ("data", {"overlap": True}, "train_val_overlap", FRAMEWORKS),
    ("output_loss", {"softmax": True}, "loss_output_mismatch", FRAMEWORKS),
    ("output_loss", {"regression": True}, "shape_mismatch", FRAMEWORKS),
    ("init_loss", {"out_scale": 50.0}, "bad_initialization", FRAMEWORKS),
    ("gradient_flow", {"detach": True}, "disconnected_parameters", FRAMEWORKS),
    ("overfit_one_batch", {"lr": 1e-5}, "underfitting", FRAMEWORKS),
    ("overfit_one_batch", {"lr": 50.0}, "exploding_gradients", FRAMEWORKS),
    ("lr_range", {"lr": 3.0}, "lr_too_high", FRAMEWORKS),
    ("seed_repeat", {"data_seed": None}, "nondeterminism", FRAMEWORKS),
    ("seed_repeat", {"unseeded_dropout": True}, "nondeterminism", ("torch",)),
]


# Only the frameworks each fault is planted in (unseeded dropout is a torch fault).
PLANTED = [(f, p, b, c) for p, b, c, frameworks in BROKEN for f in FRAMEWORKS if f in frameworks]


@pytest.mark.parametrize("framework,probe,bug,cause", PLANTED,
                         ids=[f"{f}-{p}-{c}-{next(iter(b))}" for f, p, b, c in PLANTED])
def test_probe_reports_the_planted_fault(framework, probe, bug, cause):
    report = run(setup_for(framework, **bug), only=[probe])
    assert cause in reported(report), report.text()


@pytest.mark.parametrize("framework,lr", [("torch", 1e-4), ("flax", 5e-5)])
def test_lr_range_calls_a_rate_that_moves_nothing_too_low_but_does_not_fail_the_run(framework, lr):
    # Adam at these rates moves the loss by under 1% in 12 steps (torch 0.995, flax 0.993 of the
    # start) where 100x the rate takes it to about 0.6: possible, not likely, from so short a sweep.
    report = run(setup_for(framework, lr=lr), only=["lr_range"])
    assert [(f.id, f.bucket) for f in report.findings] == [("lr_too_low", "possible")]
    assert not report.failed


@pytest.fixture(scope="module", params=FRAMEWORKS)
def healthy_run(request):
    setup = setup_for(request.param)
    return request.param, setup, run(setup)


def test_healthy_twin_passes_every_probe(healthy_run):
    framework, _, report = healthy_run
    assert [r.probe for r in report.results] == list(PROBES)
    assert reported(report) == set(), report.text()
    assert not report.failed
    assert all(r.status == "ok" for r in report.results), report.text()


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_regression_with_matching_shapes_passes_output_loss(framework):
    report = run(setup_for(framework, regression=True, target_column=True), only=["output_loss", "init_loss"])
    # Both probes ran to the end (a probe that never ran would report nothing either).
    assert [(r.probe, r.status) for r in report.results] == [("output_loss", "ok"), ("init_loss", "ok")], report.text()
    assert reported(report) == set(), report.text()


def test_probes_leave_the_given_model_and_optimizer_unchanged():
    torch = pytest.importorskip("torch")
    setup = torch_setup()
    model, optimizer = setup["model"], setup["optimizer"]
    x, y = next(iter(setup["train_batches"]))
    optimizer.zero_grad()
    setup["loss_fn"](model(x), y).backward()
    optimizer.step()  # an optimizer with state (Adam moments), as in a resumed run
    before = {k: v.clone() for k, v in model.state_dict().items()}
    moments = [s["exp_avg"].clone() for s in optimizer.state.values()]
    rng_state, threads = torch.get_rng_state(), torch.get_num_threads()
    np_state = np.random.get_state()[1].copy()
    report = run(setup)
    assert report.steps > 50  # the probes trained (their copies)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(torch.equal(m, s["exp_avg"]) for m, s in zip(moments, optimizer.state.values()))
    assert all(group["lr"] == 1e-2 for group in optimizer.param_groups)
    assert torch.equal(torch.get_rng_state(), rng_state) and torch.get_num_threads() == threads
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert "not changed" in report.text()


def test_flax_model_is_not_changed():
    import jax
    from flax import nnx

    setup = flax_setup(lr=3.0)
    before = jax.tree.map(np.array, nnx.state(setup["model"], nnx.Param))
    report = run(setup, only=["lr_range", "overfit_one_batch"])
    assert "lr_too_high" in reported(report)
    after = nnx.state(setup["model"], nnx.Param)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def test_a_too_high_learning_rate_explains_the_exploding_one_batch_fit():
    pytest.importorskip("torch")
    report = run(torch_setup(lr=50.0), only=["overfit_one_batch", "lr_range"])
    d = report.diagnosis()
    assert d.top.id == "lr_too_high"
    assert d.cause("exploding_gradients").suppressed_by == "lr_too_high"


def test_a_probe_whose_step_raises_reports_the_error_as_a_finding():
    pytest.importorskip("torch")
    report = run(torch_setup(label_offset=1), only=["overfit_one_batch"])  # label 4 of 4 outputs: torch raises
    (result,) = report.results
    assert result.status == "error"
    assert reported(report) == {"loss_output_mismatch"}
    assert "out of bounds" in report.findings[0].evidence[0]


def test_a_batch_that_is_not_inputs_and_targets_is_refused():
    pytest.importorskip("torch")
    setup = torch_setup()
    with pytest.raises(TypeError, match=r"a batch must be \(inputs, targets\)"):
        preflight(setup["model"], setup["loss_fn"], setup["optimizer"], [np.zeros((4, 8))])


def test_a_tiny_budget_stops_the_long_probes_and_says_so():
    pytest.importorskip("torch")
    report = run(torch_setup(lr=1e-5), only=["overfit_one_batch"], budget_s=0.05)
    (result,) = report.results
    assert result.status == "stopped"
    text = report.text()  # "and says so": the probe line and its evidence name the stop
    assert "overfit_one_batch  stopped" in text and "before the budget ran out" in text, text
    assert all(f.certainty < 0.6 for f in result.findings)  # a stopped probe does not fail the run
    assert not report.failed


def test_preflight_docstring_examples_run():
    import doctest
    import importlib
    import pkgutil

    import sys

    import diag.preflight  # noqa: F401

    pytest.importorskip("torch")
    failures, attempted = [], 0
    for info in pkgutil.iter_modules(sys.modules["diag.preflight"].__path__):
        module = importlib.import_module(f"diag.preflight.{info.name}")
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        attempted += result.attempted
        if result.failed:
            failures.append(info.name)
    assert failures == []
    assert attempted > 0, "no docstring example was found in diag.preflight: the test ran nothing"


def test_the_core_imports_no_framework():
    import subprocess
    import sys

    code = "import sys, diag.preflight, diag.cli.preflight_cmd, diag.targets; print(sorted({'torch', 'jax', 'flax'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_diag_preflight_is_callable_as_the_issue_names_it(tmp_path):
    pytest.importorskip("torch")
    import diag

    setup = torch_setup(lr=3.0)
    report = diag.preflight(setup["model"], setup["loss_fn"], setup["optimizer"], setup["train_batches"],
                            budget_s=20, only=["lr_range"], trace=tmp_path / "run.jsonl")
    assert [f.id for f in report.findings] == ["lr_too_high"]
    checks = diag.load_trace(tmp_path / "run.jsonl").checks
    assert [(c.name, c.target, c.passed) for c in checks] == [
        ("preflight.lr_range", "lr_range", False), ("preflight.lr_range", "lr_too_high", False)]


def test_the_tui_shows_preflight_findings_unchanged(tmp_path):
    """The TUI's cause table, given the preflight's diagnosis, lists the finding like any cause."""
    import asyncio

    pytest.importorskip("torch")
    from diag.tui import make_app
    from diag.tui.diagnosing import DiagnosisOutcome
    from tests.tui_screen import screen_text, settle
    from tests.tui_traces import write_run

    setup = torch_setup(detach=True)
    report = run(setup, only=["gradient_flow"], budget_s=20)
    # The preflight's check records joined to the trace of the run it came before.
    path = report.write_trace(write_run(tmp_path / "run.jsonl", lr=0.1, steps=20, run_id="run"))

    async def scenario():
        app = make_app(path, diagnose=lambda trace: DiagnosisOutcome(diagnosis=report.diagnosis(), steps=0))
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, condition=lambda a: a.outcome is not None and a.outcome.causes)
            assert app.outcome.causes[0].id == "disconnected_parameters"
            assert "disconnected_parameters" in screen_text(app)

    asyncio.run(scenario())
