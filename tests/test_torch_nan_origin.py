"""Where the first NaN was born, in a PyTorch loop written as the PyTorch tutorials write it.

A functional op between two layers in the model's own ``forward`` (``torch.log`` of a sigmoid that
underflowed, a division by a zero row sum) makes the NaN: the trace blames the model's own code
after the last layer that returned finite outputs, not the next layer with parameters. The opt-in
replay names the operation and the line of this file; a NaN made in the backward pass
(the norm of a zero row) is named by ``torch.autograd.detect_anomaly``.
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from diag.adapters.torch import TorchRecorder
from diag.trace import load_trace


class LogNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.log(torch.sigmoid(self.fc1(x)))  # sigmoid underflows to 0 for huge inputs: -inf
        return self.fc2(h)


class DivNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8, bias=False)  # a zero batch gives zero rows
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        h = h / h.sum(dim=1, keepdim=True)  # 0/0 for an all-zero row
        return self.fc2(h)


class NormNet(nn.Module):
    """A finite forward pass whose backward is not: the hand-written norm of an all-zero row.
    The gradient reaching sqrt is 0 (the row is zero) and sqrt'(0) is inf: 0 * inf is NaN, born
    in sqrt's backward."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8, bias=False)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h / (1.0 + torch.sqrt((h * h).sum(dim=1, keepdim=True))))


LOG_LINE = inspect.getsourcelines(LogNet.forward)[1] + 1
DIV_LINE = inspect.getsourcelines(DivNet.forward)[1] + 2
NORM_LINE = inspect.getsourcelines(NormNet.forward)[1] + 2


def train(path, model, poison, at: int, *, replay: bool = False, costly_every: int = 25, steps: int = 4):
    """The tutorial loop (zero_grad, forward, loss, backward, step) with a recorder; batch ``at`` is poisoned."""
    torch.manual_seed(0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    with TorchRecorder(model, optimizer, path, capture_crashes=False, costly_every=costly_every,
                       replay_nonfinite=replay) as rec:
        for step in range(steps):
            x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
            if step == at:
                x = poison(x)
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            rec.record(loss, labels=y)
    return load_trace(path)


def huge(x):
    return x * 1e5


def zeros(x):
    return x * 0


@pytest.mark.parametrize("costly_every", [1, 25])
@pytest.mark.parametrize("model_class,poison", [(LogNet, huge), (DivNet, zeros)], ids=["log", "div"])
def test_a_nan_made_by_a_functional_op_between_layers_is_blamed_on_the_code_after_the_first(
        tmp_path, model_class, poison, costly_every):
    trace = train(tmp_path / "run.jsonl", model_class(), poison, 2, costly_every=costly_every)
    (event,) = trace.events_of("nonfinite")
    assert (event.step, event.tensor, event.layer, event.after) == (2, "activation", "root", "fc1"), event.message
    assert event.module_type == model_class.__name__
    assert not trace.events_of("nonfinite_replay")  # opt-in only


@pytest.mark.parametrize("model_class,poison,operation,line", [
    (LogNet, huge, "torch.log", LOG_LINE),
    (DivNet, zeros, "torch.Tensor.div", DIV_LINE),
], ids=["log", "div"])
def test_the_opt_in_replay_names_the_forward_operation_and_the_line_of_user_code(
        tmp_path, model_class, poison, operation, line):
    trace = train(tmp_path / "run.jsonl", model_class(), poison, 2, replay=True)
    (replay,) = trace.events_of("nonfinite_replay")
    assert replay.step == 2 and replay.operation.startswith(operation), replay.message
    assert replay.source == f"test_torch_nan_origin.py:{line} in forward", replay.source


def test_a_nan_made_in_the_backward_pass_is_named_by_detect_anomaly(tmp_path):
    trace = train(tmp_path / "run.jsonl", NormNet(), zeros, 2, replay=True)
    (replay,) = trace.events_of("nonfinite_replay")
    assert (replay.step, replay.tool, replay.operation) == (2, "torch.autograd.detect_anomaly",
                                                            "SqrtBackward0"), replay.message
    assert replay.source == f"test_torch_nan_origin.py:{NORM_LINE} in forward", replay.source
