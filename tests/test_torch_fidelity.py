"""The PyTorch trace is the truth of the run: ordinary loops (as PyTorch's tutorials write them)
with the recorder's two lines, checked against what the run really did."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from diag.adapters.torch import TorchRecorder  # noqa: E402
from diag.trace import load_trace  # noqa: E402
from diag.trace.records import Data, NoteEvent  # noqa: E402


def _train(model, opt, rec, steps, x, y, loss_fn):
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        rec.record(loss, labels=y)


@pytest.mark.parametrize("wrong,layer,module_type,shapes,dtypes", [
    ("shape", "2", "Linear", [[8, 8]], ["float32"]),
    ("dtype", "0", "Linear", [[8, 4]], ["float64"]),
])
def test_an_exception_names_the_module_and_the_shapes_and_dtypes_it_was_called_with(
        tmp_path, wrong, layer, module_type, shapes, dtypes):
    torch.manual_seed(0)
    width = 16 if wrong == "shape" else 8  # the bug: the head expects 16 features, the hidden layer gives 8
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(width, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 4, dtype=torch.float64 if wrong == "dtype" else torch.float32)
    with pytest.raises(RuntimeError):
        with TorchRecorder(model, opt, tmp_path / "run.jsonl", capture_crashes=False) as rec:
            _train(model, opt, rec, 2, x, torch.randint(0, 2, (8,)), F.cross_entropy)
    (event,) = load_trace(tmp_path / "run.jsonl").events_of("exception")
    assert (event.layer, event.module_type, event.input_shapes, event.input_dtypes) == (layer, module_type, shapes, dtypes)


def test_records_written_by_user_code_land_in_the_trace_in_order(tmp_path):
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    with TorchRecorder(model, opt, tmp_path / "run.jsonl", capture_crashes=False) as rec:
        rec.write(Data(split="train", size=8, num_features=4))
        _train(model, opt, rec, 2, x, y, F.cross_entropy)
        rec.write(NoteEvent(step=1, message="switched to shard 2"))
        _train(model, opt, rec, 1, x, y, F.cross_entropy)
    kinds = [line.split('"kind":"')[1].split('"')[0] for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert kinds == ["header", "data", "step", "step", "event", "step", "event"]


def _binary_data(n=256):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] > 0.5).float()  # 30% positives: "share of label 0" would read 0.69
    return x, y


@pytest.mark.parametrize("head,loss_fn,rule", [
    (lambda: nn.Linear(2, 1), nn.BCEWithLogitsLoss(), "logit>0"),
    (lambda: nn.Sequential(nn.Linear(2, 1), nn.Sigmoid()), nn.BCELoss(), "probability>0.5"),
])
def test_single_output_binary_classifier_accuracy_thresholds_its_output(tmp_path, head, loss_fn, rule):
    torch.manual_seed(0)
    model = head()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = _binary_data()
    with TorchRecorder(model, opt, tmp_path / "run.jsonl", capture_crashes=False, task="classification",
                       num_classes=2) as rec:
        for _ in range(150):
            opt.zero_grad()
            loss = loss_fn(model(x).squeeze(-1), y)
            loss.backward()
            opt.step()
            rec.record(loss)
        record = rec.evaluate("val", [(x, y)], lambda out, t: loss_fn(out.squeeze(-1), t))
    with torch.no_grad():
        out = model(x).squeeze(-1)
        expected = ((out > (0.5 if rule.startswith("probability") else 0.0)).float() == y).float().mean().item()
    assert record.accuracy_rule == rule
    assert record.metrics["accuracy"] == pytest.approx(expected) and expected > 0.9
    (written,) = load_trace(tmp_path / "run.jsonl").evals
    assert written.accuracy_rule == rule


def test_multi_label_accuracy_is_the_share_of_correct_label_decisions(tmp_path):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(256, 4, generator=g)
    y = torch.stack([x[:, 0] > 0, x[:, 1] > 1, x[:, 2] + x[:, 3] > 0], dim=1).float()
    model = nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    loss_fn = nn.BCEWithLogitsLoss()
    with TorchRecorder(model, opt, tmp_path / "run.jsonl", capture_crashes=False, task="classification",
                       num_classes=3) as rec:
        for _ in range(100):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            rec.record(loss)
        record = rec.evaluate("val", [(x[:128], y[:128]), (x[128:], y[128:])], loss_fn)
    with torch.no_grad():
        expected = ((model(x) > 0).float() == y).float().mean().item()
    assert record.accuracy_rule == "per_label logit>0"
    assert record.metrics["accuracy"] == pytest.approx(expected)
