"""The PyTorch recorder without torch's private fused calls: the public per-tensor path writes the
same trace. ``torch._foreach_*`` are private and may go away or change their arguments in any
release; the recorder then falls back to the public operations (adapters/torch/_foreach.py)."""

from __future__ import annotations

import orjson
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from diag.adapters.torch import TorchRecorder, _foreach  # noqa: E402
from diag.trace import load_trace  # noqa: E402

FUSED = ("_foreach_norm", "_foreach_mul", "_foreach_copy_", "_foreach_sub_")
# Fields that depend on the clock, not on the run.
CLOCK = ("time", "step_time", "data_wait_time")


def _record(path, make_opt, costly_every, steps=6, dtype=torch.float32):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)).to(dtype)
    opt = make_opt(model)
    g = torch.Generator().manual_seed(1)
    with TorchRecorder(model, opt, path, costly_every=costly_every, task="classification", num_classes=3,
                       capture_crashes=False) as rec:
        for _ in range(steps):
            x, y = torch.randn(8, 6, generator=g).to(dtype), torch.randint(0, 3, (8,), generator=g)
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            rec.record(loss, labels=y)
    steps = [orjson.loads(line) for line in path.read_text().splitlines() if b'"kind":"step"' in line.encode()]
    for record in steps:
        for field in CLOCK:
            record.pop(field, None)
    return steps


OPTIMIZERS = {
    "adam": lambda m: torch.optim.Adam(m.parameters(), lr=1e-2),  # update norms from a parameter snapshot
    "sgd_momentum": lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9),  # from the buffers
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("costly_every", [1, 2])  # 1: the snapshot is kept between steps; 2: made afresh
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_without_the_private_fused_calls_the_trace_is_the_same(tmp_path, monkeypatch, optimizer, costly_every, dtype):
    fused = _record(tmp_path / "fused.jsonl", OPTIMIZERS[optimizer], costly_every, dtype=dtype)
    for name in FUSED:
        monkeypatch.delattr(torch, name)
    assert all(getattr(torch, name, None) is None for name in FUSED)
    public = _record(tmp_path / "public.jsonl", OPTIMIZERS[optimizer], costly_every, dtype=dtype)
    assert public == fused
    trace = load_trace(tmp_path / "public.jsonl")
    assert not trace.problems
    assert trace.layer_series("layers.update_norm", "0").steps.tolist() == list(range(0, 6, costly_every))


def test_a_fused_call_that_refuses_its_arguments_falls_back_to_the_public_path(monkeypatch):
    tensors = [torch.randn(5, 3), torch.randn(7, dtype=torch.float64), torch.zeros(2), torch.randn(4).bfloat16()]
    expected = [float(torch.linalg.vector_norm(t, 2, dtype=None if t.dtype == torch.float64 else torch.float32).float())
                for t in tensors]
    assert [float(n) for n in _foreach.norms(tensors)] == expected

    def moved(*args, **kwargs):  # as a release that changed the signature would answer
        raise TypeError("_foreach_norm(): argument 'ord' must be Number, not int")

    monkeypatch.setattr(torch, "_foreach_norm", moved)
    monkeypatch.setattr(torch, "_foreach_sub_", moved)
    assert [float(n) for n in _foreach.norms(tensors)] == expected
    targets = [t.clone() for t in tensors]
    _foreach.sub_(targets, tensors)
    assert all(not t.any() for t in targets)


def test_a_float64_model_is_measured_in_float64(tmp_path):
    # float32 is no accumulation type for float64 tensors: torch refuses the narrowing, and the
    # recorder used to fail on the first step of a float64 model.
    torch.manual_seed(0)
    model = nn.Linear(6, 3).double()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(32, 6, dtype=torch.float64), torch.randint(0, 3, (32,))
    with TorchRecorder(model, opt, tmp_path / "f64.jsonl", costly_every=1, capture_crashes=False) as rec:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        expected = float(torch.sqrt(sum(p.grad.pow(2).sum() for p in model.parameters())))
        opt.step()
        rec.record(loss, labels=y)
    trace = load_trace(tmp_path / "f64.jsonl")
    assert trace.header.param_dtype == "float64"
    assert trace.series("grad_norm").values[0] == pytest.approx(expected, rel=1e-6)
