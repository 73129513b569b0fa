"""The PyTorch recorder writes numbers that match independent references from real training."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from diag.adapters.torch import TorchRecorder  # noqa: E402
from diag.trace import load_trace  # noqa: E402


class Net(nn.Module):
    """Registration order (head first) differs from forward order (body, then head)."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(16, 3)
        self.body = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh())

    def forward(self, x):
        return self.head(self.body(x))


LAYERS = ["body.0", "body.2", "head"]


def _data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def _layer_params(model):
    return [list(model.body[0].parameters()), list(model.body[2].parameters()), list(model.head.parameters())]


def _norm(tensors):
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))


def _train(tmp_path, make_opt, steps=6, zero_grad=True, costly_every=1, name="run", **options):
    """Train Net for a few steps, recording, and compute the references beside the recorder."""
    torch.manual_seed(0)
    model = Net()
    opt = make_opt(model)
    path = tmp_path / f"{name}.jsonl"
    x, y = _data()
    refs = []
    with TorchRecorder(model, opt, path, costly_every=costly_every, task="classification", num_classes=3,
                       **options) as rec:
        for step in range(steps):
            xb, yb = x[step * 8 % 64 :][:8], y[step * 8 % 64 :][:8]
            if zero_grad:
                opt.zero_grad()
            out = model(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            layers = _layer_params(model)
            before = [[p.detach().clone() for p in ps] for ps in layers]
            ref = {
                "loss": float(loss.detach()),
                "grad": [_norm([p.grad for p in ps]) for ps in layers],
                "param": [_norm(ps) for ps in before],
                "z0": model.body[0](xb).detach(),
                "z2": model.body[2](model.body[1](model.body[0](xb))).detach(),
                "relu": model.body[1](model.body[0](xb)).detach(),
                "tanh": model.body(xb).detach(),
                "logits": out.detach(),
                "x": xb,
                "y": yb,
            }
            opt.step()
            ref["update"] = [
                _norm([a.detach() - b for a, b in zip(ps, bs)]) for ps, bs in zip(layers, before)
            ]
            refs.append(ref)
            rec.record(loss, labels=yb)
    return load_trace(path), refs, rec


@pytest.fixture(scope="module")
def adam_run(tmp_path_factory):
    return _train(tmp_path_factory.mktemp("adam"), lambda m: torch.optim.Adam(m.parameters(), lr=1e-2))


def test_header_lists_layers_in_forward_order_with_their_activations(adam_run):
    trace, _, _ = adam_run
    assert not trace.problems  # every line the recorder wrote passes the validating reader
    header = trace.header
    assert [layer.name for layer in header.layers] == LAYERS
    assert [layer.activation for layer in header.layers] == ["relu", "tanh", None]
    assert [layer.is_output for layer in header.layers] == [False, False, True]
    assert header.layers[0].params[0].shape == [16, 6]
    assert header.framework == "torch" and header.optimizer.name == "adam"
    assert header.optimizer.hyperparameters["lr"] == 1e-2
    assert header.param_count == sum(p.numel() for p in Net().parameters())
    assert header.param_dtype == header.compute_dtype == "float32"
    assert header.recording["update_method"] == "snapshot"


def test_loss_and_gradient_norms_match_direct_computation(adam_run):
    trace, refs, _ = adam_run
    assert np.allclose(trace.series("loss").values, [r["loss"] for r in refs], rtol=1e-6)
    grads = trace.layer_matrix("layers.grad_norm").values
    assert np.allclose(grads, [r["grad"] for r in refs], rtol=1e-5)
    total = [math.sqrt(sum(g * g for g in r["grad"])) for r in refs]
    assert np.allclose(trace.series("grad_norm").values, total, rtol=1e-5)


def test_adam_update_ratios_match_parameter_snapshots(adam_run):
    trace, refs, _ = adam_run
    ratios = trace.layer_matrix("layers.update_ratio").values
    expected = [[u / p for u, p in zip(r["update"], r["param"])] for r in refs]
    assert np.allclose(ratios, expected, rtol=1e-4)
    assert np.allclose(trace.layer_matrix("layers.param_norm").values, [r["param"] for r in refs], rtol=1e-5)


def test_activation_statistics_match_layer_outputs_and_their_nonlinearities(adam_run):
    trace, refs, _ = adam_run
    zero = trace.layer_matrix("activations.zero_fraction")
    mean = trace.layer_matrix("activations.mean").values
    std = trace.layer_matrix("activations.std").values
    sat = trace.layer_matrix("activations.saturation_fraction")
    for i, r in enumerate(refs):
        relu, tanh, outputs = r["relu"], r["tanh"], (r["z0"], r["z2"], r["logits"])
        # mean and std describe each layer's own output (before its nonlinearity, as in Flax);
        # zero and saturation fractions describe the nonlinearity's output.
        assert mean[i].tolist() == pytest.approx([float(t.mean()) for t in outputs], rel=1e-5)
        assert std[i].tolist() == pytest.approx([float(t.std(correction=0)) for t in outputs], rel=1e-5)
        assert zero.values[i, 0] == pytest.approx(float((relu == 0).float().mean()))
        assert sat.values[i, 1] == pytest.approx(float((tanh.abs() >= 1 - 1e-3).float().mean()))
    # Statistics that do not apply are left unmeasured, not recorded as zero.
    assert np.isnan(zero.values[:, 1:]).all() and np.isnan(sat.values[:, [0, 2]]).all()


def test_input_and_label_statistics_describe_each_batch(adam_run):
    trace, refs, _ = adam_run
    assert np.allclose(trace.series("input.mean").values, [float(r["x"].mean()) for r in refs], rtol=1e-5)
    assert np.allclose(trace.series("input.max").values, [float(r["x"].max()) for r in refs])
    entropy = []
    for r in refs:
        p = torch.bincount(r["y"], minlength=3).double() / len(r["y"])
        entropy.append(float(-(p[p > 0] * p[p > 0].log()).sum()))
    assert np.allclose(trace.series("labels.label_entropy").values, entropy, rtol=1e-5)


def test_sgd_momentum_update_ratio_is_read_from_the_optimizer_state_exactly(tmp_path):
    trace, refs, rec = _train(
        tmp_path, lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3), steps=4
    )
    assert trace.header.recording["update_method"] == "sgd_momentum"
    expected = [r["update"] for r in refs]
    assert np.allclose(trace.layer_matrix("layers.update_norm").values, expected, rtol=1e-4)


