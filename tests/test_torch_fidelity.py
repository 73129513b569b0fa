"""The PyTorch trace is the truth of the run: ordinary loops (as PyTorch's tutorials write them)
with the recorder's two lines, checked against what the run really did."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from diag.adapters.torch import TorchRecorder  # noqa: E402
from diag.trace import load_trace  # noqa: E402
from diag.trace.records import Data, Header, NoteEvent  # noqa: E402


def _train(model, opt, rec, steps, x, y, loss_fn):
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        rec.record(loss, labels=y)


@pytest.mark.parametrize("wrong,layer,module_type,shapes,dtypes,error", [
    ("shape", "2", "Linear", [[8, 8]], ["float32"], r"shapes cannot be multiplied \(8x8 and 16x2\)"),
    ("dtype", "0", "Linear", [[8, 4]], ["float64"], "must have the same dtype"),
])
def test_an_exception_names_the_module_and_the_shapes_and_dtypes_it_was_called_with(
        tmp_path, wrong, layer, module_type, shapes, dtypes, error):
    torch.manual_seed(0)
    width = 16 if wrong == "shape" else 8  # the bug: the head expects 16 features, the hidden layer gives 8
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(width, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(8, 4, dtype=torch.float64 if wrong == "dtype" else torch.float32)
    with pytest.raises(RuntimeError, match=error):  # the planted bug, not some other failure
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


class SequenceClassifier(nn.Module):
    """A GRU encoder, self-attention over its states, a linear head: the tutorial shapes."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(3, 8, batch_first=True)
        self.attn = nn.MultiheadAttention(8, num_heads=2, batch_first=True)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        states, _ = self.gru(x)
        mixed, _ = self.attn(states, states, states)
        return self.head(mixed[:, -1])


def test_recurrent_and_attention_layers_get_statistics_of_their_main_output(tmp_path):
    torch.manual_seed(0)
    model = SequenceClassifier()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(16, 5, 3), torch.randint(0, 2, (16,))
    with torch.no_grad():
        states = model.gru(x)[0]
        mixed = model.attn(states, states, states)[0]
    with TorchRecorder(model, opt, tmp_path / "run.jsonl", capture_crashes=False) as rec:
        _train(model, opt, rec, 2, x, y, F.cross_entropy)
    trace = load_trace(tmp_path / "run.jsonl")
    elements = {layer.name: layer.output_element for layer in trace.header.layers}
    assert elements["gru"] == "output[0]" and elements["attn"] == "output[0]" and elements["head"] is None
    for name, reference in (("gru", states), ("attn", mixed)):
        assert trace.layer_series("activations.mean", name).values[0] == pytest.approx(reference.mean().item(), rel=1e-4)
        assert trace.layer_series("activations.std", name).values[0] == pytest.approx(reference.std(unbiased=False).item(), rel=1e-3)


class Log(nn.Module):
    """A parameter-free module: log of the features (NaN for the negative ones)."""

    def forward(self, x):
        return torch.log(x)


@pytest.mark.parametrize("costly_every", [1, 25])
def test_a_nan_born_in_a_parameter_free_module_is_blamed_on_it_not_on_the_next_layer(tmp_path, costly_every):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), Log(), nn.Linear(8, 2), nn.ReLU(), nn.Linear(2, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    with TorchRecorder(model, opt, tmp_path / "run.jsonl", capture_crashes=False, costly_every=costly_every) as rec:
        _train(model, opt, rec, 3, x, y, F.cross_entropy)  # finite: log of a sigmoid is negative, not NaN
        _train(model, opt, rec, 1, x * 0 - 1e5, y, lambda out, t: F.cross_entropy(out, t))  # sigmoid -> 0, log -> -inf
    (event,) = load_trace(tmp_path / "run.jsonl").events_of("nonfinite")
    assert (event.step, event.tensor, event.layer, event.module_type) == (3, "activation", "2", "Log")


def test_the_header_is_on_disk_after_the_first_forward_pass_before_the_first_step(tmp_path):
    path = tmp_path / "run.jsonl"
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with TorchRecorder(model, opt, path, capture_crashes=False) as rec:
        logits = model(torch.randn(8, 4))
        header = Header.model_validate_json(path.read_text().splitlines()[0])  # a run killed now keeps it
        loss = F.cross_entropy(logits, torch.randint(0, 2, (8,)))
        loss.backward()
        opt.step()
        rec.record(loss)
    assert [layer.name for layer in header.layers] == ["0", "2"] and header.layers[0].activation == "relu"
    assert sum('"kind":"header"' in line for line in path.read_text().splitlines()) == 1
