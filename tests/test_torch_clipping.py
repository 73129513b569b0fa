"""Gradient clipping leaves its evidence in the trace: the norm ``clip_grad_norm_`` saw, the bound,
and the norm the optimizer used, so a clipped healthy run reads apart from exploding gradients.

The loops are the PyTorch tutorial's (zero_grad, forward, loss, backward, clip, step), clipping
through the public function however it was imported.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import clip_grad as clip_module
from torch.nn.utils import clip_grad_norm_

from diag.adapters.torch import TorchRecorder
from diag.engine.facts import run_context
from diag.trace import load_trace

MAX_NORM = 0.5


def fit(path, clip):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    returned = []
    with TorchRecorder(model, optimizer, path, capture_crashes=False) as rec:
        for _ in range(6):
            x, y = torch.randn(32, 10) * 5, torch.randint(0, 3, (32,))
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            if clip is not None:
                returned.append(float(clip(model.parameters(), MAX_NORM)))
            optimizer.step()
            rec.record(loss, labels=y)
    return load_trace(path), returned


@pytest.mark.parametrize("clip", [clip_grad_norm_, lambda p, m: torch.nn.utils.clip_grad_norm_(p, max_norm=m)],
                         ids=["imported", "attribute"])
def test_the_raw_norm_the_bound_and_the_clipped_norm_are_recorded(tmp_path, clip):
    original = clip_module._clip_grads_with_norm_
    trace, returned = fit(tmp_path / "run.jsonl", clip)
    assert clip_module._clip_grads_with_norm_ is original  # nothing of the recorder is left in torch
    raw = trace.series("grad_norm_before_clip").values
    assert raw.tolist() == pytest.approx(returned, rel=1e-5)
    assert (raw > MAX_NORM).all()  # the test clips on every step
    assert trace.series("grad_norm").values.tolist() == pytest.approx([MAX_NORM] * len(raw), rel=1e-3)
    assert trace.header.optimizer.hyperparameters["grad_clip"] == MAX_NORM
    assert len(trace.headers) == 1
    assert run_context(trace)["clipped"] is True


def test_an_unclipped_run_records_no_clip(tmp_path):
    trace, _ = fit(tmp_path / "run.jsonl", None)
    assert "grad_clip" not in trace.header.optimizer.hyperparameters
    assert "grad_norm_before_clip" not in trace.series_names()
    assert run_context(trace)["clipped"] is False