def test_plain_sgd_update_is_learning_rate_times_gradient(tmp_path):
    trace, refs, _ = _train(tmp_path, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), steps=3)
    assert trace.header.recording["update_method"] == "sgd_grad"
    assert np.allclose(trace.layer_matrix("layers.update_norm").values, [r["update"] for r in refs], rtol=1e-4)


def test_costly_statistics_are_recorded_only_at_the_interval(tmp_path):
    trace, _, _ = _train(tmp_path, lambda m: torch.optim.Adam(m.parameters(), lr=1e-3), steps=7, costly_every=3)
    assert trace.series("loss").steps.tolist() == list(range(7))
    assert trace.series("grad_norm").steps.tolist() == list(range(7))
    assert trace.layer_series("layers.update_ratio", "head").steps.tolist() == [0, 3, 6]
    assert trace.layer_series("activations.mean", "head").steps.tolist() == [0, 3, 6]


def test_gradient_norms_can_be_measured_at_their_own_interval(tmp_path):
    trace, refs, _ = _train(tmp_path, lambda m: torch.optim.Adam(m.parameters(), lr=1e-3), steps=7,
                            costly_every=5, grad_every=2)
    assert trace.series("loss").steps.tolist() == list(range(7))
    grads = trace.series("grad_norm")
    assert grads.steps.tolist() == [0, 2, 4, 5, 6]
    expected = [math.sqrt(sum(g * g for g in refs[s]["grad"])) for s in grads.steps]
    assert np.allclose(grads.values, expected, rtol=1e-5)


def test_missing_zero_grad_shows_as_gradient_norm_growing_with_the_step(tmp_path):
    make_opt = lambda m: torch.optim.SGD(m.parameters(), lr=1e-3)  # noqa: E731
    acc, acc_refs, _ = _train(tmp_path, make_opt, steps=8, zero_grad=False, name="nozero")
    ok, _, _ = _train(tmp_path, make_opt, steps=8, zero_grad=True, name="zero")
    grown = acc.series("grad_norm").values
    # The recorder sees the accumulated gradient the optimizer used, not this batch's gradient.
    assert np.allclose(acc.layer_matrix("layers.grad_norm").values, [r["grad"] for r in acc_refs], rtol=1e-5)
    assert np.all(np.diff(grown) > 0) and grown[-1] > 4 * grown[0]
    healthy = ok.series("grad_norm").values
    assert healthy[-1] < 2 * healthy[0]


