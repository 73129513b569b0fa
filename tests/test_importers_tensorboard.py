"""TensorBoard event files written by torch's SummaryWriter, explained and imported by diag."""

from __future__ import annotations

import pytest

from tests.foreign_runs import SCENARIOS, assert_diagnosed_as, explain_json, run_cli, top_causes, training_curves

pytest.importorskip("torch")
pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install 'diag[tensorboard]')")


def write_tensorboard(folder, name: str, new_style: bool = False):
    """Log a real run's curves the way a PyTorch script does, with tags as people name them."""
    from torch.utils.tensorboard import SummaryWriter

    curves = training_curves(name)
    writer = SummaryWriter(str(folder))
    for point in curves.train:
        step = point["step"]
        writer.add_scalar("Loss/train", point["loss"], step, new_style=new_style)
        writer.add_scalar("grad_norm", point["grad_norm"], step, new_style=new_style)
        writer.add_scalar("train/accuracy", point["accuracy"], step, new_style=new_style)
        writer.add_scalar(f"lr-{curves.optimizer}", point["lr"], step, new_style=new_style)
    for point in curves.val:
        writer.add_scalar("Loss/val", point["loss"], point["step"], new_style=new_style)
        writer.add_scalar("Accuracy/val", point["accuracy"], point["step"], new_style=new_style)
    writer.close()
    return folder


@pytest.fixture(scope="module")
def runs_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb") / "runs"
    for name in SCENARIOS:
        write_tensorboard(root / name, name)
    return root


@pytest.mark.parametrize("name", SCENARIOS)
def test_explain_names_the_cause_of_each_real_tensorboard_run(runs_folder, name):
    code, diagnosis, err = explain_json(runs_folder / name)
    assert code == 0, err
    assert_diagnosed_as(diagnosis, name)


def test_a_folder_of_several_runs_lists_them_and_run_picks_one(runs_folder):
    code, out, err = run_cli("explain", runs_folder)
    assert code == 2 and out == ""
    assert "holds 3 runs; pick one with --run NAME" in err
    for name in SCENARIOS:
        assert f"  {name}  (tensorboard)" in err
    code, diagnosis, _ = explain_json(runs_folder, "--run", "diverging")
    assert code == 0 and top_causes(diagnosis)[0] in {"lr_too_high", "exploding_gradients"}


def test_explain_says_the_source_the_fields_and_what_it_could_not_check(runs_folder):
    code, out, _ = run_cli("explain", runs_folder / "healthy")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "diag: no cause found in healthy (150 steps)"
    assert lines[1] == f"imported from TensorBoard event files: {runs_folder / 'healthy'} (run healthy)"
    assert lines[2] == ("fields in the log: eval.val.loss, eval.val.metrics.accuracy, grad_norm, loss, lr, "
                        "metrics.accuracy")
    assert any(line.startswith("not checked (the log has no ") and "gradient checks" in line
               and line.endswith("incorrect_gradient") for line in lines)


def test_tui_refuses_to_follow_a_foreign_log(runs_folder):
    code, out, err = run_cli("tui", runs_folder / "healthy", "--follow")
    assert code == 2 and out == ""
    assert err.splitlines()[0] == (f"diag tui: {runs_folder / 'healthy'}: error: --follow watches diag traces; "
                                   "this is a foreign log")


def test_tensor_style_scalars_read_like_simple_values(tmp_path):
    from diag.adapters.importers import open_run

    old = open_run(write_tensorboard(tmp_path / "old", "healthy"))
    new = open_run(write_tensorboard(tmp_path / "new", "healthy", new_style=True))
    assert new.series_names() == old.series_names() and len(new.series_names()) == 6
    for name in new.series_names():
        assert (new.series(name).steps == old.series(name).steps).all()
        assert new.series(name).values == pytest.approx(old.series(name).values, rel=1e-6)


def test_import_writes_a_trace_that_explains_the_same(runs_folder, tmp_path):
    out = tmp_path / "diverging.jsonl"
    code, stdout, err = run_cli("import", runs_folder, "--run", "diverging", "-o", out)
    assert code == 0, err
    assert "tensorboard run diverging: 150 steps, 16 evaluations" in stdout
    from diag.adapters.importers import open_run
    from diag.trace import load_trace

    imported, loaded = open_run(runs_folder, run="diverging"), load_trace(out)
    assert loaded.series_names() == imported.series_names()
    assert (loaded.series("loss").values == imported.series("loss").values).all()
    assert loaded.header.recording["imported_from"] == "tensorboard"
    assert explain_json(out)[1]["causes"][0]["id"] == explain_json(runs_folder / "diverging")[1]["causes"][0]["id"]


