"""The Flax and PyTorch adapters write the same trace for the same training run.

One table of cases (optimizers) drives the same checks over both adapters: the same MLP shape
(6 -> 16 ReLU -> 16 tanh -> 3), the same data, the same initial weights copied from PyTorch into
Flax, every statistic measured every step. The traces must agree in structure (layers, header,
which series exist) and, within float32 tolerance, in every value, so that rules written against
one framework's traces hold for the other's.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from diag.adapters.flax import Recorder  # noqa: E402
from diag.adapters.torch import TorchRecorder  # noqa: E402
from diag.trace import load_trace  # noqa: E402

STEPS = 4
CASES = {
    "sgd": (lambda: optax.sgd(0.1), lambda params: torch.optim.SGD(params, lr=0.1)),
    "sgd_momentum": (lambda: optax.sgd(0.05, momentum=0.9), lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9)),
    "adam": (lambda: optax.adam(1e-2), lambda params: torch.optim.Adam(params, lr=1e-2)),
}
# Series both adapters must write, compared value by value.
SERIES = ["loss", "lr", "grad_norm", "param_norm", "update_norm", "input.mean", "input.std", "input.min",
          "input.max", "input.nonfinite", "labels.label_entropy"]
LAYER_SERIES = ["layers.grad_norm", "layers.param_norm", "layers.update_norm", "layers.update_ratio",
                "activations.mean", "activations.std", "activations.zero_fraction",
                "activations.saturation_fraction", "activations.nonfinite"]


class TorchMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.act1 = nn.Linear(6, 16), nn.ReLU()
        self.fc2, self.act2 = nn.Linear(16, 16), nn.Tanh()
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.act2(self.fc2(self.act1(self.fc1(x)))))


class FlaxMLP(nnx.Module):
    def __init__(self, rngs):
        self.fc1 = nnx.Linear(6, 16, rngs=rngs)
        self.fc2 = nnx.Linear(16, 16, rngs=rngs)
        self.head = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x):
        return self.head(jnp.tanh(self.fc2(nnx.relu(self.fc1(x)))))


def _data():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(STEPS, 16, 6)).astype(np.float32) * 2
    ys = rng.integers(0, 3, size=(STEPS, 16))
    return xs, ys


def _copy_weights(src: TorchMLP, dst: FlaxMLP) -> None:
    for name in ("fc1", "fc2", "head"):
        t, f = getattr(src, name), getattr(dst, name)
        f.kernel.set_value(jnp.asarray(t.weight.detach().numpy().T))  # torch (out, in) -> flax (in, out)
        f.bias.set_value(jnp.asarray(t.bias.detach().numpy()))


def _run_torch(path, make_opt, torch_model, xs, ys):
    opt = make_opt(torch_model.parameters())
    with TorchRecorder(torch_model, opt, path, costly_every=1, capture_crashes=False, task="classification",
                       num_classes=3) as rec:
        for x, y in zip(xs, ys):
            xb, yb = torch.from_numpy(x), torch.from_numpy(y)
            opt.zero_grad()
            loss = F.cross_entropy(torch_model(xb), yb)
            loss.backward()
            opt.step()
            rec.record(loss, labels=yb)
    return load_trace(path)


def _run_flax(path, make_tx, flax_model, xs, ys):
    rec = Recorder(path, flax_model, task="classification", num_classes=3, every=1, handle_signals=False)
    optimizer = nnx.Optimizer(flax_model, rec.wrap(make_tx()), wrt=nnx.Param)

    @rec.jit
    def train_step(model, optimizer, x, y):
        def loss_fn(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

        loss, grads = rec.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return rec.stats(optimizer, loss, batch=x, labels=y)

    with rec:
        for step, (x, y) in enumerate(zip(xs, ys)):
            rec.record(step, train_step(flax_model, optimizer, jnp.asarray(x), jnp.asarray(y)))
    return load_trace(path)


@pytest.fixture(scope="module", params=list(CASES))
def pair(request):
    return _run_case(request.param)


@functools.lru_cache(maxsize=None)
def _run_case(case: str):
    """Both adapters through one case of the table (each case runs once per session)."""
    make_tx, make_opt = CASES[case]
    folder = Path(tempfile.mkdtemp(prefix=f"parity-{case}-"))
    xs, ys = _data()
    torch.manual_seed(0)
    torch_model = TorchMLP()
    flax_model = FlaxMLP(nnx.Rngs(0))
    _copy_weights(torch_model, flax_model)
    flax_trace = _run_flax(folder / "flax.jsonl", make_tx, flax_model, xs, ys)
    torch_trace = _run_torch(folder / "torch.jsonl", make_opt, torch_model, xs, ys)
    return flax_trace, torch_trace


def test_headers_describe_the_same_model(pair):
    flax_trace, torch_trace = pair
    fh, th = flax_trace.header, torch_trace.header
    assert flax_trace.layer_names == torch_trace.layer_names == ("fc1", "fc2", "head")
    for fl, tl in zip(fh.layers, th.layers):
        assert (fl.type, fl.activation, fl.is_output) == (tl.type, tl.activation, tl.is_output)
        # Same tensors, each framework's layout: Flax kernels are PyTorch weights transposed.
        assert sorted(sorted(p.shape) for p in fl.params) == sorted(sorted(p.shape) for p in tl.params)
    assert fh.param_count == th.param_count
    assert fh.param_dtype == th.param_dtype
    # Without mixed precision Flax leaves compute_dtype unset and PyTorch writes the param dtype.
    assert (fh.compute_dtype or fh.param_dtype) == (th.compute_dtype or th.param_dtype)
    assert (fh.task, fh.num_classes) == (th.task, th.num_classes)
    assert fh.optimizer.name == th.optimizer.name


def test_both_traces_hold_the_same_series_for_every_step(pair):
    flax_trace, torch_trace = pair
    for name in SERIES + LAYER_SERIES:
        assert flax_trace.has(name) and torch_trace.has(name), name
    assert flax_trace.series("loss").steps.tolist() == torch_trace.series("loss").steps.tolist() == list(range(STEPS))


@pytest.mark.parametrize("name", SERIES)
def test_step_values_agree(pair, name):
    flax_trace, torch_trace = pair
    f, t = flax_trace.series(name), torch_trace.series(name)
    assert f.steps.tolist() == t.steps.tolist()
    np.testing.assert_allclose(t.values, f.values, rtol=2e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("name", LAYER_SERIES)
def test_per_layer_values_agree(pair, name):
    flax_trace, torch_trace = pair
    f, t = flax_trace.layer_matrix(name), torch_trace.layer_matrix(name)
    assert f.steps.tolist() == t.steps.tolist()
    # NaN marks "not measured" (e.g. no zero fraction for a tanh layer): it must sit in the same places.
    np.testing.assert_array_equal(np.isnan(t.values), np.isnan(f.values), err_msg=name)
    np.testing.assert_allclose(t.values, f.values, rtol=2e-4, atol=1e-6, err_msg=name)


PARITY_TABLE = Path(__file__).parent / "snapshots" / "adapter_parity.md"


def _agreement(flax_trace, torch_trace, name: str) -> str:
    """One cell of the parity table: how closely the two adapters agree on a series."""
    has_f, has_t = flax_trace.has(name), torch_trace.has(name)
    if not (has_f and has_t):
        return "flax only" if has_f else "torch only" if has_t else "neither"
    if name in flax_trace.layer_columns:
        f, t = flax_trace.layer_matrix(name).values, torch_trace.layer_matrix(name).values
    else:
        f, t = flax_trace.series(name).values, torch_trace.series(name).values
    if f.shape != t.shape or not np.array_equal(np.isnan(f), np.isnan(t)):
        return "DIFFERS (where measured)"
    both = ~np.isnan(f)
    if not both.any():
        return "agree (not measured)"
    error = float(np.max(np.abs(f[both] - t[both]) / np.maximum(np.abs(f[both]), 1e-3)))
    return "agree" if error <= 2e-4 else f"DIFFERS ({error:.1e})"


def parity_table() -> str:
    """The Markdown parity table: every recorded series, each case, Flax against PyTorch."""
    traces = {case: _run_case(case) for case in CASES}
    names = sorted({n for pair in traces.values() for trace in pair for n in trace.series_names()
                    if not n.startswith("eval.") and n not in ("time", "step_time", "data_wait_time")})
    header_fields = sorted({k for pair in traces.values() for trace in pair
                            for k, v in trace.header.model_dump(exclude_none=True).items() if v not in ({}, [])})
    lines = [
        "# Flax and PyTorch adapters: what each records, and how closely they agree",
        "",
        "Generated by `tests/test_adapters_agree.py` (`DIAG_UPDATE_PARITY=1 pytest tests/test_adapters_agree.py`",
        "rewrites it): the same MLP (6 -> 16 ReLU -> 16 tanh -> 3), the same initial weights and data, every",
        f"statistic every step, {STEPS} steps, through both adapters. 'agree': every step and layer within",
        "2e-4 relative (to max(|value|, 1e-3)) and NaN ('not measured') in the same places; 'flax only'",
        "and 'torch only' are fields one adapter writes and the other does not. Wall-clock fields (time,",
        "step_time, data_wait_time) are left out.",
        "",
        "| series | " + " | ".join(CASES) + " |",
        "|---|" + "---|" * len(CASES),
    ]
    for name in names:
        lines.append(f"| `{name}` | " + " | ".join(_agreement(*traces[c], name) for c in CASES) + " |")
    lines += ["", "| header field | " + " | ".join(CASES) + " |", "|---|" + "---|" * len(CASES)]
    for key in header_fields:
        cells = []
        for case in CASES:
            f, t = (trace.header.model_dump(exclude_none=True).get(key) for trace in traces[case])
            has_f, has_t = f not in (None, {}, []), t not in (None, {}, [])
            cells.append("both" if has_f and has_t else "flax only" if has_f else "torch only" if has_t else "neither")
        lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def test_the_committed_parity_table_is_the_one_both_adapters_produce_today():
    table = parity_table()
    assert "DIFFERS" not in table, table
    if os.environ.get("DIAG_UPDATE_PARITY"):
        PARITY_TABLE.write_text(table)
    assert PARITY_TABLE.exists() and PARITY_TABLE.read_text() == table, (
        "tests/snapshots/adapter_parity.md is stale: rerun with DIAG_UPDATE_PARITY=1")