def test_gradient_accumulation_is_measured_once_at_the_optimizer_step(tmp_path):
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data()
    with TorchRecorder(model, opt, tmp_path / "acc.jsonl", capture_crashes=False) as rec:
        opt.zero_grad()
        for half in (slice(0, 8), slice(8, 16)):
            F.cross_entropy(model(x[half]), y[half]).backward()
        reference = _norm([p.grad for p in model.parameters()])
        opt.step()
        rec.record(0.0)
    assert load_trace(tmp_path / "acc.jsonl").series("grad_norm").values[0] == pytest.approx(reference, rel=1e-5)


def test_unused_layer_is_listed_with_zero_gradient(tmp_path):
    class WithUnused(Net):
        def __init__(self):
            super().__init__()
            self.unused = nn.Linear(3, 3)

    torch.manual_seed(0)
    model = WithUnused()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _data()
    with TorchRecorder(model, opt, tmp_path / "u.jsonl", capture_crashes=False) as rec:
        for _ in range(2):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            rec.record(loss)
    trace = load_trace(tmp_path / "u.jsonl")
    assert trace.layer_names == (*LAYERS, "unused")
    grads = trace.layer_matrix("layers.grad_norm").values
    assert (grads[:, 3] == 0).all() and (grads[:, :3] > 0).all()
    assert (trace.layer_matrix("layers.update_norm").values[:, 3] == 0).all()


def test_step_not_called_is_recorded_as_skipped(tmp_path):
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data()
    with TorchRecorder(model, opt, tmp_path / "s.jsonl", capture_crashes=False) as rec:
        for _ in range(2):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            rec.record(loss)  # forgot opt.step()
    trace = load_trace(tmp_path / "s.jsonl")
    assert trace.series("skipped").values.tolist() == [True, True]


def test_eval_records_say_which_mode_the_model_was_in(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = _data()
    with TorchRecorder(model, opt, tmp_path / "e.jsonl", task="classification", capture_crashes=False) as rec:
        for _ in range(3):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            rec.record(loss, labels=y)
        train_eval = rec.evaluate_train_subset(x[:32], y[:32], F.cross_entropy)
        assert model.training  # restored
        model.eval()
        with torch.no_grad():
            own = F.cross_entropy(model(x[:32]), y[:32])
        rec.log_eval("val", own)
        model.train()
        in_train_mode = rec.evaluate("val", [(x[32:], y[32:])], F.cross_entropy, mode="train")
    trace = load_trace(tmp_path / "e.jsonl")
    splits = [(e.split, e.model_mode, e.step) for e in trace.evals]
    assert splits == [("train_eval", "eval", 2), ("val", "eval", 2), ("val", "train", 2)]
    assert train_eval.loss == pytest.approx(float(own), rel=1e-5)
    assert 0 <= train_eval.metrics["accuracy"] <= 1 and in_train_mode.examples == 32
    # The BatchNorm layer is a layer; its ReLU is attributed to it, not to the Linear before it.
    assert [(layer.name, layer.activation) for layer in trace.header.layers] == [
        ("0", None), ("1", "relu"), ("4", None)
    ]


def test_reused_activation_module_is_attributed_to_each_preceding_layer(tmp_path):
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.out = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)
            self.act = nn.ReLU()

        def forward(self, x):
            return self.out(self.act(self.b(self.act(self.a(x)))))

    torch.manual_seed(0)
    model = Shared()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data()
    with TorchRecorder(model, opt, tmp_path / "r.jsonl", capture_crashes=False) as rec:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        with torch.no_grad():
            h = torch.relu(model.a(x))
            expected = [float((h == 0).float().mean()), float((torch.relu(model.b(h)) == 0).float().mean())]
        opt.step()
        rec.record(loss)
    trace = load_trace(tmp_path / "r.jsonl")
    assert [layer.activation for layer in trace.header.layers] == ["relu", "relu", None]
    zero = trace.layer_matrix("activations.zero_fraction").values[0, :2]
    assert zero.tolist() == pytest.approx(expected, rel=1e-6)
    assert (zero > 0).all() and zero[0] != zero[1]


