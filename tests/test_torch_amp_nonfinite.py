"""Mixed precision and non-finite values are recorded as they happened."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from diag.adapters.torch import TorchRecorder  # noqa: E402
from diag.trace import load_trace  # noqa: E402


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))


def _data(n=32):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 6, generator=g)
    return x, (x[:, 0] > 0).long()


def test_autocast_dtype_goes_into_the_header_and_bf16_activations_are_measured(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data()
    with TorchRecorder(model, opt, tmp_path / "bf16.jsonl", costly_every=1, capture_crashes=False) as rec:
        for _ in range(2):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(x)
                hidden = model[1](model[0](x))
                assert hidden.dtype == torch.bfloat16
            loss = F.cross_entropy(out.float(), y)
            loss.backward()
            expected_zero = float((hidden == 0).float().mean())
            opt.step()
            rec.record(loss, labels=y)
    trace = load_trace(tmp_path / "bf16.jsonl")
    assert trace.header.compute_dtype == "bfloat16"
    assert trace.header.param_dtype == "float32"
    assert trace.header.layers[0].compute_dtype == "bfloat16"
    assert trace.layer_matrix("activations.zero_fraction").values[-1, 0] == pytest.approx(expected_zero)


def test_gradscaler_overflow_backs_off_the_scale_and_skips_steps(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    # A planted overflow: a loss of ~700 scaled by 2**120 exceeds float32's range, so the scaler
    # skips steps and halves the scale until the scaled loss and gradients fit.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**120, growth_interval=1000)
    x, y = _data()
    used_scales, skipped, grad_norms = [], [], []
    with TorchRecorder(model, opt, tmp_path / "amp.jsonl", scaler=scaler, capture_crashes=False) as rec:
        for _ in range(8):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                loss = 1000 * F.cross_entropy(model(x).float(), y)
            used_scales.append(scaler.get_scale())
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            grad_norms.append(math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in model.parameters())))
            before = model[0].weight.detach().clone()
            scaler.step(opt)
            scaler.update()
            skipped.append(bool(torch.equal(before, model[0].weight)))
            rec.record(loss, labels=y)
    trace = load_trace(tmp_path / "amp.jsonl")
    assert trace.header.loss_scaling == "dynamic"
    assert trace.series("loss_scale").values.tolist() == used_scales
    assert trace.series("skipped").values.tolist() == skipped
    assert skipped[0] and not skipped[-1], "the planted overflow must skip the first steps only"
    assert used_scales[1] == used_scales[0] / 2
    recorded = trace.series("grad_norm").values
    assert not np.isfinite(recorded[0]) and not math.isfinite(grad_norms[0])
    assert recorded[-1] == pytest.approx(grad_norms[-1], rel=1e-5)
    (event,) = trace.events_of("nonfinite")
    assert (event.step, event.tensor, event.layer) == (0, "gradient", "4")


def _train_with(tmp_path, name, plant, steps=5, loss_fn=None, localize="auto"):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data()
    path = tmp_path / f"{name}.jsonl"
    with TorchRecorder(model, opt, path, costly_every=100, localize=localize, capture_crashes=False) as rec:
        for step in range(steps):
            xb = plant(step, model, x.clone())
            opt.zero_grad()
            out = model(xb)
            loss = (loss_fn if loss_fn is not None and step == 3 else F.cross_entropy)(out, y)
            loss.backward()
            opt.step()
            rec.record(loss, labels=y)
    return load_trace(path)


def test_nan_in_the_input_batch_is_located_in_the_input(tmp_path):
    def plant(step, model, x):
        if step == 2:
            x[5, 1] = float("nan")
        return x

    trace = _train_with(tmp_path, "input", plant)
    (event,) = trace.events_of("nonfinite")
    assert (event.step, event.tensor, event.layer) == (2, "input", None)
    # Input statistics are costly-interval statistics, but a bad step always gets them.
    counts = trace.series("input.nonfinite")
    assert dict(zip(counts.steps.tolist(), counts.values.tolist()))[2] == 1


@pytest.mark.parametrize("localize", ["replay", "hold"])
def test_overflowing_layer_is_named_first_in_forward_order_although_every_gradient_is_nan(tmp_path, localize):
    def plant(step, model, x):
        if step == 3:
            with torch.no_grad():
                model[2].weight[0] = 3e38  # layer "2" overflows; layers after it and every gradient follow
        return x

    trace = _train_with(tmp_path, "overflow", plant, localize=localize)
    assert trace.header.recording["localize"] == localize
    (event,) = trace.events_of("nonfinite")
    assert (event.step, event.tensor, event.layer) == (3, "activation", "2")
    flags = trace.layer_matrix("layers.grad_nonfinite")
    assert flags.values[flags.steps.tolist().index(3)].tolist() == [1.0, 1.0, 1.0]


def test_log_of_zero_in_the_loss_is_located_in_the_loss(tmp_path):
    def log_zero_loss(out, y):
        p = torch.softmax(out, -1).gather(1, y[:, None]) * 0
        return -torch.log(p).mean()

    trace = _train_with(tmp_path, "loss", lambda step, model, x: x, loss_fn=log_zero_loss)
    (event,) = trace.events_of("nonfinite")
    assert (event.step, event.tensor) == (3, "loss")
    assert math.isinf(trace.series("loss").values[3])
    assert trace.events_of("nonfinite")[0].step == 3  # later NaN steps do not add events