def test_an_empty_event_file_exits_2_naming_it(tmp_path):
    empty = tmp_path / "events.out.tfevents.1.host"
    empty.write_bytes(b"")
    code, out, err = run_cli("explain", empty)
    assert code == 2 and out == ""
    assert err.strip().splitlines()[0] == (f"diag explain: {empty}: error: the TensorBoard log holds no readable "
                                           "events (empty or truncated)")
    assert "Traceback" not in err


def test_a_partly_corrupt_event_file_keeps_what_it_can_read_and_warns(runs_folder, tmp_path):
    source = next((runs_folder / "healthy").glob("events.out.tfevents.*"))
    data = bytearray(source.read_bytes())
    damaged = tmp_path / source.name
    cut = len(data) * 2 // 3
    data[cut:cut + 8] = b"\xff" * 8  # clobber a record two thirds in: its CRC no longer matches
    damaged.write_bytes(bytes(data))
    from diag.adapters.importers import open_run

    trace = open_run(damaged)
    full = open_run(source)
    assert 0 < trace.num_steps < full.num_steps
    warnings = [p for p in trace.problems if p.severity == "warning"]
    assert any("truncated or corrupted record" in p.message and p.path == str(damaged) for p in warnings)
    code, _, err = run_cli("explain", damaged)
    assert code == 0 and "truncated or corrupted record" in err


def test_a_killed_run_with_a_torn_last_record_loses_only_that_record(runs_folder, tmp_path):
    source = next((runs_folder / "overfitting").glob("events.out.tfevents.*"))
    torn = tmp_path / source.name
    torn.write_bytes(source.read_bytes()[:-5])
    from diag.adapters.importers import open_run

    trace, full = open_run(torn), open_run(source)
    # The last record is the final validation accuracy: every step and every other point survives.
    assert trace.num_steps == full.num_steps and len(trace.evals) == len(full.evals)
    accuracy = "eval.val.metrics.accuracy"
    assert len(trace.series(accuracy)) == len(full.series(accuracy)) - 1
    assert any("truncated or corrupted record" in p.message for p in trace.problems)


def write_vanishing_run(folder):
    """A real 10-layer sigmoid MLP whose script logs each parameter's gradient norm (``grad_norm/0.weight``)."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from torch.utils.tensorboard import SummaryWriter

    torch.set_num_threads(1)
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(20, 4, generator=generator)
    x = torch.randn(2048, 20, generator=generator)
    y = (x @ w).argmax(1)
    layers = [nn.Linear(20, 32), nn.Sigmoid()]
    for _ in range(8):
        layers += [nn.Linear(32, 32), nn.Sigmoid()]
    model = nn.Sequential(*layers, nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    writer = SummaryWriter(str(folder))
    for step in range(150):
        index = torch.randint(0, x.shape[0], (64,), generator=generator)
        loss = F.cross_entropy(model(x[index]), y[index])
        opt.zero_grad()
        loss.backward()
        writer.add_scalar("train/loss", loss.item(), step)
        for name, parameter in model.named_parameters():
            writer.add_scalar(f"grad_norm/{name}", parameter.grad.norm().item(), step)
        opt.step()
    writer.close()
    return folder, model


def test_per_layer_gradient_tags_become_layer_statistics_that_show_vanishing_gradients(tmp_path):
    folder, model = write_vanishing_run(tmp_path / "vanishing")
    code, diagnosis, err = explain_json(folder)
    assert code == 0, err
    assert top_causes(diagnosis)[0] == "vanishing_gradients"
    from diag.adapters.importers import open_run
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trace = open_run(folder)
    from torch import nn

    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert trace.layer_names == tuple(linear)  # forward order, one layer per weight+bias pair
    assert [layer.name for layer in trace.header.layers] == linear
    assert "grad_norm" not in trace.series_names() and not any(n.startswith("metrics.") for n in trace.series_names())
    # A layer's norm is the L2 norm over its parameters' norms, as tensorboard's own reader sees them.
    tags = EventAccumulator(str(folder)).Reload()
    weight, bias = (tags.Scalars(f"grad_norm/0.{p}")[-1].value for p in ("weight", "bias"))
    assert trace.layer_series("layers.grad_norm", "0").values[-1] == pytest.approx((weight ** 2 + bias ** 2) ** 0.5)
    code, out, _ = run_cli("explain", folder)
    assert "fields in the log: loss, layers.grad_norm (10 layers)" in out
    assert "per-layer gradients" not in out