def test_inplace_relu_and_saturated_sigmoid_are_measured_before_and_after_the_nonlinearity(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(inplace=True), nn.Linear(16, 8), nn.Sigmoid(), nn.Linear(8, 3))
    with torch.no_grad():
        model[2].weight.mul_(50)  # drives most sigmoid units to their bounds
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = _data()
    with torch.no_grad():
        z0 = model[0](x)
        s = torch.sigmoid(model[2](torch.relu(z0)))
    with TorchRecorder(model, opt, tmp_path / "sat.jsonl", capture_crashes=False) as rec:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        rec.record(loss)
    trace = load_trace(tmp_path / "sat.jsonl")
    saturated = float(((s <= 1e-3) | (s >= 1 - 1e-3)).float().mean())
    assert saturated > 0.3
    assert trace.layer_matrix("activations.saturation_fraction").values[0, 1] == pytest.approx(saturated)
    # The in-place ReLU overwrote layer 0's output after its hook measured it.
    assert trace.layer_matrix("activations.mean").values[0, 0] == pytest.approx(float(z0.mean()), rel=1e-5)
    assert float(z0.mean()) < float(torch.relu(z0).mean())
    assert trace.layer_matrix("activations.zero_fraction").values[0, 0] == pytest.approx(float((z0 <= 0).float().mean()))


def test_learning_rate_is_the_one_the_step_used_even_after_the_scheduler_moved_it(tmp_path):
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD([{"params": model.body.parameters()}, {"params": model.head.parameters(), "lr": 0.5}], lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    x, y = _data()
    with TorchRecorder(model, opt, tmp_path / "lr.jsonl", capture_crashes=False) as rec:
        for _ in range(3):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
            rec.record(loss)
    trace = load_trace(tmp_path / "lr.jsonl")
    assert trace.series("lr").values.tolist() == [0.1, 0.05, 0.025]
    steps = [s for s in (r for r in open(tmp_path / "lr.jsonl")) if '"kind":"step"' in s]
    assert '"lr_per_group":[0.1,0.5]' in steps[0] and '"lr_per_group":[0.05,0.25]' in steps[1]


def test_time_spent_waiting_for_data_is_recorded(tmp_path):
    import time

    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data()
    with TorchRecorder(model, opt, tmp_path / "w.jsonl", capture_crashes=False) as rec:
        for step in range(3):
            if step == 2:
                time.sleep(0.2)  # a slow data loader
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            rec.record(loss)
    trace = load_trace(tmp_path / "w.jsonl")
    wait = trace.series("data_wait_time")
    assert wait.steps.tolist() == [1, 2]
    # The slow loader's sleep is a floor on the measured wait; the fast step's wait may be anything
    # below it on a busy machine, so compare the two rather than the fast one to a clock.
    assert wait.values[1] >= 0.2 and wait.values[1] > wait.values[0]
    assert trace.series("step_time").values[-1] >= 0.2


@pytest.mark.parametrize("inplace", [False, True])
def test_nonfinite_counts_of_layer_outputs_are_exact_on_every_bad_step(tmp_path, inplace):
    # On the CPU the hooks keep a layer's output only when its statistics are not finite: the
    # counts must still be exact on the first bad step (replayed) and on the later ones (not).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=inplace), nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _data(16)
    x = x[:, :4]
    with TorchRecorder(model, opt, tmp_path / "nan.jsonl", costly_every=1, capture_crashes=False) as rec:
        for step in range(4):
            if step == 2:
                with torch.no_grad():
                    model[0].weight[2] = float("nan")  # one unit of layer 0 turns NaN
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            rec.record(loss)
    trace = load_trace(tmp_path / "nan.jsonl")
    counts = trace.layer_matrix("activations.nonfinite").values
    # Step 2: one of layer 0's 8 units on 16 rows, and every output of layer 2, which mixes it in;
    # step 3: the NaN gradient has reached every parameter.
    assert counts.tolist() == [[0, 0], [0, 0], [16, 48], [128, 48]]
    (event,) = trace.events_of("nonfinite")
    assert (event.step, event.tensor, event.layer) == (2, "activation", "0")
